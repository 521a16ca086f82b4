"""Every golden state machine also runs on a second, independent ASL interpreter.

moto's Step Functions engine (the emulator's) is a copy of LocalStack's; the npm package
``aws-local-stepfunctions`` implements the States Language on its own code. Each golden definition runs
there (asl_run.mjs) with Batch, DynamoDB and S3 stubbed, foreaches wider than MaxConcurrency: it must
reach its end with one Batch job (or array child) per task the graph implies, each after its parents, Map
states capped at MaxConcurrency and Parallel branches at once; a throttled submission is retried; a
failed job fails the execution before anything after it runs.
"""
from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import require_npm_tool
from test_compile import CASES, CODE_SHA, GOLDEN_DIR, MAX_WORKERS, graph_of

from metaflow_r.aws.step_functions.compile import array_chunks
from metaflow_r.core.graph import FlowGraph
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.layout import EXECUTION_STATUS_KEY, RUN_STATUS_KEY
from metaflow_r.datastore.storage import LocalStorage

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / ".tools" / "node_modules" / "aws-local-stepfunctions" / "build" / "main.node.esm.js"
RUNNER = Path(__file__).with_name("asl_run.mjs")
WIDTH = MAX_WORKERS + 1  # wider than each Map's MaxConcurrency, so the cap shows
PARAMETERS = json.dumps({"alpha": 0.5})


@pytest.fixture(scope="module", autouse=True)
def interpreter_installed() -> None:
    require_npm_tool(MODULE, "aws-local-stepfunctions (npm)")


def foreach_steps(graph: FlowGraph, step: str) -> list[str]:
    return [s for s in graph[step].split_parents if graph[s].is_foreach]


def expected_paths(graph: FlowGraph, step: str) -> list[str]:
    """The split paths of a step's tasks: one per combination of its enclosing foreaches' indices."""
    ranges = [range(WIDTH) for _ in foreach_steps(graph, step)]
    return ["-".join(map(str, combination)) for combination in itertools.product(*ranges)]


def scenarios(case: str) -> dict[str, dict[str, Any]]:
    graph = graph_of(CASES[case])
    widths = {node.name: WIDTH for node in graph if node.is_foreach}
    published = {"datastore": "s3://mf-golden/metaflow", "widths": widths,
                 "chunks": {step: array_chunks(WIDTH) for step in widths}}
    # The deepest step before "end" fails, in its last task.
    failing = max((s for s in graph.order if s not in ("start", "end")),
                  key=lambda s: len(graph[s].split_parents), default="start")
    return {
        "succeeds": {"input": {"Parameters": PARAMETERS}, **published},
        "defaults": {"input": {}, **published},
        "throttled": {"input": {}, **published, "throttle": {"start": 2}},
        "fails": {"input": {}, **published, "fail": {failing: expected_paths(graph, failing)[-1]}},
        "fails_recorded": {"input": {}, **published, "fail": {failing: expected_paths(graph, failing)[-1]},
                           "s3": {status_url(case, "fails_recorded"): TASK_STATUS}},
    }


TASK_STATUS = '{"successful": false, "reason": "written by the failing task"}'


def status_url(case: str, scenario: str, key: str = RUN_STATUS_KEY) -> str:
    return f"s3://mf-golden/metaflow/{key.format(flow=graph_of(CASES[case]).spec.name, run_id=f'{case}-{scenario}')}"


def read_status(tmp_path: Path, case: str, scenario: str, objects: dict[str, str]) -> dict[str, Any] | None:
    """The run's status as the Client API reads it, from the S3 objects an execution left."""
    for url, body in objects.items():
        path = tmp_path / url.removeprefix("s3://mf-golden/metaflow/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return FlowDatastore(LocalStorage(tmp_path), graph_of(CASES[case]).spec.name).run_status(f"{case}-{scenario}")


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, str], dict[str, Any]]:
    """Every (case, scenario) executed once, in one Node.js process."""
    keys, requests = [], []
    for case in sorted(CASES):
        definition = json.loads((GOLDEN_DIR / f"{case}.json").read_text())
        for name, scenario in scenarios(case).items():
            keys.append((case, name))
            requests.append({"definition": definition, "name": f"{case}-{name}", **scenario})
    done = subprocess.run(["node", str(RUNNER), str(MODULE)], input=json.dumps(requests), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return dict(zip(keys, json.loads(done.stdout)))


def check_ran_the_whole_graph(case: str, run: dict[str, Any]) -> None:
    graph = graph_of(CASES[case])
    ran = sorted((job["step"], job["path"]) for job in run["jobs"])
    assert ran == sorted((step, path) for step in graph.order for path in expected_paths(graph, step))
    # Each task starts after every task of its parent steps on the same foreach path has finished.
    for job in run["jobs"]:
        for parent in graph[job["step"]].parents:
            for before in (j for j in run["jobs"] if j["step"] == parent):
                mine, theirs = job["path"], before["path"]
                if mine.startswith(theirs) or theirs.startswith(mine):
                    assert before["finished"] < job["started"], (job["step"], mine, parent, theirs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_execution_reaches_its_end_with_one_job_per_task(runs, case):
    run = runs[(case, "succeeds")]
    assert run["status"] == "SUCCEEDED", run
    check_ran_the_whole_graph(case, run)
    for job in run["jobs"]:
        env = job["env"]
        assert env["METAFLOW_RUN_ID"] == f"{case}-succeeds"  # the execution's name
        assert env["METAFLOW_CODE_SHA"] == CODE_SHA and env["METAFLOW_CODE_URL"].endswith(f"{CODE_SHA}.tgz")
        assert job["jobDefinition"].endswith(f"-{job['step']}")
        # Only start is given the parameters, exactly as the execution received them.
        assert env.get("METAFLOW_PARAMETERS") == (PARAMETERS if job["step"] == "start" else None)


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_execution_without_parameters_gives_start_an_empty_object(runs, case):
    run = runs[(case, "defaults")]
    assert run["status"] == "SUCCEEDED", run
    (start,) = [job for job in run["jobs"] if job["step"] == "start"]
    assert start["env"]["METAFLOW_PARAMETERS"] == "{}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_map_states_run_at_most_max_concurrency_and_branches_run_together(runs, case):
    graph = graph_of(CASES[case])
    run = runs[(case, "succeeds")]
    peak = run["peak"]
    in_array_jobs = {job["step"] for job in run["jobs"] if job["array"]}
    for step in graph.order:
        foreaches = foreach_steps(graph, step)
        # Jobs of one step within one Map run: as many at once as the Map allows, never more; the children
        # of one array job are Batch's to schedule, all of them at once here.
        expected = WIDTH if step in in_array_jobs else min(WIDTH, MAX_WORKERS) if foreaches else 1
        found = {key: count for key, count in peak.items() if key.split("|")[0] == step}
        assert found and set(found.values()) == {expected}, (step, found)
    branches = [node for node in graph if node.is_branch]
    for split in branches:
        heads = [j for j in run["jobs"] if j["step"] in split.next]
        # Within one foreach item, the branches' first steps overlap in time: a Parallel state starts them
        # together.
        for path in {j["path"] for j in heads}:
            together = [j for j in heads if j["path"] == path]
            assert len(together) == len(split.next)
            assert max(j["started"] for j in together) < min(j["finished"] for j in together), (split.name, path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_throttled_submission_is_retried(runs, case):
    run = runs[(case, "throttled")]
    assert run["status"] == "SUCCEEDED", run
    check_ran_the_whole_graph(case, run)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failed_job_fails_the_execution_before_what_follows_it(runs, case):
    run = runs[(case, "fails")]
    assert run["status"] == "FAILED" and run["error"] == "States.TaskFailed", run
    failing, path = next(iter(scenarios(case)["fails"]["fail"].items()))
    assert (failing, path) in [(j["step"], j["path"]) for j in run["jobs"]]
    graph = graph_of(CASES[case])
    after = graph.descendants(failing) - {failing}
    # No task that needs the failed one runs (tasks of other foreach items may: they do not need it).
    needs_it = [(j["step"], j["path"]) for j in run["jobs"] if j["step"] in after and path.startswith(j["path"])]
    assert needs_it == []
    assert "end" not in [j["step"] for j in run["jobs"]]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failed_execution_ends_its_run_unless_a_task_already_did(runs, case, tmp_path):
    # No task recorded why (its job was killed with its container): the state machine stores the status.
    failed = runs[(case, "fails")]["s3"]
    assert status_url(case, "fails") not in failed
    status = read_status(tmp_path / "fails", case, "fails", failed)
    assert status["successful"] is False and "(States.TaskFailed)" in status["reason"]
    assert status["finished_at"] == 0  # $$.State.EnteredTime, the stub's clock: 1970-01-01T00:00:00.000Z
    # The failing task wrote it: its reason stands, and the execution still fails with the task's error.
    recorded = runs[(case, "fails_recorded")]
    assert recorded["s3"][status_url(case, "fails_recorded")] == TASK_STATUS
    assert status_url(case, "fails_recorded", EXECUTION_STATUS_KEY) in recorded["s3"]
    assert read_status(tmp_path / "recorded", case, "fails_recorded", recorded["s3"]) == json.loads(TASK_STATUS)
    assert (recorded["status"], recorded["error"]) == ("FAILED", "States.TaskFailed")
