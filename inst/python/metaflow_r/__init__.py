"""Backend of the metaflow R package: graph validation, local runtime, datastore, Step Functions, and CLI.

docs/architecture.md says where each concept lives.
"""
from . import cli, client, show
from .attempt import AttemptEngine
from .datastore import FlowDatastore, find_local_root, storage_for
from .errors import (AwsError, ConfigurationError, DatastoreError, GraphError, MetaflowRError, ProtocolError,
                     RunFailed, UsageError)
from .graph import FlowGraph
from .spec import FlowSpec, parse_spec

__all__ = [
    "cli", "client", "show", "AttemptEngine", "FlowDatastore", "FlowGraph", "FlowSpec", "parse_spec",
    "find_local_root", "storage_for", "MetaflowRError", "UsageError", "GraphError", "DatastoreError", "ConfigurationError", "RunFailed",
    "AwsError", "ProtocolError",
]
