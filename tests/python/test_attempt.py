"""The attempt engine: a task runs alike wherever it runs, and its output is read in linear time.

A step of a real flow runs once as a local task (warm-worker fork, local datastore) and once as its Batch
job would run it (``run_batch_task``, a plain Rscript process, the S3 datastore on in-process moto); the
two attempts must leave the same record, the same two logs and the same files.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import aws_env  # noqa: F401 - a fixture
from moto import mock_aws

from metaflow_r.aws.code_package import build_package
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.s3 import S3Storage
from metaflow_r.datastore.storage import LocalStorage
from metaflow_r.runtime.pipes import MAX_LINE, LineBuffer

needs_r = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")

FLOW = """library(metaflow)
start <- function(self) {
  self$twice <- 2 * self$alpha
  self$items <- c("p", "q")
  cat("to stdout", self$alpha, "\\n")
  message("to stderr")
  cat("no newline at the end")
}
failing <- function(self) {
  cat("before the error\\n")
  check(self$alpha)
}
check <- function(x) if (x > 0.1) stop("alpha is too large: ", x)
metaflow("BothWaysFlow") %>%
  parameter("alpha", default = 0.1) %>%
  step(step = "start", r_function = START, next_step = "body", foreach = "items") %>%
  step(step = "body", next_step = "join") %>%
  step(step = "join", r_function = function(self, inputs) NULL, next_step = "end", join = TRUE) %>%
  step(step = "end") %>%
  run()
"""
# Fields that name where and when an attempt ran, not what it did.
CIRCUMSTANTIAL = {"task_id", "started_at", "finished_at", "batch_job_id"}


def write_flow(directory: Path, start_function: str) -> Path:
    script = directory / "flow.R"
    script.write_text(FLOW.replace("START", start_function))
    return script


def local_attempt(script: Path, root: Path) -> tuple[FlowDatastore, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METAFLOW_"))}
    subprocess.run(["Rscript", str(script), "run", "--alpha", "0.5"], cwd=script.parent, capture_output=True,
                   env={**env, "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(root)}, timeout=120)
    ds = FlowDatastore(LocalStorage(root / ".metaflow"), "BothWaysFlow")
    (run_id,) = ds.run_ids()
    return ds, f"{run_id}/start/1"


def batch_attempt(script: Path, monkeypatch, tmp_path: Path) -> tuple[FlowDatastore, str]:
    """The start step as its Batch job runs it: the code package from S3, the settings from the environment."""
    from metaflow_r.aws.batch.task import run_batch_task

    spec = json.loads(subprocess.run(["Rscript", str(script), "spec"], cwd=script.parent, capture_output=True,
                                     text=True, timeout=120).stdout)
    package = build_package(str(script), spec, {"R": "test"})
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="both-ways")
    s3.put_object(Bucket="both-ways", Key=f"mf/BothWaysFlow/_code/{package.sha}.tgz", Body=package.data)
    boto3.client("dynamodb").create_table(
        TableName="foreach", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pathspec", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pathspec", "KeyType": "HASH"}])
    for name, value in {
        "METAFLOW_STEP": "start", "METAFLOW_RUN_ID": "sfn-both", "METAFLOW_SPLIT_PATH": "",
        "METAFLOW_CODE_URL": f"s3://both-ways/mf/BothWaysFlow/_code/{package.sha}.tgz",
        "METAFLOW_CODE_SHA": package.sha, "METAFLOW_DATASTORE_SYSROOT_S3": "s3://both-ways/mf",
        "METAFLOW_SFN_DYNAMO_DB_TABLE": "foreach", "METAFLOW_PARAMETERS": json.dumps({"alpha": 0.5}),
        "METAFLOW_BATCH_ATTEMPTS": "1", "AWS_BATCH_JOB_ID": "job-1", "AWS_BATCH_JOB_ATTEMPT": "1",
        "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    run_batch_task(rscript=shutil.which("Rscript"))
    return FlowDatastore(S3Storage("s3://both-ways/mf"), "BothWaysFlow"), "sfn-both/start/start"


def attempt_files(ds: FlowDatastore, pathspec: str) -> dict[str, Any]:
    run_id, step, task_id = pathspec.split("/")
    names = ds.storage.list_children(ds.attempt_prefix(run_id, step, task_id, 0))
    return {"files": names, "record": ds.task_record(run_id, step, task_id),
            "stdout": ds.read_log(run_id, step, task_id, 0, "stdout"),
            "stderr": ds.read_log(run_id, step, task_id, 0, "stderr")}


@needs_r
@pytest.mark.parametrize("start_function", ["start", "failing"])
def test_a_step_leaves_the_same_attempt_locally_and_on_batch(start_function, tmp_path, monkeypatch, aws_env):
    script = write_flow(tmp_path, start_function)
    local = attempt_files(*local_attempt(script, tmp_path / "local"))
    with mock_aws():
        batch = attempt_files(*batch_attempt(script, monkeypatch, tmp_path))

    assert local["files"] == batch["files"] == ["DONE.json", "stderr.log", "stdout.log"]
    assert local["stdout"] == batch["stdout"]
    assert local["stderr"] == batch["stderr"]
    same = {k: v for k, v in local["record"].items() if k not in CIRCUMSTANTIAL}
    assert same == {k: v for k, v in batch["record"].items() if k not in CIRCUMSTANTIAL}
    assert batch["record"]["batch_job_id"] == "job-1" and "batch_job_id" not in local["record"]
    if start_function == "start":
        assert local["stdout"] == "to stdout 0.5 \nno newline at the end\n"
        assert local["stderr"] == "to stderr\n"
        assert local["record"]["num_splits"] == 2
        assert local["record"]["artifact_info"]["twice"] == {"type": "numeric", "size": 62, "preview": "num 1"}
    else:
        assert local["stdout"] == "before the error\n"
        assert local["stderr"].startswith("Error in step 'start': alpha is too large: 0.5\n")
        assert local["record"]["exception"] == {
            "class": ["simpleError", "error", "condition"], "message": "alpha is too large: 0.5",
            "call": "check(self$alpha)", "traceback": ["failing(self)", "check(self$alpha)",
                                                       'stop("alpha is too large: ", x)']}


# -- reading output -----------------------------------------------------------------------------------


def test_lines_are_split_as_they_come_whatever_the_chunks():
    buffer = LineBuffer()
    lines = [line for chunk in (b"a", b"b\nc", b"d\n\ne", b"f") for line in buffer.feed(chunk)]
    assert lines == [b"ab", b"cd", b""]
    assert buffer.rest() == [b"ef"]
    assert buffer.rest() == []


def test_a_line_without_end_is_passed_on_in_pieces_and_nothing_is_lost():
    buffer = LineBuffer()
    out = buffer.feed(b"y" * (3 * MAX_LINE + 10)) + buffer.feed(b"z\n")
    assert all(len(piece) <= MAX_LINE for piece in out)
    assert b"".join(out) == b"y" * (3 * MAX_LINE + 10) + b"z"


def test_an_endless_line_is_held_in_bounded_memory():
    """A progress bar redrawn with \\r never ends its line: what is held back stays under one line's bound,
    so each byte is copied a bounded number of times (bench/output_throughput.py times it)."""
    buffer = LineBuffer()
    passed_on = 0
    for _ in range(1024):
        passed_on += sum(map(len, buffer.feed(b"\r" * 65536)))
        assert len(buffer.partial) <= MAX_LINE
    assert passed_on + len(buffer.partial) == 1024 * 65536


def test_a_batch_job_that_fails_before_its_task_starts_leaves_a_failed_attempt(tmp_path, monkeypatch, aws_env):
    """The code package cannot be used (here: it is not the one deployed): the job still records why."""
    from metaflow_r.aws.batch.task import run_batch_task

    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="setup")
        boto3.client("s3").put_object(Bucket="setup", Key="mf/SetupFlow/_code/abc.tgz", Body=b"not a package")
        for name, value in {
            "METAFLOW_FLOW_NAME": "SetupFlow", "METAFLOW_STEP": "body", "METAFLOW_RUN_ID": "sfn-setup",
            "METAFLOW_SPLIT_PATH": "4", "METAFLOW_CODE_URL": "s3://setup/mf/SetupFlow/_code/abc.tgz",
            "METAFLOW_CODE_SHA": "abc", "METAFLOW_DATASTORE_SYSROOT_S3": "s3://setup/mf",
            "AWS_BATCH_JOB_ID": "job-9", "AWS_BATCH_JOB_ATTEMPT": "2", "TMPDIR": str(tmp_path),
        }.items():
            monkeypatch.setenv(name, value)
        assert run_batch_task() != 0
        ds = FlowDatastore(S3Storage("s3://setup/mf"), "SetupFlow")
        record = ds.task_record("sfn-setup", "body", "body-4")
        assert record["successful"] is False and record["attempt"] == 1 and record["batch_job_id"] == "job-9"
        assert record["exception"]["class"][0] == "metaflow_task_setup_error"
        assert "code package's hash" in record["exception"]["message"]
        assert "code package's hash" in ds.read_log("sfn-setup", "body", "body-4", 1, "stderr")
