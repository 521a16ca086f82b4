"""Read-only queries behind the R Client API. Everything returned is plain JSON-able data; R reads the
artifacts themselves from the local file each query names (``readRDS`` stays in R).

Runs are looked for in every datastore that may hold them (locate.py): local runs and, once S3 is
configured, production runs. Each query may name a datastore (and root) to read that one only.
"""
from __future__ import annotations

from typing import Any

from metaflow_r.core.errors import DatastoreError, NotDeployed
from metaflow_r.datastore import locate
from metaflow_r.datastore.flow import FlowDatastore

# What the queries passed over since R last asked (take_notes): (kind, text), kind being "damaged_record"
# or "unreachable_datastore"; R warns once for each.
_notes: list[tuple[str, str]] = []


def take_notes() -> list[list[str]]:
    found = list(dict.fromkeys(_notes))
    _notes.clear()
    return [list(note) for note in found]


def _noted(ds: FlowDatastore) -> FlowDatastore:
    damaged = _DamagedNotes()
    ds.damaged = damaged
    return ds


class _DamagedNotes(list):
    """FlowDatastore.damaged, reporting each damaged record as a note."""

    def append(self, text: str) -> None:  # type: ignore[override]
        super().append(text)
        _notes.append(("damaged_record", text))


def _datastores(flow: str, datastore: str | None, root: str | None) -> list[FlowDatastore]:
    if datastore is not None:
        return [_noted(locate.flow_datastore(flow, datastore, root))]
    unreachable: list[str] = []
    found = [_noted(ds) for ds in locate.flow_datastores(flow, unreachable)]
    _notes.extend(("unreachable_datastore", text) for text in unreachable)
    return found


def _run_datastore(flow: str, run_id: str, datastore: str | None, root: str | None) -> FlowDatastore:
    ds = (_noted(locate.flow_datastore(flow, datastore, root)) if datastore is not None
          else locate.run_datastore(flow, run_id))
    if ds is None or ds.readable(ds.run_record, run_id) is None:
        raise DatastoreError(f"Run {flow}/{run_id} does not exist.",
                             [("i", f"List the flow's runs with flow_client$new(\"{flow}\")$runs.")])
    return _noted(ds)


def datastore_root(datastore: str | None = None, root: str | None = None) -> list[str]:
    """Where the datastores the queries read live: a local directory, and an s3:// URL once configured."""
    kinds = [datastore] if datastore else locate.kinds()
    return [locate.flow_datastore("", kind, root).storage.root for kind in kinds]


def list_flows(datastore: str | None = None, root: str | None = None) -> list[str]:
    flows: set[str] = set()
    for ds in _datastores("", datastore, root):
        storage = ds.storage
        flows.update(name for name in storage.list_children("") if storage.list_children(name))
    return sorted(flows)


def runs(flow: str, namespace: str | None, datastore: str | None = None, root: str | None = None) -> list[dict]:
    """The flow's runs visible in ``namespace`` (None: all), newest first, each saying where it is."""
    found = []
    for ds in _datastores(flow, datastore, root):
        for run_id in ds.run_ids():
            info = ds.readable(_run_info, ds, run_id)  # a damaged record hides that run, not the whole flow
            if info and (namespace is None or namespace in info["tags"]):
                found.append(info)
    return sorted(found, key=lambda r: (r["created_at"], r["run_id"]), reverse=True)


def run(flow: str, run_id: str, namespace: str | None, datastore: str | None = None,
        root: str | None = None) -> dict[str, Any]:
    info = _run_info(_run_datastore(flow, run_id, datastore, root), run_id)
    if namespace is not None and namespace not in info["tags"]:
        raise DatastoreError(f"Run {flow}/{run_id} is not in namespace {namespace!r}.",
                             [("i", "Call set_namespace(NULL) to see every namespace.")])
    return info


def _run_info(ds: FlowDatastore, run_id: str) -> dict[str, Any] | None:
    record = ds.run_record(run_id)
    if record is None:
        return None
    status = ds.run_status(run_id)
    record = {k: v for k, v in record.items() if k != "spec"}  # R never needs the spec; it can be large
    return {**record, "finished": status is not None, "successful": bool(status and status["successful"]),
            "finished_at": status["finished_at"] if status else None,
            "reason": status.get("reason") if status else None, "datastore": ds.storage.kind}


def steps(flow: str, run_id: str, datastore: str | None = None, root: str | None = None) -> list[dict]:
    """The run's steps in the order they started, each with its committed tasks' ids and time span."""
    ds = _run_datastore(flow, run_id, datastore, root)
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
    ds = _run_datastore(flow, run_id, datastore, root)
    found = []
    for task_id in sorted(ds.task_ids(run_id, step), key=lambda t: (len(t), t)):
        record = ds.task_record(run_id, step, task_id)
        if record is not None:
            found.append(record)
    return found


def task(flow: str, run_id: str, step: str, task_id: str, datastore: str | None = None,
         root: str | None = None) -> dict[str, Any]:
    record = _run_datastore(flow, run_id, datastore, root).task_record(run_id, step, task_id)
    if record is None:
        raise DatastoreError(f"Task {flow}/{run_id}/{step}/{task_id} does not exist or never finished.",
                             [("i", "List the step's tasks with step$tasks.")])
    return record


def artifact_path(flow: str, run_id: str, sha: str, datastore: str | None = None, root: str | None = None) -> str:
    return _run_datastore(flow, run_id, datastore, root).blob_path(sha)


def artifact_paths(flow: str, run_id: str, shas: list[str], datastore: str | None = None,
                   root: str | None = None) -> dict[str, str]:
    """The local files of those blobs that need no download (a local datastore's): sha -> path, found with
    one call for a whole task; the others are fetched one by one with artifact_path when read."""
    ds = _run_datastore(flow, run_id, datastore, root)
    return {sha: ds.blob_path(sha) for sha in shas} if ds.storage.kind == "local" else {}


def log(flow: str, run_id: str, step: str, task_id: str, attempt: int, stream: str,
        datastore: str | None = None, root: str | None = None) -> str:
    return _run_datastore(flow, run_id, datastore, root).read_log(run_id, step, task_id, int(attempt), stream)


def report(flow: str, run_id: str, spec_json: str | None = None, output: str | None = None,
           datastore: str | None = None, root: str | None = None) -> str:
    """Write the run's report (see report/writer.py); the flow's spec, when R has it, gives the steps not reached."""
    from metaflow_r.core.graph import FlowGraph
    from metaflow_r.core.spec import parse_spec
    from metaflow_r.report.writer import write_report

    graph = FlowGraph(parse_spec(spec_json)) if spec_json else None
    return write_report(_run_datastore(flow, run_id, datastore, root), run_id, graph, output)


def production_namespace(flow: str) -> str:
    """The namespace a deployed flow's runs are in, from its deployment record in the S3 datastore."""
    ds = locate.flow_datastore(flow, "s3")
    record = ds.readable(ds.deployment)
    if not record:
        raise NotDeployed(f"Flow {flow} is not deployed: {ds.storage.root}/{flow}/_deployment.json does not exist.",
                          [("i", 'Deploy it with run(step_functions = "create").')])
    return record["namespace"]


def task_context(flow: str, run_id: str, step: str, task_id: str, datastore: str | None = None,
                 root: str | None = None) -> dict[str, Any]:
    """The context a task of the run starts with, rebuilt from its record (its parents, its foreach frame)
    and the graph its run recorded, so R can give a user the same ``self`` the step saw."""
    import tempfile

    from metaflow_r.core.graph import FlowGraph
    from metaflow_r.core.spec import parse_spec
    from metaflow_r.runtime import task as tasks

    ds = _run_datastore(flow, run_id, datastore, root)
    record = task(flow, run_id, step, task_id, datastore, root)
    run_record = ds.run_record(run_id) or {}
    if not isinstance(run_record.get("spec"), dict):
        raise DatastoreError(f"Run {flow}/{run_id} does not record its flow's graph, which a task's inputs "
                             "are rebuilt from.", [("i", "Runs made by this version of the package record it.")])
    graph = FlowGraph(parse_spec(run_record["spec"]))
    spec = tasks.AttemptSpec(run_id, step, task_id, record["input_paths"], tasks.split_index_of(graph, step, record),
                          record["attempt"])
    return tasks.prepare(graph, ds, spec, run_record, tempfile.gettempdir()).context
