"""Backend of the metaflow R package. Its subpackages, lowest layer first (docs/architecture.md):

    core        the flow's spec, rules and graph; parameters; errors; settings; the R<->Python protocol
    datastore   byte storage (local, S3), the flow datastore's records, which datastore holds a run
    runtime     the local runtime: graph walk, attempt engine and launchers, reaper, console
    report      what a user reads: the graph as text or mermaid, a run's HTML report
    client      read-only queries behind the R Client API
    aws         one AWS session and error translation; the code package; Batch; Step Functions
    cli         the command line every entry point shares
    emulator    the offline AWS emulator (optional extra; the only importer of moto)

Importing this package loads none of them (a reaper or a task pays only for what it uses); the names
below load their module on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

# The R package's version (DESCRIPTION): R refuses a backend of another version.
__version__ = "0.1.0"

_EXPORTS = {
    "FlowDatastore": "metaflow_r.datastore.flow", "find_local_root": "metaflow_r.datastore.flow",
    "storage_for": "metaflow_r.datastore.flow", "FlowGraph": "metaflow_r.core.graph",
    "FlowSpec": "metaflow_r.core.spec", "parse_spec": "metaflow_r.core.spec",
    "AttemptEngine": "metaflow_r.runtime.attempt",
    **{name: "metaflow_r.core.errors" for name in ("MetaflowRError", "UsageError", "GraphError", "DatastoreError",
                                                    "ConfigurationError", "RunFailed", "AwsError", "ProtocolError")},
}
_SUBPACKAGES = ("core", "datastore", "runtime", "report", "client", "aws", "cli", "emulator")
__all__ = [*_EXPORTS, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"metaflow_r.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'metaflow_r' has no attribute {name!r}")
