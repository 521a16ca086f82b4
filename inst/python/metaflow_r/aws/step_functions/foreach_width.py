"""A foreach task hands its width to the state machine, since a Batch job has no output of its own.

It writes it in the form its construct reads (``METAFLOW_FOREACH_MODE``, set by the compiler): the list of
indices in DynamoDB for an inline Map, the chunks of at most 10,000 items in DynamoDB for array jobs, a
JSON document of the indices in S3 for a DISTRIBUTED Map's ItemReader. A foreach wider than its deployment
was planned for is refused: its quotas were checked for that width.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping

from metaflow_r.aws.batch import environment as env
from metaflow_r.aws.errors import call
from metaflow_r.aws.session import client as aws_client
from metaflow_r.aws.step_functions.compile import array_chunks
from metaflow_r.core.config import setting
from metaflow_r.core.errors import ConfigurationError, ForeachTooWide

TTL_SECONDS = 30 * 24 * 3600


def check_foreach_width(width: int, environ: Mapping[str, str] | None = None) -> None:
    """Refuse a foreach wider than the deployment planned for."""
    environ = os.environ if environ is None else environ
    bound = environ.get(env.MAX_NUM_SPLITS)
    if bound and width > int(bound):
        raise ForeachTooWide(
            f"The foreach of step {environ.get(env.STEP, '?')!r} has {width:,} items; this deployment "
            f"takes at most {int(bound):,}.",
            [("i", f"Deploy again with step-functions create --max-num-splits {width} (or more); "
                   "--only-json --explain shows what that costs."),
             ("i", "Or make the foreach narrower.")])


def publish_foreach_width(dynamodb: Any, pathspec: str, width: int, storage: Any = None,
                          environ: Mapping[str, str] | None = None) -> None:
    """Publish the foreach's items for the state machine, in the form its construct reads.

    ``storage`` is the job's S3Storage (one is made from METAFLOW_DATASTORE_SYSROOT_S3 if needed)."""
    environ = os.environ if environ is None else environ
    check_foreach_width(width, environ)
    mode = environ.get(env.FOREACH_MODE, "inline")
    if mode == "distributed":
        key = environ.get(env.FOREACH_ITEMS_KEY)
        if not key:
            raise ConfigurationError(f"The Batch job has no {env.FOREACH_ITEMS_KEY}.",
                                     [("i", "It is set by the deployed state machine; redeploy the flow.")])
        if storage is None:
            from metaflow_r.datastore.s3 import S3Storage

            storage = S3Storage(_required_setting("DATASTORE_SYSROOT_S3"))
        storage.write_bytes(key, json.dumps(list(range(width)), separators=(",", ":")).encode())
        return
    if mode == "array":
        attributes = {"foreach_chunks": {"S": json.dumps(array_chunks(width), separators=(",", ":"))}}
    else:
        attributes = {"for_each_cardinality": {"L": [{"N": str(i)} for i in range(width)]}}
    table = _required_setting("SFN_DYNAMO_DB_TABLE")
    call(f"publishing the foreach's width in DynamoDB table {table}", (dynamodb or aws_client("dynamodb")).put_item,
         TableName=table, Item={"pathspec": {"S": pathspec}, **attributes,
                                "ttl": {"N": str(int(time.time()) + TTL_SECONDS)}})


def _required_setting(name: str) -> str:
    value = setting(name)
    if not value:
        raise ConfigurationError(f"The Batch job has no METAFLOW_{name}.")
    return value
