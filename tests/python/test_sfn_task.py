"""What a Batch task derives from its Step Functions execution (task_identity.py, foreach_width.py): its task id from the split path
(an array child's from its AWS_BATCH_JOB_ARRAY_INDEX too), and its foreach's items, published in the form
each construct reads. End to end, the constructs read what is published: test_foreach_scale.py."""
from __future__ import annotations

import copy
import json

import boto3
import pytest
from conftest import NESTED_FOREACH

from metaflow_r.aws.step_functions.compile import MAX_ARRAY_SIZE, array_chunks
from metaflow_r.aws.step_functions.foreach_width import publish_foreach_width
from metaflow_r.aws.step_functions.task_identity import resolve_split_path, task_identity
from metaflow_r.core.errors import ConfigurationError, ForeachTooWide
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec
from metaflow_r.datastore.layout import FOREACH_ITEMS_KEY

TABLE = "metaflow-foreach"


@pytest.mark.parametrize("split_path, index, expected", [
    ("", None, ""), ("3", None, "3"), ("3-1", None, "3-1"),
    ("+0", "4", "4"), ("+10000", "5", "10005"), ("2-+0", "7", "2-7"), ("2-1-+5000", "0", "2-1-5000"),
])
def test_an_array_child_adds_its_index_to_the_offset(split_path, index, expected):
    environ = {} if index is None else {"AWS_BATCH_JOB_ARRAY_INDEX": index}
    assert resolve_split_path(split_path, environ) == expected


def test_an_array_split_path_outside_an_array_job_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="AWS_BATCH_JOB_ARRAY_INDEX"):
        resolve_split_path("2-+0", {})


def test_the_array_child_of_a_nested_foreach_knows_its_task_and_parent():
    graph = FlowGraph(parse_spec(copy.deepcopy(NESTED_FOREACH)))
    identity = task_identity(graph, None, "r1", "per_number", "2-+0", {"AWS_BATCH_JOB_ARRAY_INDEX": "1"})
    assert identity == ("per_number-2-1", ["r1/per_letter/per_letter-2"], 1)


@pytest.mark.parametrize("width", [0, 1, 2, 9_999, 10_000, 10_001, 25_000, 100_000])
def test_array_chunks_cover_every_item_once_within_batch_limits(width):
    chunks = array_chunks(width)
    covered = [i for c in chunks for i in range(c["offset"], c["offset"] + c["size"])]
    assert covered == list(range(width))
    assert all(c["size"] <= MAX_ARRAY_SIZE for c in chunks)
    # Batch arrays have 2 to 10,000 children: only a foreach of one item has a chunk of one (a plain job).
    assert all(c["size"] >= 2 for c in chunks) or width == 1
    assert len(chunks) == -(-width // MAX_ARRAY_SIZE)


@pytest.fixture
def aws(aws_env, monkeypatch):
    from moto import mock_aws

    monkeypatch.setenv("METAFLOW_SFN_DYNAMO_DB_TABLE", TABLE)
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://mf-sfn-task/metaflow")
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pathspec", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pathspec", "KeyType": "HASH"}])
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="mf-sfn-task")
        yield dynamodb, s3


def item(dynamodb, pathspec):
    return dynamodb.get_item(TableName=TABLE, Key={"pathspec": {"S": pathspec}}, ConsistentRead=True).get("Item")


def test_an_inline_foreach_publishes_its_indices(aws):
    dynamodb, _ = aws
    publish_foreach_width(dynamodb, "r1/start/start", 3, environ={"METAFLOW_FOREACH_MODE": "inline"})
    assert item(dynamodb, "r1/start/start")["for_each_cardinality"] == {"L": [{"N": "0"}, {"N": "1"}, {"N": "2"}]}


def test_an_array_foreach_publishes_its_chunks(aws):
    dynamodb, _ = aws
    publish_foreach_width(dynamodb, "r1/start/start", 25_000, environ={"METAFLOW_FOREACH_MODE": "array"})
    stored = item(dynamodb, "r1/start/start")
    assert "for_each_cardinality" not in stored
    assert json.loads(stored["foreach_chunks"]["S"]) == array_chunks(25_000)


def test_a_distributed_foreach_writes_the_indices_its_item_reader_reads(aws):
    dynamodb, s3 = aws
    key = FOREACH_ITEMS_KEY.format(flow="F", run_id="r1", step="start", task_id="start")
    publish_foreach_width(None, "r1/start/start", 100_000,
                          environ={"METAFLOW_FOREACH_MODE": "distributed", "METAFLOW_FOREACH_ITEMS_KEY": key,
                                   "METAFLOW_MAX_NUM_SPLITS": "100000"})
    body = s3.get_object(Bucket="mf-sfn-task", Key=f"metaflow/{key}")["Body"].read()
    assert json.loads(body) == list(range(100_000))
    assert item(dynamodb, "r1/start/start") is None  # nothing in DynamoDB: 100,000 indices would not fit an item


def test_a_foreach_wider_than_planned_fails_and_says_how_to_plan_for_it(aws):
    dynamodb, _ = aws
    environ = {"METAFLOW_FOREACH_MODE": "array", "METAFLOW_MAX_NUM_SPLITS": "1000", "METAFLOW_STEP": "start"}
    with pytest.raises(ForeachTooWide) as raised:
        publish_foreach_width(dynamodb, "r1/start/start", 1001, environ=environ)
    assert "1,001 items" in str(raised.value) and "--max-num-splits 1001" in str(raised.value)
    assert item(dynamodb, "r1/start/start") is None
    publish_foreach_width(dynamodb, "r1/start/start", 1000, environ=environ)  # at the bound: published
    assert item(dynamodb, "r1/start/start") is not None
