"""Shared fixtures: graph specs in the form R's flow_spec() sends, and storages to run datastore tests on."""
from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest


def step(name: str, next_steps: list[str] | str | None = None, *, join: bool = False, foreach: str | None = None,
         decorators: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One step as flow_spec() writes it: next is always a list (empty for "end"), foreach null unless set."""
    if isinstance(next_steps, str):
        next_steps = [next_steps]
    return {"name": name, "next": list(next_steps or []), "join": join, "foreach": foreach,
            "decorators": list(decorators or [])}


def param(name: str, *, help: str | None = None, default: Any = None, type: str = "str", required: bool = False,
          is_flag: bool = False, separator: str | None = None) -> dict[str, Any]:
    return {"name": name, "help": help, "default": default, "type": type, "required": required,
            "is_flag": is_flag, "separator": separator}


def make_spec(name: str, steps: list[dict[str, Any]], parameters: list[dict[str, Any]] | None = None,
              script: str | None = None, decorators: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"name": name, "script": script, "parameters": list(parameters or []),
            "decorators": list(decorators or []), "steps": steps, "package_suffixes": []}


def as_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec)


LINEAR = make_spec("LinearFlow", [step("start", "a"), step("a", "end"), step("end")])

BRANCH = make_spec("BranchFlow", [
    step("start", ["a", "b"]),
    step("a", "join"),
    step("b", "join"),
    step("join", "end", join=True),
    step("end"),
])

FOREACH = make_spec("ForeachFlow", [
    step("start", "body", foreach="items"),
    step("body", "join"),
    step("join", "end", join=True),
    step("end"),
])

NESTED_FOREACH = make_spec("NestedForeachFlow", [
    step("start", "per_letter", foreach="letters"),
    step("per_letter", "per_number", foreach="numbers"),
    step("per_number", "join_numbers"),
    step("join_numbers", "join_letters", join=True),
    step("join_letters", "end", join=True),
    step("end"),
])


@pytest.fixture
def linear_spec() -> dict[str, Any]:
    return copy.deepcopy(LINEAR)


@pytest.fixture
def branch_spec() -> dict[str, Any]:
    return copy.deepcopy(BRANCH)


@pytest.fixture
def foreach_spec() -> dict[str, Any]:
    return copy.deepcopy(FOREACH)


@pytest.fixture
def nested_foreach_spec() -> dict[str, Any]:
    return copy.deepcopy(NESTED_FOREACH)


@pytest.fixture
def param_spec() -> dict[str, Any]:
    """A linear flow with one parameter of every kind."""
    return make_spec("ParamFlow", [step("start", "end"), step("end")], parameters=[
        param("alpha", help="Learning rate.", default=0.01, type="float"),
        param("n_items", help="How many items.", default=3, type="int"),
        param("label", help="A label.", default="x"),
        param("loud", help="Shout.", default=True, type="bool"),
        param("dry_run", help="Do nothing.", is_flag=True, type="bool"),
        param("tags_in", help="Input tags.", default="a,b", separator=","),
        param("token", help="Secret token.", required=True),
    ])


# -- storages ------------------------------------------------------------------------------------


class StorageCase:
    """A storage under test plus a raw view of everything it holds (bypassing our own code)."""

    def __init__(self, kind: str, storage, raw_keys):
        self.kind = kind
        self.storage = storage
        self.raw_keys = raw_keys


def _local_case(tmp_path) -> StorageCase:
    from metaflow_r.storage import LocalStorage

    root = tmp_path / "root"
    root.mkdir()

    def raw_keys() -> list[str]:
        found = []
        for directory, _, files in os.walk(root):
            for name in files:
                found.append(os.path.relpath(os.path.join(directory, name), root))
        return sorted(found)

    return StorageCase("local", LocalStorage(root), raw_keys)


@pytest.fixture
def aws_env(monkeypatch):
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture(params=["local", "s3", "s3-bucket-root"])
def storage_case(request, tmp_path):
    """The same tests against LocalStorage, S3Storage under a prefix, and S3Storage at a bucket's root."""
    if request.param == "local":
        yield _local_case(tmp_path)
        return
    request.getfixturevalue("aws_env")
    import boto3
    from moto import mock_aws

    from metaflow_r.storage import S3Storage

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="mf-test-bucket")
        root = "s3://mf-test-bucket/some/prefix" if request.param == "s3" else "s3://mf-test-bucket"
        prefix = "some/prefix/" if request.param == "s3" else ""

        def raw_keys() -> list[str]:
            keys = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket="mf-test-bucket"):
                keys.extend(o["Key"][len(prefix):] for o in page.get("Contents", []))
            return sorted(keys)

        yield StorageCase(request.param, S3Storage(root, client=client, cache_dir=str(tmp_path / "cache")),
                          raw_keys)
