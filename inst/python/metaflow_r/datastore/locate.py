"""Where a flow's runs are: in the local datastore, and, once an S3 datastore is configured
(METAFLOW_DATASTORE_SYSROOT_S3), in S3 too, where production runs are.

Readers (the Client API, ``report``, ``resume --origin-run-id``) look in both, so a production run is found
with the settings a deployment needs and nothing more; run ids tell no lie about where they live (local
ones are numbers, Step Functions ones are execution names), and a run found once is looked up there again.
"""
from __future__ import annotations

import os
from typing import Iterator

from metaflow_r.core.config import default_datastore, setting
from metaflow_r.core.errors import MetaflowRError
from metaflow_r.datastore.flow import FlowDatastore, find_local_root, storage_for

# (flow, run id) -> the datastore kind holding it, for runs found once in this process
_found: dict[tuple[str, str], str] = {}


def kinds() -> list[str]:
    """The datastores to look in, the default one first."""
    first = default_datastore()
    others = [k for k in ("local", "s3") if k != first and (k == "local" or setting("DATASTORE_SYSROOT_S3"))]
    return [first, *others]


def flow_datastore(flow: str, kind: str, root: str | None = None) -> FlowDatastore:
    if kind == "local":
        root = root or find_local_root(os.getcwd())
    return FlowDatastore(storage_for(kind, root), flow)


def flow_datastores(flow: str, unreachable: list[str] | None = None) -> Iterator[FlowDatastore]:
    """Each datastore that may hold the flow's runs. One that cannot be reached (S3 without credentials,
    say) is noted in ``unreachable`` and passed over: local runs stay readable offline."""
    for kind in kinds():
        try:
            ds = flow_datastore(flow, kind)
            ds.run_ids()  # reaches it
        except Exception as exc:  # noqa: BLE001 - any failure to reach a datastore is reported the same way
            if kind == default_datastore():
                raise
            if unreachable is not None:
                reason = exc.message if isinstance(exc, MetaflowRError) else f"{type(exc).__name__}: {exc}"
                unreachable.append(f"the {kind} datastore could not be read ({reason})")
            continue
        yield ds


def run_datastore(flow: str, run_id: str) -> FlowDatastore | None:
    """The datastore holding run ``flow/run_id``, or None if none does."""
    kind = _found.get((flow, run_id))
    if kind is not None:
        return flow_datastore(flow, kind)
    for ds in flow_datastores(flow):
        if ds.readable(ds.run_record, run_id) is not None:
            _found[(flow, run_id)] = ds.storage.kind
            return ds
    return None
