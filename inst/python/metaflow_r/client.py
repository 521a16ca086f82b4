"""Read-only queries behind the R Client API. Everything returned is plain JSON-able data; R reads the
artifacts themselves from the local file each query names (``unserialize`` stays in R)."""
from __future__ import annotations

import os
from typing import Any

from .config import default_datastore
from .datastore import FlowDatastore, find_local_root, storage_for
from .storage import Storage
from .errors import DatastoreError


def _storage(datastore: str | None = None, root: str | None = None) -> Storage:
    """Built per query from the current settings, so a changed endpoint or root applies at once."""
    kind = datastore or default_datastore()
    if kind == "local":
        root = root or find_local_root(os.getcwd())
    return storage_for(kind, root)


# Damaged records the queries skipped, until R takes them (take_damaged) to warn about each.
_damaged: list[str] = []


def _flow(flow: str, datastore: str | None, root: str | None) -> FlowDatastore:
    ds = FlowDatastore(_storage(datastore, root), flow)
    ds.damaged = _damaged
    return ds


def take_damaged() -> list[str]:
    """The damaged records skipped since the last call, each once."""
    found = list(dict.fromkeys(_damaged))
    _damaged.clear()
    return found


def datastore_root(datastore: str | None = None, root: str | None = None) -> str:
    """Where the datastore the other queries read lives: a local directory or an s3:// URL."""
    return _storage(datastore, root).root


def list_flows(datastore: str | None = None, root: str | None = None) -> list[str]:
    storage = _storage(datastore, root)
    return [name for name in storage.list_children("") if storage.list_children(name)]


def runs(flow: str, namespace: str | None, datastore: str | None = None, root: str | None = None) -> list[dict]:
    """The flow's runs visible in ``namespace`` (None: all), newest first."""
    ds = _flow(flow, datastore, root)
    found = []
    for run_id in ds.run_ids():
        info = ds.readable(_run_info, ds, run_id)  # a damaged record hides that run, not the whole flow
        if info and (namespace is None or namespace in info["tags"]):
            found.append(info)
    return sorted(found, key=lambda r: (r["created_at"], r["run_id"]), reverse=True)


def run(flow: str, run_id: str, namespace: str | None, datastore: str | None = None,
        root: str | None = None) -> dict[str, Any]:
    ds = _flow(flow, datastore, root)
    info = _run_info(ds, run_id)
    if info is None:
        raise DatastoreError(f"Run {flow}/{run_id} does not exist.",
                             [("i", f"List the flow's runs with flow_client$new(\"{flow}\")$runs.")])
    if namespace is not None and namespace not in info["tags"]:
        raise DatastoreError(f"Run {flow}/{run_id} is not in namespace {namespace!r}.",
                             [("i", "Call set_namespace(NULL) to see every namespace.")])
    return info


def _run_info(ds: FlowDatastore, run_id: str) -> dict[str, Any] | None:
    record = ds.run_record(run_id)
    if record is None:
        return None
    status = ds.run_status(run_id)
    return {**record, "finished": status is not None, "successful": bool(status and status["successful"]),
            "finished_at": status["finished_at"] if status else None}


def steps(flow: str, run_id: str, datastore: str | None = None, root: str | None = None) -> list[dict]:
    """The run's steps in the order they started, each with its committed tasks' ids and time span."""
    ds = _flow(flow, datastore, root)
    found = []
    for step in ds.step_names(run_id):
        records = [r for r in (ds.task_record(run_id, step, t) for t in ds.task_ids(run_id, step)) if r is not None]
        if not records:
            continue
        found.append({"step": step, "task_ids": sorted((r["task_id"] for r in records), key=lambda t: (len(t), t)),
                      "started_at": min(r["started_at"] for r in records),
                      "finished_at": max(r["finished_at"] for r in records)})
    return sorted(found, key=lambda s: (s["started_at"], s["step"]))


def tasks(flow: str, run_id: str, step: str, datastore: str | None = None, root: str | None = None) -> list[dict]:
    ds = _flow(flow, datastore, root)
    found = []
    for task_id in sorted(ds.task_ids(run_id, step), key=lambda t: (len(t), t)):
        record = ds.task_record(run_id, step, task_id)
        if record is not None:
            found.append(record)
    return found


def task(flow: str, run_id: str, step: str, task_id: str, datastore: str | None = None,
         root: str | None = None) -> dict[str, Any]:
    ds = _flow(flow, datastore, root)
    record = ds.task_record(run_id, step, task_id)
    if record is None:
        raise DatastoreError(f"Task {flow}/{run_id}/{step}/{task_id} does not exist or never finished.",
                             [("i", "List the step's tasks with step$tasks.")])
    return record


def artifact_path(flow: str, sha: str, datastore: str | None = None, root: str | None = None) -> str:
    return _flow(flow, datastore, root).blob_path(sha)


def log(flow: str, run_id: str, step: str, task_id: str, attempt: int, stream: str,
        datastore: str | None = None, root: str | None = None) -> str:
    return _flow(flow, datastore, root).read_log(run_id, step, task_id, int(attempt), stream)


def report(flow: str, run_id: str, spec_json: str | None = None, output: str | None = None,
           datastore: str | None = None, root: str | None = None) -> str:
    """Write the run's report (see report.py); the flow's spec, when R has it, gives the steps not reached."""
    from .graph import FlowGraph
    from .report import write_report
    from .spec import parse_spec

    graph = FlowGraph(parse_spec(spec_json)) if spec_json else None
    return write_report(_flow(flow, datastore, root), run_id, graph, output)
