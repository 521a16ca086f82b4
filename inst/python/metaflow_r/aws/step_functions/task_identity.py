"""What a task of a Step Functions execution derives from the execution it runs in.

A Batch job learns only its step, the execution's name (the run id) and its foreach indices (the split
path); from those it finds its own task id and its parents' (the rule is in compile.py). A child of a Batch
array job finds its last index from its split path's ``+<offset>`` and its ``AWS_BATCH_JOB_ARRAY_INDEX``.
"""
from __future__ import annotations

import os
from typing import Mapping

from metaflow_r.aws.batch.environment import ARRAY_INDEX
from metaflow_r.aws.step_functions.compile import task_id
from metaflow_r.core.errors import ConfigurationError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.datastore.flow import FlowDatastore


def resolve_split_path(split_path: str, environ: Mapping[str, str] | None = None) -> str:
    """The split path with an array child's ``+<offset>`` replaced by offset + its array index."""
    if "+" not in split_path:
        return split_path
    environ = os.environ if environ is None else environ
    head, _, offset = split_path.rpartition("+")
    if ARRAY_INDEX not in environ:
        raise ConfigurationError(f"The split path {split_path!r} is an array job's, but {ARRAY_INDEX} is not set.",
                                 [("i", "Only Batch array jobs run such a task; redeploy the flow.")])
    return f"{head}{int(offset) + int(environ[ARRAY_INDEX])}"


def task_identity(graph: FlowGraph, ds: FlowDatastore, run_id: str, step: str, split_path: str,
                  environ: Mapping[str, str] | None = None) -> tuple[str, list[str], int | None]:
    """(task id, parents' pathspecs, split index) of the task of ``step`` at ``split_path``."""
    split_path = resolve_split_path(split_path, environ)
    path = split_path.split("-") if split_path else []
    node = graph[step]
    if not node.parents:
        return task_id(step, path), [], None
    if node.is_join:
        split = graph[node.matching_split]
        if split.is_foreach:
            width = ds.successful_task(f"{run_id}/{split.name}/{task_id(split.name, path)}")["num_splits"]
            parent = node.parents[0]
            inputs = [f"{run_id}/{parent}/{task_id(parent, path + [str(i)])}" for i in range(width)]
        else:
            inputs = [f"{run_id}/{p}/{task_id(p, path)}" for p in node.parents]
        return task_id(step, path), inputs, None
    parent = graph[node.parents[0]]
    if parent.is_foreach:
        return task_id(step, path), [f"{run_id}/{parent.name}/{task_id(parent.name, path[:-1])}"], int(path[-1])
    return task_id(step, path), [f"{run_id}/{parent.name}/{task_id(parent.name, path)}"], None
