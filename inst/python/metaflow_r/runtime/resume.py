"""What ``resume`` reuses of an earlier run: its finished tasks before the step it runs again, and, resuming
from the failed step, the finished tasks of that step and the steps after it whose code is unchanged (the
step's code hash in the two runs' specs, R/step-hash.R) and whose inputs are (the runtime reuses a task
only when its parents were reused), as Metaflow reuses a failed foreach's finished siblings.

By default the origin is the user's newest run that has ended: a run still going (or another resume in
progress) is never cloned. A run named by id may be in another datastore: a production run on S3 is
resumed locally, its artifacts copied as its tasks are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metaflow_r.core.config import current_user
from metaflow_r.core.errors import UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.datastore import locate
from metaflow_r.datastore.flow import FlowDatastore


@dataclass
class Clone:
    """What ``resume`` reuses: the finished tasks of an earlier run, before the steps it runs again."""

    origin_run_id: str
    reuse_before: set[str]  # steps whose finished tasks may be reused
    origin: FlowDatastore  # where that run is: the run's own datastore, or S3 for a production run
    seed: int | None = None  # the origin's seed: the tasks run again draw what they drew there (core/rng.py)
    notes: list[str] = field(default_factory=list)  # what is reused of the steps run again, and why


def resume_plan(graph: FlowGraph, ds: FlowDatastore, origin_run_id: str | None,
                step: str | None) -> tuple[Clone, dict[str, Any]]:
    """The clone of the origin run, and the parameters the resumed run starts with (the origin's)."""
    records = sorted((r for r in (ds.readable(ds.run_record, run_id) for run_id in ds.run_ids()) if r),
                     key=lambda r: r["created_at"])
    source = ds
    if origin_run_id is None:
        origin_run_id = _latest_ended(graph, ds, records)
    elif ds.readable(ds.run_record, origin_run_id) is None:
        source = locate.run_datastore(graph.spec.name, origin_run_id) or ds
    record = source.run_record(origin_run_id)
    if record is None:
        known = [r["run_id"] for r in records][-5:]
        raise UsageError(f"Run {graph.spec.name}/{origin_run_id} does not exist.",
                         [("i", f"Known runs: {', '.join(known) or 'none'}.")])
    if source.run_status(origin_run_id) is None:
        raise UsageError(f"Run {graph.spec.name}/{origin_run_id} has not ended: it cannot be resumed yet.",
                         [("i", "Wait for it to end. A run whose process was killed is marked ended by its "
                                "reaper within seconds.")])
    if source is ds:
        ds.check_not_being_resumed(origin_run_id)
    named = step is not None
    if step is None:
        step = failed_step(graph, source, origin_run_id)
    if step not in graph.nodes:
        raise UsageError(f"The flow has no step {step!r} to resume from.", [("i", f"Steps: {', '.join(graph.order)}.")])
    rerun = graph.descendants(step)
    reuse = {s for s in graph.order if s not in rerun}
    notes = [] if named else _reuse_unchanged(graph, record, [s for s in graph.order if s in rerun], reuse)
    return Clone(origin_run_id, reuse, source, record.get("seed"), notes), record.get("parameters", {})


def _reuse_unchanged(graph: FlowGraph, record: dict[str, Any], rerun: list[str], reuse: set[str]) -> list[str]:
    """Adds to ``reuse`` the steps run again whose code the origin ran too; says of each what it does."""
    origin_hashes = {s["name"]: s.get("code_hash") for s in (record.get("spec") or {}).get("steps", [])}
    run = f"run {record['run_id']}"
    notes = []
    for name in rerun:
        now, then = graph[name].spec.code_hash, origin_hashes.get(name)
        if then is None or now is None:
            notes.append(f"Step {name!r}: {run} recorded no code hash for it, so its tasks run again.")
        elif now != then:
            notes.append(f"Step {name!r} changed since {run}: its tasks run again.")
        else:
            reuse.add(name)
            notes.append(f"Step {name!r} is unchanged since {run}: its finished tasks with unchanged inputs are "
                         "reused, the others run.")
    return notes


def _latest_ended(graph: FlowGraph, ds: FlowDatastore, records: list[dict[str, Any]]) -> str:
    namespace = f"user:{current_user()}"
    ended = [r["run_id"] for r in records if namespace in r.get("tags", [])
             and ds.readable(ds.run_status, r["run_id"]) is not None]
    if not ended:
        raise UsageError(f"Flow {graph.spec.name} has no ended run of yours ({namespace}) to resume.",
                         [("i", "Start one with: run"), ("i", "Or name one: resume --origin-run-id ID")])
    return ended[-1]


def failed_step(graph: FlowGraph, ds: FlowDatastore, run_id: str) -> str:
    """The first step, in graph order, with a task that did not succeed (or no task at all)."""
    for name in graph.order:
        task_ids = ds.task_ids(run_id, name)
        if not task_ids:
            return name
        for task_id in task_ids:
            record = ds.task_record(run_id, name, task_id)
            if record is None or not record.get("successful"):
                return name
    raise UsageError(f"Run {graph.spec.name}/{run_id} has no failed step.",
                     [("i", "Name the step to resume from: resume STEP.")])
