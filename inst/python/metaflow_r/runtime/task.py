"""A task attempt's data: the context it runs with, and the attempt record it leaves.

The R side (``Rscript flow.R task --context FILE``) reads the context, runs the step function, and leaves its
artifacts as RDS files plus the outputs document in the context's ``output_dir`` (or, when the step fails,
the task error document). Nothing it writes is visible until ``commit`` stores the blobs by content and
writes the attempt record in one atomic write. The attempt engine (attempt.py) calls these.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from metaflow_r.core import protocol
from metaflow_r.core import write_failures
from metaflow_r.core.errors import TASK_FAILURES, DatastoreError, DiskFull, FileTooLarge
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.rng import new_run_seed, task_stream
from metaflow_r.datastore.flow import FlowDatastore


@dataclass
class AttemptSpec:
    """What identifies one attempt of one task."""

    run_id: str
    step: str
    task_id: str
    input_paths: list[str] = field(default_factory=list)  # "run/step/task" of each parent task
    split_index: int | None = None
    retry_count: int = 0
    caught: dict[str, Any] | None = None  # the task error the fallback attempt of decorator("catch") records

    @property
    def pathspec(self) -> str:
        return f"{self.run_id}/{self.step}/{self.task_id}"


@dataclass
class Prepared:
    """A task attempt ready to launch: its context, and what is known of the artifacts it starts with."""

    context: dict[str, Any]
    inherited_info: dict[str, dict[str, Any]]  # sha -> artifact_info, from the parents' records

    @property
    def output_dir(self) -> str:
        return self.context["output_dir"]


def _artifact_refs(ds: FlowDatastore, shas: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"sha": sha, "path": ds.blob_path(sha)} for name, sha in shas.items()}


def _info_by_sha(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        info = record.get("artifact_info") or {}
        for name, sha in record.get("artifacts", {}).items():
            if name in info:
                found[sha] = info[name]
    return found


def child_split_stack(graph: FlowGraph, parent_step: str, parent: dict[str, Any], parent_task_id: str,
                      child_step: str, split_index: int | None) -> list[dict[str, Any]]:
    """The split stack a child task inherits: its parent's, plus a frame if the parent opened a split."""
    stack = list(parent.get("split_stack", []))
    node = graph[parent_step]
    if node.is_foreach:
        if split_index is None:
            raise DatastoreError(f"Task of step {child_step!r} needs a split index (its parent is a foreach).")
        stack.append({"kind": "foreach", "step": parent_step, "task_id": parent_task_id, "index": split_index,
                      "num_splits": parent["num_splits"], "var": node.spec.foreach,
                      "var_sha": parent["artifacts"][node.spec.foreach]})
    elif node.is_branch:
        stack.append({"kind": "branch", "step": parent_step, "task_id": parent_task_id, "index": child_step,
                      "num_splits": len(node.next)})
    return stack


def prepare(graph: FlowGraph, ds: FlowDatastore, task: AttemptSpec, run_record: dict[str, Any],
            output_dir: str, known: dict[str, dict[str, Any]] | None = None) -> Prepared:
    """The context the R task runs with: inherited artifacts, join inputs, foreach stack, parameters.

    ``known`` holds parents' records the caller already has (by pathspec); others are read."""
    node = graph[task.step]
    parameter_names = list(run_record.get("parameters", {}))
    known = known or {}
    parents = [(path, known.get(path) or ds.successful_task(path)) for path in task.input_paths]
    context: dict[str, Any] = {
        "flow": ds.flow, "run_id": task.run_id, "step": task.step, "task_id": task.task_id,
        "retry_count": task.retry_count, "user": run_record.get("user"), "tags": run_record.get("tags", []),
        "namespace": run_record.get("namespace"),
        "parameter_names": parameter_names, "join": None,
        "artifacts": {}, "inputs": [], "split_stack": [], "parameters": None, "output_dir": output_dir,
        "catch": _catch_context(node.spec.decorator("catch"), task.caught),
        "environment": (node.spec.decorator("environment").attributes.get("vars") or {})
        if node.spec.decorator("environment") else {},
    }
    if not parents:
        context["parameters"] = run_record.get("parameters", {})
    elif node.is_join:
        kind = graph.join_kind(task.step)
        context["join"] = kind
        context["split_stack"] = parents[0][1]["split_stack"][:-1]
        context["artifacts"] = _artifact_refs(
            ds, {n: s for n, s in parents[0][1]["artifacts"].items() if n in parameter_names})
        for path, record in parents:
            frame = record["split_stack"][-1]
            context["inputs"].append({"pathspec": path, "step": path.split("/")[1], "index": frame["index"],
                                      "artifacts": _artifact_refs(ds, record["artifacts"])})
    else:
        (path, parent), = parents
        context["split_stack"] = child_split_stack(graph, path.split("/")[1], parent, path.split("/")[2],
                                                   task.step, task.split_index)
        context["artifacts"] = _artifact_refs(ds, parent["artifacts"])
    context["split_stack"] = [dict(frame) for frame in context["split_stack"]]  # parents' frames stay as they are
    context["rng"] = task_stream(run_record.get("seed") or new_run_seed(), task.step, context["split_stack"])
    for frame in context["split_stack"]:
        if frame["kind"] == "foreach":
            frame["var_path"] = ds.blob_path(frame["var_sha"])
    return Prepared(context, _info_by_sha([record for _, record in parents]))


def _catch_context(decorator, caught: dict[str, Any] | None) -> dict[str, Any] | None:
    if decorator is None or caught is None:
        return None
    return {"var": decorator.attributes.get("var"),
            "print_exception": decorator.attributes.get("print_exception", True), "error": caught}


def task_error(error_class: str, message: str) -> dict[str, Any]:
    """A task error document for a failure R could not describe (a timeout, a crash, a lost worker); its
    class is one of the catalogue's task failures (data/errors.json)."""
    if error_class not in TASK_FAILURES:
        raise ValueError(f"{error_class} is not a task failure of data/errors.json")
    return {"class": [error_class, "error", "condition"], "message": message, "call": None, "traceback": []}


def commit(ds: FlowDatastore, task: AttemptSpec, prepared: Prepared, started_at: float,
           batch_job_id: str | None = None) -> dict[str, Any]:
    """Store the artifacts the R task left in its output directory and make the attempt visible."""
    output_dir = prepared.output_dir
    outputs = protocol.read("outputs", os.path.join(output_dir, protocol.OUTPUTS_FILE))
    artifacts: dict[str, str] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, entry in outputs["artifacts"].items():
        if "sha" in entry:
            artifacts[name] = entry["sha"]
            if entry["sha"] in prepared.inherited_info:
                info[name] = prepared.inherited_info[entry["sha"]]
            continue
        path = os.path.join(output_dir, entry["file"])
        info[name] = {"type": entry["type"], "size": os.path.getsize(path), "preview": entry["preview"]}
        try:
            artifacts[name] = ds.save_blob_file(path, take=True)  # the attempt's directory is discarded after
        except (DiskFull, FileTooLarge) as exc:  # the storage names a blob by its key; here it has a name
            raise write_failures.about(exc, f"artifact {name!r} of step {task.step!r}") from None
    record = _attempt_record(task, prepared, started_at, successful=True, batch_job_id=batch_job_id)
    record.update(artifacts=artifacts, artifact_info=info, num_splits=outputs["num_splits"])
    ds.write_attempt(task.run_id, task.step, task.task_id, task.retry_count, record)
    return record


def failure_message(record: dict[str, Any] | None) -> str | None:
    """The error message a failed attempt's record keeps (R's own, for an R error), or None."""
    exception = (record or {}).get("exception")
    message = exception.get("message") if isinstance(exception, dict) else None
    return str(message) if message else None


def record_failure(ds: FlowDatastore, task: AttemptSpec, prepared: Prepared, started_at: float, reason: str,
                   exception: dict[str, Any] | None, batch_job_id: str | None = None) -> dict[str, Any]:
    record = _attempt_record(task, prepared, started_at, successful=False, batch_job_id=batch_job_id)
    record.update(artifacts={}, error=reason, exception=exception)
    ds.write_attempt(task.run_id, task.step, task.task_id, task.retry_count, record)
    return record


def _attempt_record(task: AttemptSpec, prepared: Prepared, started_at: float, successful: bool,
                    batch_job_id: str | None) -> dict[str, Any]:
    stack = [{k: v for k, v in frame.items() if k != "var_path"} for frame in prepared.context["split_stack"]]
    record = {"successful": successful, "step": task.step, "task_id": task.task_id, "attempt": task.retry_count,
              "input_paths": task.input_paths, "split_stack": stack, "started_at": started_at,
              "finished_at": time.time()}
    if batch_job_id:
        record["batch_job_id"] = batch_job_id
    return record


def split_index_of(graph: FlowGraph, step: str, record: dict[str, Any]) -> int | None:
    """The split index a task was enqueued with: its foreach frame's index when its parent is the foreach."""
    node = graph[step]
    if node.is_join or not node.parents:
        return None
    parent = graph[node.parents[0]]
    return record["split_stack"][-1]["index"] if parent.is_foreach else None
