"""FlowDatastore on both storages: blobs, runs, attempts; and where the local datastore lives."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from metaflow_r.core.errors import ConfigurationError, DatastoreError
from metaflow_r.datastore.flow import FlowDatastore, find_local_root, storage_for
from metaflow_r.datastore.s3 import S3Storage
from metaflow_r.datastore.storage import LocalStorage


@pytest.fixture
def ds(storage_case) -> FlowDatastore:
    return FlowDatastore(storage_case.storage, "MyFlow")


def record(successful=True, attempt=0, **extra):
    return {"successful": successful, "attempt": attempt, "artifacts": {}, "split_stack": [], **extra}


# -- blobs ---------------------------------------------------------------------------------------


def test_blob_is_content_addressed_and_stored_once(ds, storage_case, tmp_path):
    payload = b"serialized R object" * 1000
    first, second, other = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    first.write_bytes(payload)
    second.write_bytes(payload)
    other.write_bytes(payload + b"!")
    sha = ds.save_blob_file(str(first))
    assert sha == hashlib.sha256(payload).hexdigest()
    assert ds.save_blob_file(str(second)) == sha
    other_sha = ds.save_blob_file(str(other))
    assert other_sha != sha
    blobs = [k for k in storage_case.raw_keys() if k.startswith("MyFlow/data/")]
    assert sorted(blobs) == sorted([f"MyFlow/data/{sha[:2]}/{sha}", f"MyFlow/data/{other_sha[:2]}/{other_sha}"])
    assert Path(ds.blob_path(sha)).read_bytes() == payload
    assert Path(ds.blob_path(other_sha)).read_bytes() == payload + b"!"


def test_an_intact_existing_blob_is_never_rewritten(tmp_path):
    storage = LocalStorage(tmp_path / "root")
    ds = FlowDatastore(storage, "MyFlow")
    source = tmp_path / "blob"
    source.write_bytes(b"x" * 100)
    sha = ds.save_blob_file(str(source))
    stored = Path(ds.blob_path(sha))
    before = (stored.stat().st_ino, stored.stat().st_mtime_ns)
    ds.save_blob_file(str(source))
    assert (stored.stat().st_ino, stored.stat().st_mtime_ns) == before


@pytest.mark.parametrize("damage", ["empty", "other content, same size", "truncated"])
def test_a_damaged_blob_is_healed_when_its_content_is_stored_again(ds, storage_case, tmp_path, damage):
    """Blobs are trusted by name only while they hold what the name says: met again, a damaged one is
    rewritten (a zero-length blob used to stay forever, failing every later run)."""
    source = tmp_path / "blob"
    source.write_bytes(b"the real content " * 100)
    sha = ds.save_blob_file(str(source))
    damaged = {"empty": b"", "other content, same size": b"X" * source.stat().st_size,
               "truncated": source.read_bytes()[:10]}[damage]
    storage_case.storage.write_bytes(ds.blob_key(sha), damaged)
    assert not ds.blob_intact(sha)
    assert ds.save_blob_file(str(source)) == sha
    assert ds.blob_intact(sha)
    assert storage_case.storage.read_bytes(ds.blob_key(sha)) == source.read_bytes()


def test_a_damaged_download_is_refused_naming_the_object(tmp_path, aws_env):
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="heal")
        ds = FlowDatastore(S3Storage("s3://heal/mf", cache_dir=str(tmp_path / "cache")), "MyFlow")
        source = tmp_path / "blob"
        source.write_bytes(b"content")
        sha = ds.save_blob_file(str(source))
        ds.storage.write_bytes(ds.blob_key(sha), b"tampered")
        with pytest.raises(DatastoreError, match=f"s3://heal/mf/MyFlow/data/{sha[:2]}/{sha} does not hold"):
            ds.blob_path(sha)
        assert not list((tmp_path / "cache").rglob(sha))  # nothing damaged is cached


R_LARGE_VALUE = ("set.seed(1); v <- data.frame(x = rnorm(4e6), day = as.Date('2024-01-01') + 0:3999999); "
                 "attr(v, 'note') <- 'kept'; class(v) <- c('big_frame', 'data.frame')")


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")
def test_a_large_r_artifact_round_trips_exactly_through_the_datastore(ds, tmp_path):
    """Written by R as a task writes it (64 MB, more than one S3 part), stored, fetched, read by R again."""
    written = tmp_path / "artifact-1.rds"
    rscript(f"{R_LARGE_VALUE}; metaflow:::write_artifact(v, '{written}')")
    sha = ds.save_blob_file(str(written), take=True)
    read = rscript(f"{R_LARGE_VALUE}; cat(identical(metaflow:::read_artifact('{ds.blob_path(sha)}'), v))")
    assert read == "TRUE"


def rscript(code: str) -> str:
    done = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- damaged records -------------------------------------------------------------------------------


def test_a_damaged_attempt_record_is_skipped_and_named(ds, storage_case):
    ds.new_run([], {}, "ann", run_id="r1")
    ds.write_attempt("r1", "a", "1", 0, record(successful=False, attempt=0))
    ds.write_attempt("r1", "a", "1", 1, record(attempt=1))
    ds.write_attempt("r1", "a", "2", 0, record())
    storage_case.storage.write_bytes("MyFlow/r1/a/1/1/DONE.json", b'{"successful": tr')
    assert ds.task_record("r1", "a", "1")["attempt"] == 0  # the older attempt still reads
    assert ds.task_record("r1", "a", "2")["successful"] is True  # and the rest of the step too
    assert len(ds.damaged) == 1 and f"{storage_case.storage.root}/MyFlow/r1/a/1/1/DONE.json is damaged" in ds.damaged[0]


def test_a_damaged_run_record_hides_that_run_only(ds, storage_case):
    from metaflow_r.client import queries as client

    for run_id in ("r1", "r2"):
        ds.new_run(["user:ann"], {}, "ann", run_id=run_id)
    storage_case.storage.write_bytes("MyFlow/r1/_run.json", b"\xff\xfe not json")
    found = client.runs("MyFlow", None, storage_case.storage.kind, storage_case.storage.root)
    assert [r["run_id"] for r in found] == ["r2"]
    ((kind, damaged),) = client.take_notes()
    assert kind == "damaged_record" and "MyFlow/r1/_run.json is damaged" in damaged
    assert ds.readable(ds.run_record, "r1") is None and "r1/_run.json" in ds.damaged[-1]


# -- runs ----------------------------------------------------------------------------------------


def test_new_run_records_the_run(ds):
    run_id = ds.new_run(["user:ann", "b", "b"], {"alpha": 0.5}, "ann", extra={"namespace": "user:ann"})
    assert run_id.isdigit()
    rec = ds.run_record(run_id)
    assert rec["run_id"] == run_id and rec["flow"] == "MyFlow" and rec["user"] == "ann"
    assert rec["tags"] == ["b", "user:ann"]
    assert rec["parameters"] == {"alpha": 0.5}
    assert rec["namespace"] == "user:ann"
    assert ds.run_ids() == [run_id]
    assert ds.run_status(run_id) is None
    ds.finish_run(run_id, False)
    assert ds.run_status(run_id)["successful"] is False


def test_a_status_the_state_machine_wrote_reads_like_a_tasks(ds):
    # compile.py's failure states write finished_at as $$.State.EnteredTime, an ISO 8601 text.
    ds.storage.create("MyFlow/sfn-1/_status.json", b'{"successful":false,"finished_at":"2026-12-03T06:23:36.063Z",'
                                                   b'"reason":"the Step Functions execution failed"}')
    status = ds.run_status("sfn-1")
    assert status["finished_at"] == pytest.approx(1796279016.063) and status["successful"] is False


def test_a_run_whose_runtime_died_reads_as_running_while_its_reaper_records_its_end(ds):
    """Else a reader racing the reaper reads another reason than the one the reaper then stores."""
    import subprocess

    from metaflow_r.core import processes

    dead = subprocess.Popen(["true"])
    dead.wait()
    reaper = subprocess.Popen(["sleep", "60"])
    run_id = ds.new_run([], {}, "tester", extra={"runtime": processes.identity(dead.pid)})
    ds.record_reaper(run_id, processes.identity(reaper.pid))
    assert ds.run_status(run_id) is None  # its reaper lives: the run's end is still to be recorded
    reaper.kill()
    reaper.wait()
    status = ds.run_status(run_id)  # both gone, and nothing recorded
    assert status["successful"] is False and f"(pid {dead.pid} on " in status["reason"]


def test_new_run_ids_are_unique_under_concurrent_claims(ds):
    n = 12
    barrier = threading.Barrier(n)
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim(i):
        try:
            barrier.wait()
            run_id = ds.new_run([], {"i": i}, "ann")
            with lock:
                ids.append(run_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == n
    assert sorted(ds.run_ids()) == sorted(ids)
    # each run's record belongs to the thread that claimed it
    assert sorted(ds.run_record(r)["parameters"]["i"] for r in ids) == list(range(n))


def test_new_run_refuses_an_existing_run_id(ds):
    assert ds.new_run([], {}, "ann", run_id="sfn-abc") == "sfn-abc"
    with pytest.raises(DatastoreError, match="Run MyFlow/sfn-abc already exists") as info:
        ds.new_run([], {}, "bob", run_id="sfn-abc")
    assert info.value.exit_code == 4
    assert ds.run_record("sfn-abc")["user"] == "ann"


def test_run_ids_skip_data_and_private_entries(ds, tmp_path):
    source = tmp_path / "blob"
    source.write_bytes(b"1")
    ds.save_blob_file(str(source))
    run_id = ds.new_run([], {}, "ann")
    ds.write_attempt(run_id, "start", "1", 0, record())
    assert ds.run_ids() == [run_id]
    assert ds.step_names(run_id) == ["start"]
    assert ds.task_ids(run_id, "start") == ["1"]


# -- attempts ------------------------------------------------------------------------------------


def test_attempts_newest_first(ds):
    for attempt in (0, 1, 2, 9, 10):
        ds.write_attempt("1", "start", "1", attempt, record(successful=attempt == 10, attempt=attempt))
    assert [r["attempt"] for r in ds.attempts("1", "start", "1")] == [10, 9, 2, 1, 0]
    assert ds.task_record("1", "start", "1")["attempt"] == 10


def test_an_attempt_without_done_is_invisible(ds):
    ds.write_attempt("1", "start", "1", 0, record(successful=False, attempt=0))
    # attempt 1 started, wrote its log, and died before committing
    ds.write_log("1", "start", "1", 1, "stdout", b"half way\n")
    assert [r["attempt"] for r in ds.attempts("1", "start", "1")] == [0]
    assert ds.task_record("1", "start", "1")["attempt"] == 0
    assert ds.read_log("1", "start", "1", 1, "stdout") == "half way\n"
    assert ds.read_log("1", "start", "1", 5, "stderr") == ""


def test_task_record_of_an_unknown_task_is_none(ds):
    assert ds.task_record("1", "start", "1") is None
    assert list(ds.attempts("1", "start", "1")) == []


def test_successful_task(ds):
    ds.write_attempt("1", "start", "1", 0, record(successful=False, attempt=0))
    ds.write_attempt("1", "start", "1", 1, record(successful=True, attempt=1, artifacts={"x": "ab"}))
    assert ds.successful_task("1/start/1")["artifacts"] == {"x": "ab"}


def test_successful_task_errors_for_a_failed_attempt(ds):
    ds.write_attempt("1", "a", "2", 0, record(successful=True, attempt=0))
    ds.write_attempt("1", "a", "2", 1, record(successful=False, attempt=1))
    with pytest.raises(DatastoreError, match="Task MyFlow/1/a/2 has no successful attempt") as info:
        ds.successful_task("1/a/2")
    assert info.value.exit_code == 4


def test_successful_task_errors_for_a_missing_task(ds):
    with pytest.raises(DatastoreError, match="Task MyFlow/1/a/7 has no successful attempt"):
        ds.successful_task("1/a/7")


def test_attempt_record_round_trips(ds):
    rec = record(attempt=0, artifacts={"x": "0" * 64}, split_stack=[{"kind": "foreach", "index": 2}],
                 input_paths=["1/start/1"], num_splits=None)
    ds.write_attempt("1", "body", "4", 0, rec)
    assert ds.task_record("1", "body", "4") == json.loads(json.dumps(rec))


# -- where the datastore lives ---------------------------------------------------------------------


def test_find_local_root_from_the_environment(monkeypatch, tmp_path):
    (tmp_path / "here" / ".metaflow").mkdir(parents=True)
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", str(tmp_path / "sysroot"))
    assert find_local_root(tmp_path / "here") == str(tmp_path / "sysroot" / ".metaflow")


def test_find_local_root_uses_the_nearest_parent(monkeypatch, tmp_path):
    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", raising=False)
    (tmp_path / ".metaflow").mkdir()
    (tmp_path / "a" / ".metaflow").mkdir(parents=True)
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_local_root(deep) == str(tmp_path / "a" / ".metaflow")
    assert find_local_root(tmp_path / "a") == str(tmp_path / "a" / ".metaflow")
    assert find_local_root(tmp_path) == str(tmp_path / ".metaflow")


def test_find_local_root_ignores_a_file_named_metaflow(monkeypatch, tmp_path):
    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", raising=False)
    (tmp_path / ".metaflow").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".metaflow").write_text("not a directory")
    assert find_local_root(tmp_path / "a") == str(tmp_path / ".metaflow")


def test_find_local_root_defaults_to_the_start_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", raising=False)
    if any((p / ".metaflow").is_dir() for p in tmp_path.parents):
        pytest.skip("a parent of the temporary directory holds a .metaflow")
    assert find_local_root(tmp_path) == str(tmp_path / ".metaflow")
    assert not (tmp_path / ".metaflow").exists()  # finding does not create it


def test_find_local_root_defaults_to_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", raising=False)
    (tmp_path / ".metaflow").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert find_local_root() == str(tmp_path / ".metaflow")


def test_storage_for(monkeypatch, tmp_path, aws_env):
    local = storage_for("local", str(tmp_path / "x"))
    assert isinstance(local, LocalStorage) and local.root == str(tmp_path / "x")
    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_S3", raising=False)
    with pytest.raises(ConfigurationError, match="No S3 datastore is configured") as info:
        storage_for("s3")
    assert info.value.exit_code == 5
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://bucket/pre")
    s3 = storage_for("s3")
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("bucket", "pre")
    with pytest.raises(DatastoreError, match="Unknown datastore 'gcs'"):
        storage_for("gcs")


def test_storage_for_local_without_root_uses_find_local_root(monkeypatch, tmp_path):
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", str(tmp_path))
    assert storage_for("local").root == os.path.join(str(tmp_path), ".metaflow")
