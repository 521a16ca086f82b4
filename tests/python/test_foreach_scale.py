"""Foreaches as inline Maps, Batch array jobs and distributed Maps, executed by the emulator (a moto server)
with stand-in jobs instead of R tasks: the quota model (quota.py) against the execution histories the
emulator records, every task of the run exactly once, and a run's history that stays the same size whether
its foreach has 30 items or 3,000.

A foreach step's job publishes its items as a Batch task does (tests/python/stand_in_task.py, through
step_functions/task_identity.py); every job appends its run, step, split path and array index to a record file.
"""
from __future__ import annotations

import itertools
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import BRANCH, BRANCHING_BODY, FOREACH, NESTED_FOREACH

from metaflow_r.aws.batch.job_definitions import batch_retry_strategy
from metaflow_r.aws.step_functions.compile import CompileSettings, compile_state_machine, task_id
from metaflow_r.aws.step_functions.executions import failure
from metaflow_r.aws.step_functions.failures import failed_task
from metaflow_r.aws.step_functions.foreach_modes import foreach_steps
from metaflow_r.aws.step_functions.quota import estimate
from metaflow_r.aws.step_functions.task_identity import resolve_split_path
from metaflow_r.core.errors import RunFailed
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec

STAND_IN = Path(__file__).with_name("stand_in_task.py")
RECORD = ('echo "$METAFLOW_RUN_ID $METAFLOW_STEP $METAFLOW_SPLIT_PATH ${AWS_BATCH_JOB_ARRAY_INDEX:--}" '
          '>> "$STAND_IN_RECORD"')
MAX_WORKERS = 4


def client(emulator: dict[str, str], service: str):
    return boto3.client(service, endpoint_url=emulator["AWS_ENDPOINT_URL"], region_name=emulator["AWS_REGION"],
                        aws_access_key_id="emulated", aws_secret_access_key="emulated")


@dataclass
class Deployed:
    arn: str
    graph: FlowGraph
    definition: dict[str, Any]
    modes: dict[str, str]
    widths: dict[str, int]


_count = itertools.count()


def deploy(emulator, record: Path, spec: dict[str, Any], modes: dict[str, str], widths: dict[str, int],
           max_workers: int = MAX_WORKERS, bounds: dict[str, int] | None = None, failing: str = "",
           attempts: int = 1) -> Deployed:
    """The flow compiled with these constructs, its steps' jobs the stand-ins, as a new state machine.

    ``bounds``: --max-num-splits (default: the widths); ``failing``: a shell pattern of "<split path>/<array
    index>/<attempt>" for which a body job exits 3 after recording itself; ``attempts``: Batch's retryStrategy."""
    graph = FlowGraph(parse_spec(dict(spec)))
    batch, name = client(emulator, "batch"), f"{graph.spec.name}{next(_count)}"
    environment = [{"name": "STAND_IN_RECORD", "value": str(record)},
                   {"name": "STAND_IN_WIDTHS", "value": json.dumps(widths)},
                   {"name": "METAFLOW_SFN_DYNAMO_DB_TABLE", "value": emulator["METAFLOW_SFN_DYNAMO_DB_TABLE"]},
                   {"name": "METAFLOW_DATASTORE_SYSROOT_S3", "value": emulator["METAFLOW_DATASTORE_SYSROOT_S3"]}]
    definitions = {}
    item = "$METAFLOW_SPLIT_PATH/$AWS_BATCH_JOB_ARRAY_INDEX/$AWS_BATCH_JOB_ATTEMPT"
    fail = f'; case "{item}" in {failing}) exit 3;; esac' if failing else ""
    for node in graph:
        command = f"{sys.executable} {STAND_IN} && {RECORD}" if node.is_foreach else RECORD + fail
        registered = batch.register_job_definition(
            jobDefinitionName=f"{name}-{node.name}", type="container",
            containerProperties={"image": "stand-in", "command": ["sh", "-c", command], "environment": environment,
                                 "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                          {"type": "MEMORY", "value": "128"}]},
            retryStrategy=batch_retry_strategy(attempts))
        definitions[node.name] = registered["jobDefinitionName"]
    definition = compile_state_machine(graph, CompileSettings(
        job_queue=emulator["METAFLOW_BATCH_JOB_QUEUE"], job_definitions=definitions, code_url="s3://unused/code.tgz",
        code_sha="0" * 64, dynamo_table=emulator["METAFLOW_SFN_DYNAMO_DB_TABLE"], max_workers=max_workers,
        foreach_modes=modes, max_num_splits=bounds or {step: max(widths[step], 1) for step in widths},
        datastore_root=emulator["METAFLOW_DATASTORE_SYSROOT_S3"]))
    arn = client(emulator, "stepfunctions").create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=emulator["METAFLOW_SFN_IAM_ROLE"])["stateMachineArn"]
    return Deployed(arn, graph, definition, modes, widths)


def execute(emulator, deployed: Deployed, run_id: str, timeout: float = 600) -> tuple[str, list[dict[str, Any]]]:
    sfn = client(emulator, "stepfunctions")
    arn = sfn.start_execution(stateMachineArn=deployed.arn, name=run_id, input="{}")["executionArn"]
    deadline = time.time() + timeout
    while (status := sfn.describe_execution(executionArn=arn)["status"]) == "RUNNING":
        assert time.time() < deadline, f"{run_id} still running after {timeout} s"
        time.sleep(0.5)
    events = [e for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
              for e in page["events"]]
    return status, events


def tasks_run(record: Path, run_id: str) -> list[str]:
    """The task ids the jobs of ``run_id`` ran as, each resolved as the Batch task resolves it."""
    found = []
    for line in record.read_text().splitlines():
        run, step, split_path, index = line.split(" ")
        if run != run_id:
            continue
        path = resolve_split_path(split_path, {} if index == "-" else {"AWS_BATCH_JOB_ARRAY_INDEX": index})
        found.append(task_id(step, path.split("-") if path else []))
    return found


def expected_tasks(graph: FlowGraph, widths: dict[str, int]) -> list[str]:
    """Every task of a run: each step once per combination of the indices of the foreaches around it."""
    found = []
    for node in graph:
        ranges = [range(widths[s]) for s in node.split_parents if graph[s].is_foreach]
        found += [task_id(node.name, [str(i) for i in combo]) for combo in itertools.product(*ranges)]
    return found


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stand-in") / "record.txt"
    path.touch()
    return path


CASES = {
    "inline": (FOREACH, {"start": "inline"}, {"start": 3}),
    "array": (FOREACH, {"start": "array"}, {"start": 3}),
    "array of one item": (FOREACH, {"start": "array"}, {"start": 1}),
    "array of no item": (FOREACH, {"start": "array"}, {"start": 0}),
    "distributed": (FOREACH, {"start": "distributed"}, {"start": 3}),
    "distributed of no item": (FOREACH, {"start": "distributed"}, {"start": 0}),
    "nested inline, inline": (NESTED_FOREACH, {"start": "inline", "per_letter": "inline"},
                              {"start": 3, "per_letter": 2}),
    "nested distributed, array": (NESTED_FOREACH, {"start": "distributed", "per_letter": "array"},
                                  {"start": 3, "per_letter": 2}),
    "nested inline, array": (NESTED_FOREACH, {"start": "inline", "per_letter": "array"},
                             {"start": 2, "per_letter": 3}),
    "branching body, distributed": (BRANCHING_BODY, {"start": "distributed"}, {"start": 2}),
    "branching body, inline": (BRANCHING_BODY, {"start": "inline"}, {"start": 2}),
    "branch": (BRANCH, {}, {}),
}


@pytest.mark.parametrize("case", CASES)
def test_the_quota_model_counts_what_the_emulator_records(emulator, record, case):
    spec, modes, widths = CASES[case]
    deployed = deploy(emulator, record, spec, modes, widths)
    run_id = f"model-{case.replace(' ', '-').replace(',', '')}"
    status, events = execute(emulator, deployed, run_id)
    assert status == "SUCCEEDED", [e for e in events if "Failed" in e["type"]][:3]
    depths = {n.name: sum(deployed.graph[s].is_foreach for s in n.split_parents) for n in foreach_steps(deployed.graph)}
    budget = estimate(deployed.definition, widths, modes, MAX_WORKERS, split_depths=depths)
    assert len(events) == budget.run_history
    ran = tasks_run(record, run_id)
    assert sorted(ran) == sorted(expected_tasks(deployed.graph, widths))  # each task once, ids as compile.py says
    assert budget.batch_jobs == len(ran)
    graph = deployed.graph
    children = sum(widths[s] * math.prod(widths[f] for f in graph[s].split_parents if graph[f].is_foreach)
                   for s, mode in modes.items() if mode == "distributed")
    assert budget.child_executions == children
    if not children:  # child executions keep histories of their own, which the emulator does not keep
        assert budget.transitions == sum(e["type"].endswith("StateEntered") for e in events)


@pytest.mark.parametrize("mode, failing, failed_state", [
    ("inline", "1//*", "body"),
    ("array", "+0/1/*", "body"),  # the second child of the array
    ("distributed", "1//*", "start-foreach"),  # a child execution: its Map Run fails, after the others ran
])
def test_a_failed_item_fails_the_run_and_status_names_where(emulator, record, mode, failing, failed_state):
    deployed = deploy(emulator, record, FOREACH, {"start": mode}, {"start": 3}, failing=failing)
    run_id = f"failing-{mode}"
    status, events = execute(emulator, deployed, run_id)
    assert status == "FAILED"
    sfn = client(emulator, "stepfunctions")
    execution = deployed.arn.replace(":stateMachine:", ":execution:") + f":{run_id}"
    assert failed_task(events, deployed.graph, None, run_id).state == failed_state
    failed = failure(sfn, execution, deployed.graph, run_id, sfn.describe_execution(executionArn=execution))
    assert isinstance(failed, RunFailed)
    where = "in the foreach of step 'start'" if mode == "distributed" else "in step 'body'"
    assert where in failed.message
    ran = tasks_run(record, run_id)
    assert "join" not in ran and "body-1" in ran


@pytest.mark.parametrize("mode, failing", [("array", "+0/1/1"), ("distributed", "1//1")])
def test_batch_retries_an_item_within_each_construct(emulator, record, mode, failing):
    """The retry decorator is Batch's retryStrategy: an array child or a child execution's job is retried alone."""
    deployed = deploy(emulator, record, FOREACH, {"start": mode}, {"start": 3}, failing=failing, attempts=2)
    status, _ = execute(emulator, deployed, f"retried-{mode}")
    assert status == "SUCCEEDED"
    ran = tasks_run(record, f"retried-{mode}")
    assert sorted(ran) == sorted(expected_tasks(deployed.graph, {"start": 3}) + ["body-1"])  # body-1 twice


def test_a_foreach_wider_than_planned_fails_at_its_own_step_without_retrying_it(emulator, record):
    deployed = deploy(emulator, record, FOREACH, {"start": "array"}, {"start": 5}, bounds={"start": 4}, attempts=3)
    status, events = execute(emulator, deployed, "too-wide")
    assert status == "FAILED"
    (failed,) = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert len(json.loads(failed["cause"])["Attempts"]) == 1  # a retry would be as wide: Batch does not run one
    assert failed_task(events, deployed.graph, None, "too-wide").state == "start"
    assert tasks_run(record, "too-wide") == []  # the foreach task failed before recording; no body task ran


@pytest.mark.parametrize("mode, width", [
    ("array", 3000),
    ("distributed", 300),
    # About three minutes on two busy cores (each child execution is a Step Functions program in moto's
    # interpreter): run with `make test-slow` or pytest --slow.
    pytest.param("distributed", 3000, marks=pytest.mark.slow),
])
def test_the_runs_history_does_not_grow_with_the_width(emulator, record, mode, width):
    """Issue 13: a foreach of 3,000 trivial items completes, and its run's history is that of 30 items."""
    histories = {}
    for items in (30, width):
        # 100 children at once, as --max-workers' default: each waits about half a second for its job.
        deployed = deploy(emulator, record, FOREACH, {"start": mode}, {"start": items}, max_workers=100)
        run_id = f"wide-{mode}-{items}-of-{width}"
        status, events = execute(emulator, deployed, run_id, timeout=1800)
        assert status == "SUCCEEDED"
        ran = tasks_run(record, run_id)
        assert len(ran) == items + 3 and sorted(ran) == sorted(expected_tasks(deployed.graph, {"start": items}))
        histories[items] = [e["type"] for e in events]
    assert histories[width] == histories[30]
