"""How `trigger --wait` counts each step's tasks from an execution's history (progress.py): a failed task is
failed, not done, and each child of an array job is a task (issue 18: "fit_model: 1 done" for 4 items, and
"start: 1 done" just before FAILED). The emulator's runs check the same on real histories (test-emulator.R)."""
from __future__ import annotations

import json
from itertools import count

from metaflow_r.aws.step_functions.progress import StepCounts, step_counts

STEPS = {"start", "body"}


def step_of(state: str) -> str | None:
    return state if state in STEPS else state[:-4] if state.endswith("-one") else None


class History:
    """Events as Step Functions writes them: each names the one before it in its state."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.ids = count(1)

    def add(self, kind: str, previous: int | None, **details) -> int:
        event_id = next(self.ids)
        key = {"TaskStateEntered": "stateEnteredEventDetails", "TaskStateExited": "stateExitedEventDetails"}.get(
            kind, f"{kind[0].lower()}{kind[1:]}EventDetails")
        self.events.append({"id": event_id, "type": kind, "previousEventId": previous or 0, key: details})
        return event_id

    def task(self, state: str, *outcomes: tuple[str, dict], exited: bool = True) -> None:
        last = self.add("TaskStateEntered", None, name=state)
        for kind, job in outcomes:
            last = self.add("TaskScheduled", last)
            last = self.add("TaskSubmitted", last, output=json.dumps({"JobId": job.get("JobId", "j")}))
            if kind:
                field = "output" if kind == "TaskSucceeded" else "cause"
                last = self.add(kind, last, **{field: json.dumps(job)})
        if exited:
            self.add("TaskStateExited", last, name=state)


def counts(history: History, running: dict | None = None) -> dict[str, str]:
    found = step_counts(history.events, step_of, lambda job_id: running)
    return {step: str(c) for step, c in found.items()}


def test_a_failed_task_is_counted_failed_not_done():
    history = History()
    history.task("start", ("TaskFailed", {}))
    assert counts(history) == {"start": "0 done, 1 failed"}


def test_a_retried_task_counts_once_by_how_its_last_attempt_ended():
    history = History()
    history.task("start", ("TaskFailed", {}), ("TaskSucceeded", {}))
    history.task("body", ("TaskFailed", {}), ("", {}), exited=False)  # retried, its second job still running
    assert counts(history) == {"start": "1 done", "body": "0 done, 1 running"}


def test_each_child_of_an_array_job_is_a_task():
    history = History()
    array = {"JobId": "a1", "ArrayProperties": {"Size": 4, "StatusSummary": {"SUCCEEDED": 3, "FAILED": 1}}}
    history.task("body", ("TaskFailed", array))
    history.task("body-one", ("TaskSucceeded", {}))  # a chunk of one item runs as a plain job
    assert counts(history) == {"body": "4 done, 1 failed"}
    done = History()
    done.task("body", ("TaskSucceeded", {"ArrayProperties": {"Size": 4, "StatusSummary": {"SUCCEEDED": 4}}}))
    assert counts(done) == {"body": "4 done"}


def test_a_running_array_job_counts_its_children_as_batch_describes_them():
    history = History()
    history.task("body", ("", {"JobId": "a1"}), exited=False)
    summary = {"arrayProperties": {"size": 6, "statusSummary": {"SUCCEEDED": 2, "RUNNING": 3, "RUNNABLE": 1,
                                                                "FAILED": 0}}}
    assert counts(history, summary) == {"body": "2 done, 4 running"}


def test_states_that_run_no_step_are_not_counted():
    history = History()
    history.task("start-splits", ("TaskSucceeded", {}))  # the DynamoDB lookup of a foreach
    assert counts(history) == {}
    assert str(StepCounts(1, 2, 3)) == "1 done, 2 running, 3 failed"
