"""Following a Step Functions execution: wait for its end (the loop lives in Python, where R's lock does
not stall it), and find which step failed."""
from __future__ import annotations

import time
from typing import Any

from metaflow_r.aws.errors import call, pages
from metaflow_r.core.errors import RunFailed

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


def follow(sfn, arn: str, steps: set[str], echo, poll_seconds: float = 2.0) -> dict[str, Any]:
    """Wait for the execution's end, saying as it goes how each step stands ("body: 3 done, 2 running"),
    one line whenever a step's counts change; returns the final DescribeExecution."""
    shown: dict[str, tuple[int, int]] = {}
    while True:
        described = _describe(sfn, arn)
        for step, counts in _step_counts(sfn, arn, steps).items():
            if shown.get(step) != counts:
                shown[step] = counts
                done, running = counts
                echo(f"  {step}: {done} done" + (f", {running} running" if running else ""))
        if described["status"] in TERMINAL:
            return described
        time.sleep(poll_seconds)


def _describe(sfn, arn: str) -> dict[str, Any]:
    return call(f"reading run {arn.rsplit(':', 1)[-1]}", sfn.describe_execution, executionArn=arn)


def _history(sfn, arn: str):
    for page in pages("reading the run's history", sfn, "get_execution_history", executionArn=arn):
        yield from page["events"]


def _step_counts(sfn, arn: str, steps: set[str]) -> dict[str, tuple[int, int]]:
    """(tasks done, tasks running) of each step that has started, from the execution's history."""
    entered: dict[str, int] = {}
    exited: dict[str, int] = {}
    for event in _history(sfn, arn):
        if event["type"] == "TaskStateEntered":
            name = event["stateEnteredEventDetails"]["name"]
            entered[name] = entered.get(name, 0) + 1
        elif event["type"] == "TaskStateExited":
            name = event["stateExitedEventDetails"]["name"]
            exited[name] = exited.get(name, 0) + 1
    return {step: (exited.get(step, 0), entered[step] - exited.get(step, 0)) for step in entered if step in steps}


def failed_step(sfn, arn: str) -> str | None:
    """The state whose task failed first (or whose distributed Map's children failed), from the execution's
    history. The compiler names a step's states after the step: ``body``, ``body-one``, ``start-foreach``."""
    events = {e["id"]: e for e in _history(sfn, arn)}
    for event in sorted(events.values(), key=lambda e: e["id"]):
        if event["type"] in ("TaskFailed", "TaskTimedOut", "TaskSubmitFailed", "TaskStartFailed", "MapRunFailed"):
            previous = events.get(event.get("previousEventId", 0))
            while previous is not None:
                if previous["type"].endswith("StateEntered"):
                    return previous["stateEnteredEventDetails"]["name"]
                previous = events.get(previous.get("previousEventId", 0))
    return None


def failure(sfn, arn: str, flow: str, name: str, described: dict[str, Any],
            hint=lambda *command: " ".join(command)) -> RunFailed | None:
    """Why run ``name`` did not succeed, naming the failing step (None when it succeeded). ``hint`` writes
    a command as the user runs it (see cli.invocation.Invocation.hint)."""
    if described["status"] == "SUCCEEDED":
        return None
    if described["status"] not in TERMINAL:
        return RunFailed(f"Run {flow}/{name} is still {described['status']}.",
                         [("i", f"Check later with: {hint('step-functions', 'status', name)}")],
                         data={"flow": flow, "run_id": name})
    state = failed_step(sfn, arn)
    step = state.split("-")[0] if state else None
    if state and state.endswith("-foreach"):
        where, detail = (f" in the foreach of step {step!r}: one of its items failed",
                         "Each item ran as a child execution of its own: look for the failed one with the Step "
                         "Functions console's Map Run view, or read the body's logs: "
                         f"{hint('step-functions', 'logs', f'{name}/STEP')}.")
    elif step:
        where, detail = f" in step {step!r}", f"Its log: {hint('step-functions', 'logs', f'{name}/{step}')}"
    else:
        where, detail = "", f"Details: {described.get('error', '')} {described.get('cause', '')}"[:500]
    return RunFailed(f"Run {flow}/{name} {described['status'].lower().replace('_', ' ')}{where}.", [("i", detail)],
                     data={"flow": flow, "run_id": name, "step": step,
                           "pathspec": f"{flow}/{name}/{step}" if step else None})
