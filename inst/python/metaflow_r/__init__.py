"""Backend of the metaflow R package: graph validation, local runtime, datastore and CLI."""
from . import cli, client, show
from .datastore import FlowDatastore, find_local_root, storage_for
from .errors import (ConfigurationError, DatastoreError, GraphError, MetaflowRError, RunFailed,
                     UsageError)
from .graph import FlowGraph
from .spec import FlowSpec, parse_spec

__all__ = [
    "cli", "client", "show", "FlowDatastore", "FlowGraph", "FlowSpec", "parse_spec", "find_local_root", "storage_for",
    "MetaflowRError", "UsageError", "GraphError", "DatastoreError", "ConfigurationError", "RunFailed",
]
