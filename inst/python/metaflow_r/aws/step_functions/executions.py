"""Following a Step Functions execution: wait for its end (the loop lives in Python, where R's lock does
not stall it), saying how each step stands (progress.py), and tell which task failed and why (failures.py)."""
from __future__ import annotations

import time
from typing import Any

from metaflow_r.aws.errors import call, pages
from metaflow_r.aws.step_functions.failures import failed_task
from metaflow_r.aws.step_functions.progress import step_counts
from metaflow_r.core.errors import RunFailed
from metaflow_r.core.graph import FlowGraph
from metaflow_r.datastore.flow import FlowDatastore

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def wait_for(sfn, arn: str, poll_seconds: float = 1.0, timeout: float | None = None) -> dict[str, Any]:
    deadline = time.time() + timeout if timeout else None
    while True:
        described = _describe(sfn, arn)
        if described["status"] in TERMINAL or (deadline and time.time() > deadline):
            return described
        time.sleep(poll_seconds)


def follow(sfn, arn: str, steps: set[str], echo, poll_seconds: float = 2.0, batch=None) -> dict[str, Any]:
    """Wait for the execution's end, saying as it goes how each step stands ("body: 3 done, 2 running"),
    one line whenever a step's counts change (progress.py; ``batch`` counts a running array job's children);
    returns the final DescribeExecution."""
    shown: dict[str, str] = {}

    def describe_job(job_id: str) -> dict[str, Any] | None:
        if batch is None:
            return None
        found = call("reading an array job", batch.describe_jobs, jobs=[job_id])["jobs"]
        return found[0] if found else None

    while True:
        described = _describe(sfn, arn)
        for step, counts in step_counts(_history(sfn, arn), _batch_step(steps), describe_job).items():
            if shown.get(step) != str(counts):
                shown[step] = str(counts)
                echo(f"  {step}: {counts}")
        if described["status"] in TERMINAL:
            return described
        time.sleep(poll_seconds)


def _batch_step(steps: set[str]):
    """The step whose Batch job a task state runs (the state, or a one-item array chunk's "<step>-one")."""
    return lambda state: state if state in steps else state[:-4] if state.endswith("-one") and state[:-4] in steps \
        else None


def _describe(sfn, arn: str) -> dict[str, Any]:
    return call(f"reading run {arn.rsplit(':', 1)[-1]}", sfn.describe_execution, executionArn=arn)


def _history(sfn, arn: str):
    for page in pages("reading the run's history", sfn, "get_execution_history", executionArn=arn):
        yield from page["events"]


def failure(sfn, arn: str, graph: FlowGraph, name: str, described: dict[str, Any],
            hint=lambda *command: " ".join(command), ds: FlowDatastore | None = None) -> RunFailed | None:
    """Why run ``name`` did not succeed, naming the failing task and its error as the run's datastore ``ds``
    recorded it (None when it succeeded). ``hint`` writes a command as the user runs it (see
    cli.invocation.Invocation.hint)."""
    flow = graph.spec.name
    if described["status"] == "SUCCEEDED":
        return None
    if described["status"] not in TERMINAL:
        return RunFailed(f"Run {flow}/{name} is still {described['status']}.",
                         [("i", f"Check later with: {hint('step-functions', 'status', name)}")],
                         data={"flow": flow, "run_id": name})
    failed = failed_task(_history(sfn, arn), graph, ds, name)
    outcome = described["status"].lower().replace("_", " ")
    data = {"flow": flow, "run_id": name, "step": failed.step if failed else None}
    if failed is not None and failed.task_id is not None:
        pathspec = f"{flow}/{name}/{failed.step}/{failed.task_id}"
        bullets = [("x", failed.message)] if failed.message else []
        bullets += [("i", f"Its log: {hint('step-functions', 'logs', f'{name}/{failed.step}/{failed.task_id}')}"),
                    ("i", f'Reproduce it in R: debug_task("{pathspec}")')]
        return RunFailed(f"Run {flow}/{name} {outcome} in step {failed.step!r} (task {pathspec}).", bullets,
                         data={**data, "pathspec": pathspec, "error_message": failed.message})
    if failed is not None and (failed.state or "").endswith("-foreach"):
        where, detail = (f" in the foreach of step {failed.step!r}: one of its items failed",
                         "Each item ran as a child execution of its own: look for the failed one with the Step "
                         "Functions console's Map Run view, or read the body's logs: "
                         f"{hint('step-functions', 'logs', f'{name}/STEP')}.")
    elif failed is not None and failed.step:
        where, detail = f" in step {failed.step!r}", f"Its log: {hint('step-functions', 'logs', f'{name}/{failed.step}')}"
    else:
        where, detail = "", f"Details: {described.get('error', '')} {described.get('cause', '')}"[:500]
    return RunFailed(f"Run {flow}/{name} {outcome}{where}.", [("i", detail)], data={**data, "pathspec": None})
