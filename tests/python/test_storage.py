"""LocalStorage and S3Storage behave the same behind the Storage interface."""
from __future__ import annotations

import os
import re
import threading

import pytest
from conftest import s3_datastore

from metaflow_r.core.errors import ConfigurationError
from metaflow_r.datastore.s3 import S3Storage
from metaflow_r.datastore.flow import sha256_file
from metaflow_r.datastore.storage import LocalStorage


def test_write_then_read(storage_case):
    storage = storage_case.storage
    storage.write_bytes("Flow/1/_run.json", b'{"a": 1}')
    assert storage.read_bytes("Flow/1/_run.json") == b'{"a": 1}'
    assert storage.exists("Flow/1/_run.json")


def test_missing_key(storage_case):
    storage = storage_case.storage
    assert storage.read_bytes("Flow/nothing/here") is None
    assert not storage.exists("Flow/nothing/here")
    assert storage.list_children("Flow/nothing") == []


def test_overwrite_replaces_content(storage_case):
    storage = storage_case.storage
    storage.write_bytes("k/v", b"first")
    storage.write_bytes("k/v", b"second")
    assert storage.read_bytes("k/v") == b"second"
    assert storage_case.raw_keys() == ["k/v"]


def test_write_file_and_local_path(storage_case, tmp_path):
    source = tmp_path / "source.bin"
    payload = bytes(range(256)) * 100
    source.write_bytes(payload)
    storage = storage_case.storage
    storage.write_file("Flow/data/ab/abc", str(source))
    assert storage.read_bytes("Flow/data/ab/abc") == payload
    with open(storage.local_path("Flow/data/ab/abc"), "rb") as handle:
        assert handle.read() == payload


@pytest.mark.parametrize("on", ["the same filesystem", "another filesystem"])
def test_a_file_given_up_is_stored_whole(storage_case, tmp_path, on):
    where = tmp_path if on == "the same filesystem" else "/dev/shm"
    if not os.path.isdir(where) or os.stat(where).st_dev == os.stat(tmp_path).st_dev and where != tmp_path:
        pytest.skip(f"no {on} to move from")
    payload = os.urandom(100_000)
    source = os.path.join(where, f"given-up-{os.getpid()}.bin")
    with open(source, "wb") as handle:
        handle.write(payload)
    try:
        storage_case.storage.move_file("Flow/data/ab/given", source)
        assert storage_case.storage.read_bytes("Flow/data/ab/given") == payload
        assert storage_case.raw_keys() == ["Flow/data/ab/given"]  # nothing half written beside it
    finally:
        if os.path.exists(source):
            os.unlink(source)


def test_a_large_file_round_trips_in_parts_and_its_transfer_shows_progress(storage_case, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("METAFLOW_R_PROGRESS_BYTES", "20e6")
    payload = os.urandom(40 << 20)  # incompressible, and more than two 16 MB parts
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    storage = storage_case.storage
    storage.write_file("Flow/data/ab/big", str(source))
    with open(storage.local_path("Flow/data/ab/big", sha256_file(str(source))), "rb") as handle:
        assert handle.read() == payload
    said = capsys.readouterr().err
    if storage_case.kind == "local":
        assert said == ""  # a local copy is quick; R shows the progress of writing the file itself
        return
    url = storage.url("Flow/data/ab/big")
    head = storage.client.head_object(Bucket=storage.bucket, Key=storage._key("Flow/data/ab/big"))
    assert head["ETag"].endswith('-3"')  # a multipart upload's ETag counts its parts
    assert f"Uploading {url} (41.9 MB)...\n" in said
    assert re.search(rf"Uploading {re.escape(url)} took [0-9.]+ s \(41.9 MB\)", said)
    assert re.search(rf"Downloading {re.escape(url)} took [0-9.]+ s \(41.9 MB\)", said)


def test_a_small_transfer_prints_nothing(storage_case, tmp_path, capsys):
    source = tmp_path / "small.bin"
    source.write_bytes(b"x" * 1000)
    storage_case.storage.write_file("Flow/data/ab/small", str(source))
    storage_case.storage.local_path("Flow/data/ab/small")
    assert capsys.readouterr().err == ""


def test_the_emulators_s3_takes_a_blob_in_parts(emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where the download is kept
    ds = s3_datastore(emulator, "PartsFlow")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(40 << 20))
    sha = ds.save_blob_file(str(source))
    with open(ds.blob_path(sha), "rb") as handle:
        assert handle.read() == source.read_bytes()


def test_list_children_lists_files_and_directories_one_level(storage_case):
    storage = storage_case.storage
    for key in ("Flow/2/start/1/0/DONE.json", "Flow/10/_run.json", "Flow/data/aa/aaa", "Flow/_top.json",
                "Other/1/_run.json"):
        storage.write_bytes(key, b"x")
    assert storage.list_children("Flow") == ["10", "2", "_top.json", "data"]
    assert storage.list_children("Flow/") == ["10", "2", "_top.json", "data"]
    assert storage.list_children("Flow/2/start/1") == ["0"]
    assert storage.list_children("Flow/2/start/1/0") == ["DONE.json"]


def test_list_children_of_the_root(storage_case):
    storage = storage_case.storage
    storage.write_bytes("FlowA/1/_run.json", b"x")
    storage.write_bytes("FlowB/data/aa/aaa", b"x")
    assert storage.list_children("") == ["FlowA", "FlowB"]


def test_list_children_hides_dot_names(storage_case):
    storage = storage_case.storage
    storage.write_bytes("Flow/1/.hidden", b"x")
    storage.write_bytes("Flow/1/seen", b"x")
    assert storage.list_children("Flow/1") == ["seen"]


def test_writes_leave_no_temporary_objects(storage_case, tmp_path):
    storage = storage_case.storage
    source = tmp_path / "f"
    source.write_bytes(b"file content")
    storage.write_bytes("Flow/1/a.json", b"1")
    storage.write_bytes("Flow/1/a.json", b"2")
    storage.write_file("Flow/1/b.bin", str(source))
    assert storage_case.raw_keys() == ["Flow/1/a.json", "Flow/1/b.bin"]
    assert storage.list_children("Flow/1") == ["a.json", "b.bin"]


def test_a_local_reader_never_sees_a_partial_write(tmp_path):
    """Concurrent readers see the old or the new content, whole, never a mix or a truncated file.

    (Local only: S3 PUTs are atomic by contract, and moto's in-process backend is not thread-safe for this.)
    """
    storage = LocalStorage(tmp_path)
    size = 1 << 20
    contents = [b"a" * size, b"b" * size]
    storage.write_bytes("Flow/blob", contents[0])
    stop = threading.Event()
    bad: list[str] = []
    reads = [0]

    def read_loop():
        while not stop.is_set():
            try:
                data = storage.read_bytes("Flow/blob")
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                bad.append(repr(exc))
                return
            if data not in contents:
                bad.append(f"read {len(data) if data is not None else None} bytes, mixed or truncated")
                return
            reads[0] += 1

    reader = threading.Thread(target=read_loop)
    reader.start()
    writes = 0
    try:  # at least 20 writes, and on until the reader has read 20 times while they went on
        while (writes < 20 or reads[0] < 20) and reader.is_alive():
            storage.write_bytes("Flow/blob", contents[writes % 2])
            writes += 1
    finally:
        stop.set()
        reader.join()
    assert bad == []
    assert reads[0] >= 20  # the reader did read, while the writes went on
    assert os.listdir(tmp_path / "Flow") == ["blob"]


def test_make_dir_claims_once(storage_case):
    storage = storage_case.storage
    assert storage.make_dir("Flow/123") is True
    assert storage.make_dir("Flow/123") is False
    assert storage.make_dir("Flow/124") is True
    assert storage.list_children("Flow") == ["123", "124"]


def test_make_dir_is_exclusive_under_concurrent_claims(storage_case):
    storage = storage_case.storage
    barrier = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def claim():
        barrier.wait()
        won = storage.make_dir("Flow/same")
        with lock:
            results.append(won)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


@pytest.mark.parametrize("root", ["/local/path", "s3://", "https://bucket/prefix", "bucket/prefix"])
def test_s3_storage_rejects_a_non_s3_root(root):
    with pytest.raises(ConfigurationError, match="is not an S3 location") as info:
        S3Storage(root, client=object())
    assert info.value.exit_code == 5 and "METAFLOW_DATASTORE_SYSROOT_S3" in str(info.value)
