"""What a task of a Step Functions execution derives from the execution it runs in.

A Batch job learns only its step, the execution's name (the run id) and its foreach indices (the split
path); from those it finds its own task id and its parents' (the rule is in compile.py). A child of a Batch
array job finds its last index from its split path's ``+<offset>`` and its ``AWS_BATCH_JOB_ARRAY_INDEX``.

A foreach task hands its width to the state machine, since a Batch job has no output of its own, in the
form its construct reads (``METAFLOW_FOREACH_MODE``, set by the compiler): the list of indices in DynamoDB
for an inline Map, the chunks of at most 10,000 items in DynamoDB for array jobs, a JSON document of the
indices in S3 for a DISTRIBUTED Map's ItemReader.
"""
from __future__ import annotations

import json
import os
import time
from typing import Mapping

from metaflow_r.aws.step_functions.compile import array_chunks, task_id
from metaflow_r.core.config import setting
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.core.errors import ConfigurationError, MetaflowRError
from metaflow_r.core.graph import FlowGraph

ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"
TTL_SECONDS = 30 * 24 * 3600


# The exit status of a job that no retry can help: the job definition's retryStrategy ends the job on it
# (evaluateOnExit) rather than run the task again. R's own failures exit 1, so this one is told apart.
NOT_RETRYABLE_EXIT = 86


class ForeachTooWide(MetaflowRError):
    """A foreach produced more items than the deployment was planned for (--max-num-splits): every retry
    would produce as many."""

    exit_code = NOT_RETRYABLE_EXIT


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


def check_foreach_width(width: int, environ: Mapping[str, str] | None = None) -> None:
    """Refuse a foreach wider than the deployment planned for: its quotas were checked for that width."""
    environ = os.environ if environ is None else environ
    bound = environ.get("METAFLOW_MAX_NUM_SPLITS")
    if bound and width > int(bound):
        raise ForeachTooWide(
            f"The foreach of step {environ.get('METAFLOW_STEP', '?')!r} has {width:,} items; this deployment "
            f"takes at most {int(bound):,}.",
            [("i", f"Deploy again with step-functions create --max-num-splits {width} (or more); "
                   "--only-json --explain shows what that costs."),
             ("i", "Or make the foreach narrower.")])


def publish_foreach_width(dynamodb, pathspec: str, width: int, storage=None,
                          environ: Mapping[str, str] | None = None) -> None:
    """Publish the foreach's items for the state machine, in the form its construct reads.

    ``storage`` is the job's S3Storage (one is made from METAFLOW_DATASTORE_SYSROOT_S3 if needed)."""
    environ = os.environ if environ is None else environ
    check_foreach_width(width, environ)
    mode = environ.get("METAFLOW_FOREACH_MODE", "inline")
    if mode == "distributed":
        key = environ.get("METAFLOW_FOREACH_ITEMS_KEY")
        if not key:
            raise ConfigurationError("The Batch job has no METAFLOW_FOREACH_ITEMS_KEY.",
                                     [("i", "It is set by the deployed state machine; redeploy the flow.")])
        if storage is None:
            from metaflow_r.datastore.storage import S3Storage

            storage = S3Storage(_required_setting("DATASTORE_SYSROOT_S3"))
        storage.write_bytes(key, json.dumps(list(range(width)), separators=(",", ":")).encode())
        return
    if mode == "array":
        attributes = {"foreach_chunks": {"S": json.dumps(array_chunks(width), separators=(",", ":"))}}
    else:
        attributes = {"for_each_cardinality": {"L": [{"N": str(i)} for i in range(width)]}}
    if dynamodb is None:
        import boto3

        dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=_required_setting("SFN_DYNAMO_DB_TABLE"), Item={
        "pathspec": {"S": pathspec}, **attributes, "ttl": {"N": str(int(time.time()) + TTL_SECONDS)}})


def _required_setting(name: str) -> str:
    value = setting(name)
    if not value:
        raise ConfigurationError(f"The Batch job has no METAFLOW_{name}.")
    return value
