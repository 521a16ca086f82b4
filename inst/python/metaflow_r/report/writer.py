"""Writing a run's report: which run, which graph, which file.

``Rscript flow.R report [RUN_ID]``, ``run_client$report()`` in R and the end of every local run all come here.
A local run's report lives in its own directory of the datastore (``<Flow>/<run>/_report.html``, which readers
skip like every ``_`` name); a report of a run on S3 goes to the temporary directory, since a browser needs a
local file. The file is replaced atomically, so a browser never sees half a report.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from metaflow_r.core.errors import DatastoreError, GraphError, UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.storage import LocalStorage
from metaflow_r.report.html import render
from metaflow_r.report.run_view import read_run

REPORT_NAME = "_report.html"


def write_report(ds: FlowDatastore, run_id: str | None = None, graph: FlowGraph | None = None,
                 output: str | None = None) -> str:
    """Write the report of ``run_id`` (None or "latest": the newest run); returns the file's absolute path."""
    run_id = resolve_run_id(ds, run_id)
    html = render(read_run(ds, run_id, graph or _recorded_graph(ds, run_id)))
    path = Path(output).expanduser().absolute() if output else Path(default_output(ds, run_id))
    if path.is_dir():
        raise UsageError(f"Cannot write the report to {path}: it is a directory.",
                         [("i", f"Name a file, e.g. --output {path / 'report.html'}.")])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=".report-",
                                         suffix=".part", delete=False) as handle:
            handle.write(html)
        os.chmod(handle.name, 0o666 & ~_umask())  # readable as any file the user writes, not 0600
        os.replace(handle.name, path)
    except OSError as exc:
        raise UsageError(f"Cannot write the report to {path}: {exc.strerror or exc}.",
                         [("i", "Choose a file in a directory you can write to.")]) from None
    return str(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def resolve_run_id(ds: FlowDatastore, run_id: str | None) -> str:
    """A run id as a user types it (an id, Flow/id, "latest" or nothing), checked to exist."""
    if run_id and run_id.startswith(f"{ds.flow}/"):
        run_id = run_id[len(ds.flow) + 1:]
    records = [r for r in (ds.run_record(i) for i in ds.run_ids()) if r]
    if not run_id or run_id == "latest":
        if not records:
            raise DatastoreError(f"Flow {ds.flow} has no run in {ds.storage.root}.", _elsewhere_hints(ds))
        return max(records, key=lambda r: (r.get("created_at") or 0, r["run_id"]))["run_id"]
    if "/" in run_id or ds.run_record(run_id) is None:
        known = [r["run_id"] for r in sorted(records, key=lambda r: r.get("created_at") or 0)][-5:]
        raise DatastoreError(f"Run {ds.flow}/{run_id} does not exist in {ds.storage.root}.",
                             [("i", f"Known runs: {', '.join(known) or 'none'}; or report latest."),
                              *_elsewhere_hints(ds)])
    return run_id


def default_output(ds: FlowDatastore, run_id: str) -> str:
    if isinstance(ds.storage, LocalStorage):
        return ds.storage.local_path(f"{ds.flow}/{run_id}/{REPORT_NAME}")
    return os.path.join(tempfile.gettempdir(), "metaflow-r-reports", ds.flow, run_id, "report.html")


def _elsewhere_hints(ds: FlowDatastore) -> list[tuple[str, str]]:
    if isinstance(ds.storage, LocalStorage):
        return [("i", "A run on AWS Step Functions is in the S3 datastore: add --datastore s3 before the command "
                      "(in R, set METAFLOW_DEFAULT_DATASTORE=s3).")]
    return [("i", "A local run is in the local datastore: leave out --datastore s3.")]


def _recorded_graph(ds: FlowDatastore, run_id: str) -> FlowGraph | None:
    """The graph the run recorded, if its run record holds the flow's spec; else the records alone draw it."""
    raw = (ds.run_record(run_id) or {}).get("spec")
    if not isinstance(raw, dict):
        return None
    try:
        return FlowGraph(parse_spec(raw))
    except GraphError:
        return None
