"""What a task of a Step Functions execution derives from the execution it runs in.

A Batch job learns only its step, the execution's name (the run id) and its foreach indices (the split
path); from those it finds its own task id and its parents' (the rule is in compile.py). A foreach task
hands its width to the state machine through DynamoDB, since a Batch job has no output of its own.
"""
from __future__ import annotations

import time

from .compile import task_id
from .config import setting
from .datastore import FlowDatastore
from .errors import ConfigurationError
from .graph import FlowGraph


def task_identity(graph: FlowGraph, ds: FlowDatastore, run_id: str, step: str,
                  split_path: str) -> tuple[str, list[str], int | None]:
    """(task id, parents' pathspecs, split index) of the task of ``step`` at ``split_path``."""
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


def publish_foreach_width(dynamodb, pathspec: str, width: int) -> None:
    """The Map state reads the foreach's indices from here: a Batch job has no output of its own."""
    if dynamodb is None:
        import boto3

        dynamodb = boto3.client("dynamodb")
    table = setting("SFN_DYNAMO_DB_TABLE")
    if not table:
        raise ConfigurationError("The Batch job has no METAFLOW_SFN_DYNAMO_DB_TABLE.")
    dynamodb.put_item(TableName=table, Item={
        "pathspec": {"S": pathspec},
        "for_each_cardinality": {"L": [{"N": str(i)} for i in range(width)]},
        "ttl": {"N": str(int(time.time()) + 30 * 24 * 3600)},
    })
