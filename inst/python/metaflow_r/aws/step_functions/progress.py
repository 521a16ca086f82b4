"""How each step of an execution stands, from its history: tasks done, running and failed, each child of a
Batch array job counted as the task it is ("fit_model: 3 done, 1 failed", not "1 done").

Each task state's entries are followed through their events (each event names the one before it): an entry
that exited after its task succeeded is done, after its task failed (caught by the state machine) failed,
and one not exited yet is running. An array job's children are counted from its job: the TaskSucceeded
output or TaskFailed cause (DescribeJobs' job, with arrayProperties' statusSummary) once it ended, and
DescribeJobs while it runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

RUNNING_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


@dataclass
class StepCounts:
    done: int = 0
    running: int = 0
    failed: int = 0

    def __str__(self) -> str:
        parts = [f"{self.done} done"] + [f"{n} {what}" for n, what in ((self.running, "running"),
                                                                         (self.failed, "failed")) if n]
        return ", ".join(parts)


@dataclass
class _Entry:
    state: str
    exited: bool = False
    ended: str | None = None  # "succeeded" or "failed": how its last task event ended
    job: dict[str, Any] = field(default_factory=dict)  # the last job event's job (submitted, or its end)


def step_counts(history: Iterable[dict[str, Any]], step_of: Callable[[str], str | None],
                describe_job: Callable[[str], dict[str, Any] | None]) -> dict[str, StepCounts]:
    """The counts of each step that has started. ``step_of`` names a task state's step (None: not a step's);
    ``describe_job`` is DescribeJobs of one job id (for a running array job)."""
    entries = _entries(history)
    counts: dict[str, StepCounts] = {}
    for entry in entries.values():
        step = step_of(entry.state)
        if step is not None:
            _count(counts.setdefault(step, StepCounts()), entry, describe_job)
    return counts


def _entries(history: Iterable[dict[str, Any]]) -> dict[int, _Entry]:
    """Each TaskStateEntered's entry, with what its task events said."""
    events = {e["id"]: e for e in history}
    entries: dict[int, _Entry] = {}
    owner: dict[int, int] = {}  # event id -> the id of its entry's TaskStateEntered
    for event in sorted(events.values(), key=lambda e: e["id"]):
        kind = event["type"]
        if kind == "TaskStateEntered":
            entries[event["id"]] = _Entry(event["stateEnteredEventDetails"]["name"])
            owner[event["id"]] = event["id"]
            continue
        entry_id = owner.get(event.get("previousEventId", 0))
        if entry_id is None or not kind.startswith("Task"):
            continue
        owner[event["id"]] = entry_id
        _note(entries[entry_id], kind, event)
    return entries


def _note(entry: _Entry, kind: str, event: dict[str, Any]) -> None:
    details = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
    if kind == "TaskStateExited":
        entry.exited = True
    elif kind == "TaskSucceeded":
        entry.ended = "succeeded"
        entry.job = _json(details.get("output"))
    elif kind in ("TaskFailed", "TaskTimedOut", "TaskSubmitFailed", "TaskStartFailed"):
        entry.ended = "failed"
        entry.job = _json(details.get("cause")) or entry.job
    elif kind == "TaskSubmitted":
        entry.ended = None  # a retry submits again: what ends counts
        entry.job = _json(details.get("output"))


def _count(counts: StepCounts, entry: _Entry, describe_job: Callable[[str], dict[str, Any] | None]) -> None:
    array = entry.job.get("ArrayProperties") or {}
    if entry.exited:
        summary = array.get("StatusSummary") or {}
        if not array:
            counts.done += entry.ended == "succeeded"
            counts.failed += entry.ended != "succeeded"
        else:
            counts.done += int(summary.get("SUCCEEDED", array.get("Size", 0) if entry.ended == "succeeded" else 0))
            counts.failed += int(summary.get("FAILED", 0))
        return
    described = describe_job(entry.job["JobId"]) if entry.job.get("JobId") else None
    summary = ((described or {}).get("arrayProperties") or {}).get("statusSummary")
    if not summary:
        counts.running += 1
        return
    counts.done += int(summary.get("SUCCEEDED", 0))
    counts.failed += int(summary.get("FAILED", 0))
    counts.running += sum(int(summary.get(s, 0)) for s in RUNNING_STATUSES)


def _json(text: Any) -> dict[str, Any]:
    try:
        found = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
