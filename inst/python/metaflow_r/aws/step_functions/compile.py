"""The Step Functions compiler: a validated graph in, an Amazon States Language definition out.

Pure: no AWS call, no clock, no randomness, so definitions are golden-tested. Each step is one
``batch:submitJob.sync`` Task state whose job learns everything else from a handful of environment
variables; a branch is a Parallel state. A foreach becomes one of three constructs (``foreach_modes``
says which; see foreach_modes.py for the choice and quota.py for what each costs):

* ``inline``: an INLINE Map over the indices the foreach task wrote to DynamoDB (a Batch job has no
  output). Every iteration's events land in the execution's own history.
* ``array``: the one-step body runs as AWS Batch array jobs, at most 10,000 children each; an INLINE Map
  walks the chunks the foreach task wrote to DynamoDB (one chunk up to 10,000 items).
* ``distributed``: a DISTRIBUTED Map reads the indices from the S3 document the foreach task wrote (a Pass
  state names its key first) and runs each iteration as a child execution, with a history of its own.

Task ids follow from the step and the foreach indices alone, so no state has to carry them:

    outside any foreach:  <step>                 e.g. start
    inside foreach(es):   <step>-<i>[-<j>...]    e.g. body-3, inner-3-0

The split path (``METAFLOW_SPLIT_PATH``) carries those indices to the job. A child of an array job cannot
be told its own index by the state machine, so its last index is written ``+<offset>``: the child adds its
``AWS_BATCH_JOB_ARRAY_INDEX`` (task_identity.py does).

Every task state keeps its input (``ResultPath: null``), so ``run_id``, ``split_path`` and
``Parameters`` flow through the whole execution.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from metaflow_r.aws.batch import environment as env
from metaflow_r.core.graph import FlowGraph, Node
from metaflow_r.datastore.layout import EXECUTION_STATUS_KEY, FOREACH_ITEMS_KEY, MAP_RESULTS_PREFIX, split_s3_url

BATCH_RESOURCE = "arn:aws:states:::batch:submitJob.sync"
DYNAMODB_GET_ITEM = "arn:aws:states:::dynamodb:getItem"
S3_GET_OBJECT = "arn:aws:states:::s3:getObject"
S3_PUT_OBJECT = "arn:aws:states:::s3:putObject"
# Only the submission itself is retried by Step Functions; a failing job is retried by Batch's own
# retryStrategy, which the retry decorator sets on the job definition. SubmitJob is throttled per account
# (50 per second, Batch's service quotas), so many Map iterations submitting at once back off with full
# jitter, capped, as the developer guide's "Handling errors" advises for throttled calls (and as Python
# Metaflow's state machines do).
SUBMIT_RETRY = [{"ErrorEquals": ["Batch.AWSBatchException"], "IntervalSeconds": 2, "MaxAttempts": 10,
                 "BackoffRate": 2.0, "MaxDelaySeconds": 60, "JitterStrategy": "FULL"}]
# The states the compiler adds are named with a "-", which no step name contains: they cannot clash.
PARAMETERS_CHOICE = "metaflow-parameters"
INIT = "metaflow-init"
INIT_DEFAULTS = "metaflow-init-defaults"
FAILED_STATUS = "metaflow-failed-status"
STORE_FAILED_STATUS = "metaflow-store-failed-status"
FAILED = "metaflow-failed"
# An execution that fails where no task could record it (a job killed with its container, a state that
# cannot start) still ends its run: the top-level states catch any error, the run's end is written to
# EXECUTION_STATUS_KEY (read only when no task wrote RUN_STATUS_KEY: a task's own reason wins), and the
# execution fails with the error it caught.
CATCH_ALL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.metaflow_error", "Next": FAILED_STATUS}]
S3_SDK_PUT_OBJECT = "arn:aws:states:::aws-sdk:s3:putObject"

FOREACH_MODES = ("inline", "array", "distributed")
DEFAULT_MAX_NUM_SPLITS = 10_000
MAX_ARRAY_SIZE = 10_000  # AWS Batch: an array job has 2 to 10,000 children (SubmitJob's arrayProperties.size)


@dataclass(frozen=True)
class CompileSettings:
    """What the deploy layer decided: where jobs run and which code they fetch."""

    job_queue: str
    job_definitions: dict[str, str]  # step name -> job definition name (name:revision or ARN)
    code_url: str
    code_sha: str
    dynamo_table: str
    datastore_root: str  # s3://bucket/prefix: a DISTRIBUTED Map's items, and a failed run's _status.json
    max_workers: int = 100
    workflow_timeout: int | None = None
    step_queues: dict[str, str] = field(default_factory=dict)  # decorator("batch", queue = ...) overrides
    foreach_modes: dict[str, str] = field(default_factory=dict)  # foreach step -> FOREACH_MODES (default inline)
    max_num_splits: dict[str, int] = field(default_factory=dict)  # foreach step -> most items it may have
    # step -> (seconds between attempts, retries): steps whose retry decorator waits between attempts, which
    # Batch's retryStrategy cannot (it retries at once); the state machine retries them instead.
    retry_delays: dict[str, tuple[int, int]] = field(default_factory=dict)


def task_id(step: str, path: list[str]) -> str:
    """The task id of ``step`` at foreach indices ``path`` (the rule in this module's docstring)."""
    return f"{step}-{'-'.join(path)}" if path else step


def foreach_task_id_expression(step: str) -> str:
    """``task_id`` as an ASL intrinsic, for a state inside a foreach (its input carries split_path)."""
    return f"States.Format('{step}-{{}}', $.split_path)"


def array_chunks(width: int) -> list[dict[str, int]]:
    """A foreach of ``width`` items as array jobs: as few as possible, of nearly equal sizes (so none has
    a single child unless the foreach has one item; a one-item chunk runs as a plain job)."""
    count = -(-width // MAX_ARRAY_SIZE)
    chunks, offset = [], 0
    for i in range(count):
        size = width // count + (1 if i < width % count else 0)
        chunks.append({"offset": offset, "size": size})
        offset += size
    return chunks


def _literal(text: str) -> str:
    """Text inside an intrinsic function's quoted string: \\ ' { } are escaped."""
    return re.sub(r"([\\'{}])", r"\\\1", text)


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
        for state in states.values():
            if state["Type"] in ("Task", "Map", "Parallel"):
                state["Catch"] = CATCH_ALL
        definition: dict[str, Any] = {
            "Comment": f"Flow {self.graph.spec.name}, deployed by the metaflow R package.",
            "StartAt": PARAMETERS_CHOICE,
            "States": {**entry, **states, **self._failure_states()},
        }
        if self.settings.workflow_timeout:
            definition["TimeoutSeconds"] = int(self.settings.workflow_timeout)
        return definition

    def mode(self, node: Node) -> str:
        return self.settings.foreach_modes.get(node.name, "inline")

    def _failure_states(self) -> dict[str, Any]:
        """After CATCH_ALL: the run's failed status, stored with S3 PutObject's oldest members (Bucket, Key,
        Body: no conditional write, which the SDK integration does not document), then the caught error."""
        bucket, prefix = split_s3_url(self.settings.datastore_root)
        key = _literal(f"{prefix}/" if prefix else "") + EXECUTION_STATUS_KEY.format(flow=self.graph.spec.name,
                                                                                       run_id="{}")
        reason = "the Step Functions execution failed ({}) without a task recording why; its history says where"
        return {
            FAILED_STATUS: {"Type": "Pass", "ResultPath": "$.metaflow_status", "Next": STORE_FAILED_STATUS,
                            "Parameters": {"successful": False, "finished_at.$": "$$.State.EnteredTime",
                                           "reason.$": f"States.Format('{reason}', $.metaflow_error.Error)"}},
            STORE_FAILED_STATUS: {
                "Type": "Task", "Resource": S3_SDK_PUT_OBJECT, "ResultPath": None, "Next": FAILED,
                "Parameters": {"Bucket": bucket, "Key.$": f"States.Format('{key}', $.run_id)",
                               "Body.$": "States.JsonToString($.metaflow_status)"},
                # S3 refusing the write must not hide why the execution failed.
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.metaflow_status_error", "Next": FAILED}],
            },
            FAILED: {"Type": "Fail", "ErrorPath": "$.metaflow_error.Error", "CausePath": "$.metaflow_error.Cause"},
        }

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
        build = {"inline": self._inline_map, "array": self._array_jobs, "distributed": self._distributed_map}
        return build[self.mode(node)](node, join, in_foreach, states)

    def _lookup(self, node: Node, in_foreach: bool, selector: dict[str, str], following: str) -> dict[str, Any]:
        """Read what the foreach task published in DynamoDB under <run id>/<step>/<task id>."""
        run_and_task = f"States.Format('{{}}/{node.name}/{{}}', $.run_id, {foreach_task_id_expression(node.name)})" \
            if in_foreach else f"States.Format('{{}}/{node.name}/{node.name}', $.run_id)"
        return {
            "Type": "Task",
            "Resource": DYNAMODB_GET_ITEM,
            "Parameters": {"TableName": self.settings.dynamo_table,
                           "Key": {"pathspec": {"S.$": run_and_task}}, "ConsistentRead": True},
            "ResultSelector": selector,
            "ResultPath": "$.splits",
            "Next": following,
        }

    def _iteration(self, node: Node, join: str, in_foreach: bool) -> tuple[dict[str, str], str, dict[str, Any]]:
        """An iteration's input (index, run id, the enclosing split path), and its states: a Pass that
        makes the iteration's split path, then the body."""
        index = f"{node.name}-index"
        selector = {"run_id.$": "$.run_id"}
        path = "States.Format('{}', $.index)"
        if in_foreach:
            selector["parent_path.$"] = "$.split_path"
            path = "States.Format('{}-{}', $.parent_path, $.index)"
        body, inner = self._chain(node.next[0], join, in_foreach=True)
        states = {index: {"Type": "Pass", "Parameters": {"run_id.$": "$.run_id", "split_path.$": path}, "Next": body},
                  **inner}
        return selector, index, states

    def _inline_map(self, node: Node, join: str, in_foreach: bool, states: dict[str, Any]) -> str:
        splits, foreach = f"{node.name}-splits", f"{node.name}-foreach"
        states[splits] = self._lookup(node, in_foreach, {"items.$": "$.Item.for_each_cardinality.L"}, foreach)
        selector, start, processor_states = self._iteration(node, join, in_foreach)
        states[foreach] = {
            "Type": "Map",
            "ItemsPath": "$.splits.items",
            "MaxConcurrency": self.settings.max_workers,
            "ItemSelector": {"index.$": "$$.Map.Item.Index", **selector},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": start, "States": processor_states},
            "ResultPath": None,
            "Next": join,
        }
        return splits

    def _array_jobs(self, node: Node, join: str, in_foreach: bool, states: dict[str, Any]) -> str:
        """The one-step body as array jobs over the chunks of the foreach; a one-item chunk as a plain job."""
        splits, foreach, chunk = f"{node.name}-splits", f"{node.name}-foreach", f"{node.name}-chunk"
        body = self.graph[node.next[0]]
        single = f"{body.name}-one"
        states[splits] = self._lookup(node, in_foreach, {"chunks.$": "States.StringToJson($.Item.foreach_chunks.S)"},
                                      foreach)
        selector = {"run_id.$": "$.run_id", "offset.$": "$$.Map.Item.Value.offset",
                    "size.$": "$$.Map.Item.Value.size"}
        parent = "$.parent_path, " if in_foreach else ""
        prefix = "{}-" if in_foreach else ""
        if in_foreach:
            selector["parent_path.$"] = "$.split_path"
        array = self._task(body, True, split_path=f"States.Format('{prefix}+{{}}', {parent}$.offset)")
        array["Parameters"]["ArrayProperties"] = {"Size.$": "$.size"}
        one = self._task(body, True, split_path=f"States.Format('{prefix}{{}}', {parent}$.offset)")
        processor_states = {
            chunk: {"Type": "Choice", "Choices": [{"Variable": "$.size", "NumericEquals": 1, "Next": single}],
                    "Default": body.name},
            body.name: {**array, "End": True},
            single: {**one, "End": True},
        }
        states[foreach] = {
            "Type": "Map",
            "ItemsPath": "$.splits.chunks",
            "ItemSelector": selector,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": chunk, "States": processor_states},
            "ResultPath": None,
            "Next": join,
        }
        return splits

    def _distributed_map(self, node: Node, join: str, in_foreach: bool, states: dict[str, Any]) -> str:
        """A Pass state computes the items' key (an ItemReader takes paths, not intrinsic functions: the
        developer guide's "Fields that support intrinsic functions"), then the Map reads them."""
        splits, foreach = f"{node.name}-splits", f"{node.name}-foreach"
        bucket, prefix = split_s3_url(self.settings.datastore_root)
        selector, start, processor_states = self._iteration(node, join, in_foreach)
        key = self._items_key(node, in_foreach, _literal(f"{prefix}/" if prefix else ""))
        states[splits] = {"Type": "Pass", "Parameters": {"key.$": key}, "ResultPath": "$.splits", "Next": foreach}
        states[foreach] = {
            "Type": "Map",
            "ItemReader": {"Resource": S3_GET_OBJECT, "ReaderConfig": {"InputType": "JSON"},
                           "Parameters": {"Bucket": bucket, "Key.$": "$.splits.key"}},
            "ItemSelector": {"index.$": "$$.Map.Item.Value", **selector},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                              "StartAt": start, "States": processor_states},
            "MaxConcurrency": self.settings.max_workers,
            "ToleratedFailureCount": 0,
            # Without a ResultWriter the children's outputs come back to this state, and 100,000 of them
            # exceed the 256 KiB a state may hold even though ResultPath null drops them.
            "ResultWriter": {"Resource": S3_PUT_OBJECT,
                             "Parameters": {"Bucket": bucket, "Prefix": "/".join(
                                 p for p in (prefix, MAP_RESULTS_PREFIX.format(flow=self.graph.spec.name)) if p)}},
            "ResultPath": None,
            "Next": join,
        }
        return splits

    def _items_key(self, node: Node, in_foreach: bool, prefix: str = "") -> str:
        """FOREACH_ITEMS_KEY of the task of ``node``, as an intrinsic (``prefix`` is already escaped)."""
        template = prefix + FOREACH_ITEMS_KEY.format(flow=self.graph.spec.name, run_id="{}", step=node.name,
                                                     task_id="{}" if in_foreach else node.name)
        if in_foreach:
            return f"States.Format('{template}', $.run_id, {foreach_task_id_expression(node.name)})"
        return f"States.Format('{template}', $.run_id)"

    def _task(self, node: Node, in_foreach: bool, split_path: str | None = None) -> dict[str, Any]:
        if split_path is not None:
            path_entry = {"Value.$": split_path}
        else:
            path_entry = {"Value.$": "$.split_path"} if in_foreach else {"Value": ""}
        environment: list[dict[str, str]] = [
            {"Name": env.STEP, "Value": node.name},
            {"Name": env.RUN_ID, "Value.$": "$.run_id"},
            {"Name": env.SPLIT_PATH, **path_entry},
            {"Name": env.CODE_URL, "Value": self.settings.code_url},
            {"Name": env.CODE_SHA, "Value": self.settings.code_sha},
        ]
        if node.name == "start":
            environment.append({"Name": env.PARAMETERS, "Value.$": "$.Parameters"})
        if node.is_foreach:
            environment += self._foreach_environment(node, in_foreach)
        retry = list(SUBMIT_RETRY)
        if node.name in self.settings.retry_delays:
            seconds, retries = self.settings.retry_delays[node.name]
            # The job tells its attempt from the state's retry count (Batch counts 1 for each of these jobs).
            environment.append({"Name": env.RETRY_COUNT, "Value.$": "States.Format('{}', $$.State.RetryCount)"})
            retry.append({"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": seconds, "MaxAttempts": retries,
                          "BackoffRate": 1.0})
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
            "Retry": retry,
        }

    def _foreach_environment(self, node: Node, in_foreach: bool) -> list[dict[str, str]]:
        """What a foreach task must publish, and for at most how many items (foreach_width.py)."""
        mode = self.mode(node)
        found = [{"Name": env.FOREACH_MODE, "Value": mode},
                 {"Name": env.MAX_NUM_SPLITS,
                  "Value": str(self.settings.max_num_splits.get(node.name, DEFAULT_MAX_NUM_SPLITS))}]
        if mode == "distributed":
            found.append({"Name": env.FOREACH_ITEMS_KEY, "Value.$": self._items_key(node, in_foreach)})
        return found


def batch_job_name(flow: str, step: str) -> str:
    """A Batch job name: letters, digits, - and _, starting with a letter or digit, at most 128 chars."""
    return f"{flow}-{step}".lstrip("_-")[:128] or "metaflow-task"


def compile_state_machine(graph: FlowGraph, settings: CompileSettings) -> dict[str, Any]:
    """The ASL definition of ``graph`` as a dict (serialise it with ``json.dumps``)."""
    return _Compiler(graph, settings).definition()
