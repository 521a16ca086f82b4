"""The Step Functions compiler: a validated graph in, an Amazon States Language definition out.

Pure: no AWS call, no clock, no randomness, so definitions are golden-tested. Each step is one
``batch:submitJob.sync`` Task state whose job learns everything else from a handful of environment
variables; a branch is a Parallel state, a foreach a Map state fed by the width the foreach task wrote
to DynamoDB (a Batch job has no output). Task ids follow from the step and the foreach indices alone,
so no state has to carry them:

    outside any foreach:  <step>                 e.g. start
    inside foreach(es):   <step>-<i>[-<j>...]    e.g. body-3, inner-3-0

Every task state keeps its input (``ResultPath: null``), so ``run_id``, ``split_path`` and
``Parameters`` flow through the whole execution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .graph import FlowGraph, Node

BATCH_RESOURCE = "arn:aws:states:::batch:submitJob.sync"
DYNAMODB_GET_ITEM = "arn:aws:states:::dynamodb:getItem"
# Only the submission itself is retried by Step Functions; a failing job is retried by Batch's own
# retryStrategy, which the retry decorator sets on the job definition.
SUBMIT_RETRY = [{"ErrorEquals": ["Batch.AWSBatchException"], "IntervalSeconds": 2, "MaxAttempts": 5,
                 "BackoffRate": 2.0}]
# The states the compiler adds are named with a "-", which no step name contains: they cannot clash.
PARAMETERS_CHOICE = "metaflow-parameters"
INIT = "metaflow-init"
INIT_DEFAULTS = "metaflow-init-defaults"


@dataclass(frozen=True)
class CompileSettings:
    """What the deploy layer decided: where jobs run and which code they fetch."""

    job_queue: str
    job_definitions: dict[str, str]  # step name -> job definition name (name:revision or ARN)
    code_url: str
    code_sha: str
    dynamo_table: str
    max_workers: int = 100
    workflow_timeout: int | None = None
    step_queues: dict[str, str] = field(default_factory=dict)  # decorator("batch", queue = ...) overrides


def task_id(step: str, path: list[str]) -> str:
    """The task id of ``step`` at foreach indices ``path`` (the rule in this module's docstring)."""
    return f"{step}-{'-'.join(path)}" if path else step


def foreach_task_id_expression(step: str) -> str:
    """``task_id`` as an ASL intrinsic, for a state inside a foreach (its input carries split_path)."""
    return f"States.Format('{step}-{{}}', $.split_path)"


class _Compiler:
    def __init__(self, graph: FlowGraph, settings: CompileSettings) -> None:
        self.graph = graph
        self.settings = settings
        self.join_of = {node.matching_split: node.name for node in graph if node.matching_split}

    def definition(self) -> dict[str, Any]:
        start, states = self._chain("start", stop=None, in_foreach=False)
        entry = {
            PARAMETERS_CHOICE: {
                "Type": "Choice",
                "Choices": [{"Variable": "$.Parameters", "IsPresent": True, "Next": INIT}],
                "Default": INIT_DEFAULTS,
            },
            INIT: {"Type": "Pass", "Parameters": {"Parameters.$": "$.Parameters", "run_id.$": "$$.Execution.Name"},
                   "Next": start},
            INIT_DEFAULTS: {"Type": "Pass", "Parameters": {"Parameters": "{}", "run_id.$": "$$.Execution.Name"},
                            "Next": start},
        }
        definition: dict[str, Any] = {
            "Comment": f"Flow {self.graph.spec.name}, deployed by the metaflow R package.",
            "StartAt": PARAMETERS_CHOICE,
            "States": {**entry, **states},
        }
        if self.settings.workflow_timeout:
            definition["TimeoutSeconds"] = int(self.settings.workflow_timeout)
        return definition

    def _chain(self, first: str, stop: str | None, in_foreach: bool) -> tuple[str, dict[str, Any]]:
        """States from ``first`` up to (not including) the join ``stop``; the last one ends the segment."""
        states: dict[str, Any] = {}
        current = first
        while True:
            node = self.graph[current]
            task = self._task(node, in_foreach)
            states[current] = task
            if node.is_foreach or node.is_branch:
                join = self.join_of[current]
                task["Next"] = self._split(node, join, in_foreach, states)
                current = join
                continue
            following = node.next[0] if node.next else None
            if following is None or following == stop:
                task["End"] = True
                return first, states
            task["Next"] = following
            current = following

    def _split(self, node: Node, join: str, in_foreach: bool, states: dict[str, Any]) -> str:
        """Add the states that run a split's branches or foreach body; returns the first one's name."""
        if node.is_branch:
            name = f"{node.name}-branches"
            branches = []
            for child in node.next:
                start, inner = self._chain(child, join, in_foreach)
                branches.append({"StartAt": start, "States": inner})
            states[name] = {"Type": "Parallel", "Branches": branches, "ResultPath": None, "Next": join}
            return name
        splits, foreach, index = f"{node.name}-splits", f"{node.name}-foreach", f"{node.name}-index"
        run_and_task = f"States.Format('{{}}/{node.name}/{{}}', $.run_id, {foreach_task_id_expression(node.name)})" \
            if in_foreach else f"States.Format('{{}}/{node.name}/{node.name}', $.run_id)"
        states[splits] = {
            "Type": "Task",
            "Resource": DYNAMODB_GET_ITEM,
            "Parameters": {"TableName": self.settings.dynamo_table,
                           "Key": {"pathspec": {"S.$": run_and_task}}, "ConsistentRead": True},
            "ResultSelector": {"items.$": "$.Item.for_each_cardinality.L"},
            "ResultPath": "$.splits",
            "Next": foreach,
        }
        selector = {"index.$": "$$.Map.Item.Index", "run_id.$": "$.run_id"}
        path = "States.Format('{}', $.index)"
        if in_foreach:
            selector["parent_path.$"] = "$.split_path"
            path = "States.Format('{}-{}', $.parent_path, $.index)"
        body, inner = self._chain(node.next[0], join, in_foreach=True)
        processor_states = {
            index: {"Type": "Pass", "Parameters": {"run_id.$": "$.run_id", "split_path.$": path}, "Next": body},
            **inner,
        }
        states[foreach] = {
            "Type": "Map",
            "ItemsPath": "$.splits.items",
            "MaxConcurrency": self.settings.max_workers,
            "ItemSelector": selector,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": index, "States": processor_states},
            "ResultPath": None,
            "Next": join,
        }
        return splits

    def _task(self, node: Node, in_foreach: bool) -> dict[str, Any]:
        environment: list[dict[str, str]] = [
            {"Name": "METAFLOW_STEP", "Value": node.name},
            {"Name": "METAFLOW_RUN_ID", "Value.$": "$.run_id"},
            {"Name": "METAFLOW_SPLIT_PATH", **({"Value.$": "$.split_path"} if in_foreach else {"Value": ""})},
            {"Name": "METAFLOW_CODE_URL", "Value": self.settings.code_url},
            {"Name": "METAFLOW_CODE_SHA", "Value": self.settings.code_sha},
        ]
        if node.name == "start":
            environment.append({"Name": "METAFLOW_PARAMETERS", "Value.$": "$.Parameters"})
        return {
            "Type": "Task",
            "Resource": BATCH_RESOURCE,
            "Parameters": {
                "JobName": batch_job_name(self.graph.spec.name, node.name),
                "JobDefinition": self.settings.job_definitions[node.name],
                "JobQueue": self.settings.step_queues.get(node.name, self.settings.job_queue),
                "ContainerOverrides": {"Environment": environment},
            },
            "ResultPath": None,
            "Retry": SUBMIT_RETRY,
        }


def batch_job_name(flow: str, step: str) -> str:
    """A Batch job name: letters, digits, - and _, starting with a letter or digit, at most 128 chars."""
    return f"{flow}-{step}".lstrip("_-")[:128] or "metaflow-task"


def compile_state_machine(graph: FlowGraph, settings: CompileSettings) -> dict[str, Any]:
    """The ASL definition of ``graph`` as a dict (serialise it with ``json.dumps``)."""
    return _Compiler(graph, settings).definition()
