"""Byte storage under string keys: the one interface the datastore is written against.

`LocalStorage` (here) keeps keys as files under a directory; `S3Storage` (s3.py) keeps them as objects
under an ``s3://bucket/prefix`` root. Writes are atomic in both: a reader sees a whole object or none.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, ContextManager, Protocol

from metaflow_r.core.write_failures import DATASTORE, writing
from metaflow_r.datastore.layout import describe

_UMASK = os.umask(0o022)  # read it (only os.umask can) and put it back
os.umask(_UMASK)


def sha256_stream(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    with stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Storage(Protocol):
    kind: str  # "local" or "s3", as storage_for() takes it
    root: str

    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...  # None: no such key
    def sha256(self, key: str) -> str | None: ...  # of what is stored now, read in full
    def read_bytes(self, key: str) -> bytes | None: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def write_file(self, key: str, path: str) -> None: ...
    def move_file(self, key: str, path: str) -> None: ...  # write_file, taking the file itself where it can
    def create(self, key: str, data: bytes) -> bool: ...  # only if the key does not exist yet; False if it does
    def delete(self, key: str) -> None: ...
    def local_path(self, key: str, sha: str | None = None) -> str: ...  # immutable keys: S3 caches downloads
    def list_children(self, prefix: str) -> list[str]: ...
    def make_dir(self, key: str) -> bool: ...  # claims a new key (a run id); False if it was claimed already


class LocalStorage:
    """Keys are paths below ``root``; a write goes to a temporary file renamed into place. A write that fails
    for want of room (a full disk, the file size limit) is one error naming the key's file and what it holds."""

    kind = "local"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = str(Path(root).absolute())

    def _path(self, key: str) -> Path:
        return Path(self.root, key)

    def _writing(self, key: str) -> ContextManager[None]:
        return writing(describe(key), str(self._path(key)), DATASTORE)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def sha256(self, key: str) -> str | None:
        try:
            return sha256_stream(self._path(key).open("rb"))
        except FileNotFoundError:
            return None

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def create(self, key: str, data: bytes) -> bool:
        """Written whole beside the target, then linked into place: link() fails if the target exists, so
        of two writers exactly one wins, and a reader never sees half a file."""
        with self._writing(key):
            return self._create(key, data)

    def _create(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o666 & ~_UMASK)
                handle.write(data)
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def write_bytes(self, key: str, data: bytes) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                handle.write(data)

        self._write(key, write)

    def write_file(self, key: str, path: str) -> None:
        self._write(key, lambda tmp: shutil.copyfile(path, tmp))

    def move_file(self, key: str, path: str) -> None:
        """Store the file at ``path``, which the caller gives up: renamed into place when both are on one
        filesystem (a gigabyte costs no copy), else copied."""
        target = self._path(key)
        with self._writing(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o666 & ~_UMASK)
            try:
                os.replace(path, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                self.write_file(key, path)

    def _write(self, key: str, fill) -> None:
        """Fill a temporary file beside the target, then rename it into place. A failed write removes its
        temporary file; only a killed process leaves one (hidden: list_children skips dot files)."""
        target = self._path(key)
        with self._writing(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            os.close(fd)
            try:
                os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600: others sharing the datastore could not read
                fill(tmp)
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise

    def local_path(self, key: str, sha: str | None = None) -> str:
        return str(self._path(key))

    def list_children(self, prefix: str) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self._path(prefix)) if not e.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def make_dir(self, key: str) -> bool:
        """Create a directory key; False if it already existed (used to claim unique run ids)."""
        path = self._path(key)
        with self._writing(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.mkdir()
                return True
            except FileExistsError:
                return False
