"""Which task of a failed Step Functions execution failed, and with which error: what a user needs to act on
it from R (``debug_task(e$pathspec)``) as on a local failure.

The execution's history names the failed state; the failed job's own description (the TaskFailed cause)
holds the environment the state machine gave it, so its step and foreach indices, hence the task id
(compile.py's rule). An array job's cause names the chunk, not the child: the chunk's tasks are read from
the datastore until the failed one. Where the history holds no job (a distributed Map's child execution
failed), the failed state's steps are read from the datastore. The error message is the one the task's
last attempt recorded (R's own for an R error).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from metaflow_r.aws.batch import environment as env
from metaflow_r.aws.step_functions.compile import task_id
from metaflow_r.core.graph import FlowGraph
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.runtime.task import failure_message

FAILURES = ("TaskFailed", "TaskTimedOut", "TaskSubmitFailed", "TaskStartFailed", "MapRunFailed")
MAX_READ = 1_000  # task records read looking for the failed one, per step


@dataclass(frozen=True)
class FailedTask:
    state: str | None  # the failed state, as the compiler names it (body, body-one, start-foreach)
    step: str | None
    task_id: str | None = None
    message: str | None = None  # the error its last attempt recorded


def entered_state(events: dict[int, dict[str, Any]], event: dict[str, Any]) -> str | None:
    """The state ``event`` happened in: the nearest StateEntered before it."""
    previous = events.get(event.get("previousEventId", 0))
    while previous is not None:
        if previous["type"].endswith("StateEntered"):
            return previous["stateEnteredEventDetails"]["name"]
        previous = events.get(previous.get("previousEventId", 0))
    return None


def failed_task(history: Iterable[dict[str, Any]], graph: FlowGraph, ds: FlowDatastore | None,
                run_id: str) -> FailedTask | None:
    """The first failed task of the execution whose ``history`` this is (None when no task failed)."""
    events = {e["id"]: e for e in history}
    first = next((e for e in sorted(events.values(), key=lambda e: e["id"]) if e["type"] in FAILURES), None)
    if first is None:
        return None
    state = entered_state(events, first)
    step = _step_of(state, graph)
    job = _job_of(first)
    given = _environment(job) if job is not None else {}
    split = given.get(env.SPLIT_PATH) or ""
    if job is not None and "+" not in split:
        found_step = given.get(env.STEP) or step
        found_id = task_id(found_step, split.split("-") if split else [])
        record = ds.readable(ds.task_record, run_id, found_step, found_id) if ds is not None else None
        return FailedTask(state, found_step, found_id, failure_message(record))
    candidates = _array_children(job) if job is not None else _tasks_of_steps(graph, state, step, ds, run_id)
    for found_step, found_id in candidates:
        record = ds.readable(ds.task_record, run_id, found_step, found_id) if ds is not None else None
        if record is not None and not record.get("successful"):
            return FailedTask(state, found_step, found_id, failure_message(record))
    return FailedTask(state, step)


def _step_of(state: str | None, graph: FlowGraph) -> str | None:
    """The step a state belongs to: itself, or the step named before the compiler's "-suffix"."""
    for name in (state, (state or "").rsplit("-", 1)[0]):
        if name in graph.nodes:
            return name
    return None


def _job_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """The Batch job a TaskFailed event's cause describes (Step Functions writes DescribeJobs' job there)."""
    try:
        job = json.loads(event.get("taskFailedEventDetails", {}).get("cause") or "")
    except ValueError:
        return None
    return job if isinstance(job, dict) and isinstance(job.get("Container"), dict) else None


def _environment(job: dict[str, Any]) -> dict[str, str]:
    return {e.get("Name"): e.get("Value") for e in job["Container"].get("Environment") or []}


def _array_children(job: dict[str, Any]) -> list[tuple[str, str]]:
    """(step, task id) of each child of an array job: its split path ends in +offset, its size is the array's."""
    given = _environment(job)
    step, (*head, offset) = given.get(env.STEP, ""), given.get(env.SPLIT_PATH, "").split("-")
    size = int((job.get("ArrayProperties") or {}).get("Size") or 0)
    return [(step, task_id(step, [*head, str(int(offset[1:]) + i)])) for i in range(min(size, MAX_READ))]


def _tasks_of_steps(graph: FlowGraph, state: str | None, step: str | None, ds: FlowDatastore | None,
                    run_id: str) -> list[tuple[str, str]]:
    """Without a job: the tasks the datastore holds of the failed state's step, or of a foreach's body."""
    if step is None or ds is None:
        return []
    steps = [n.name for n in graph if step in n.split_parents] if (state or "").endswith("-foreach") else [step]
    return [(name, found) for name in steps for found in ds.task_ids(run_id, name)[:MAX_READ]]
