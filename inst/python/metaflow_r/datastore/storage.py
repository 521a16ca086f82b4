"""Byte storage under string keys: the one interface the datastore is written against.

`LocalStorage` keeps keys as files under a directory; `S3Storage` keeps them as objects under an
``s3://bucket/prefix`` root. Writes are atomic in both: a reader sees a whole object or none.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

from metaflow_r.core.errors import DatastoreError

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
    def create(self, key: str, data: bytes) -> bool: ...  # only if the key does not exist yet; False if it does
    def delete(self, key: str) -> None: ...
    def local_path(self, key: str, sha: str | None = None) -> str: ...  # immutable keys: S3 caches downloads
    def list_children(self, prefix: str) -> list[str]: ...


class LocalStorage:
    """Keys are paths below ``root``; a write goes to a temporary file renamed into place."""

    kind = "local"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = str(Path(root).absolute())

    def _path(self, key: str) -> Path:
        return Path(self.root, key)

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

    def _write(self, key: str, fill) -> None:
        """Fill a temporary file beside the target, then rename it into place. A failed write removes its
        temporary file; only a killed process leaves one (hidden: list_children skips dot files)."""
        target = self._path(key)
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
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
            return True
        except FileExistsError:
            return False


class S3Storage:
    """Keys are objects below ``s3://bucket/prefix``; reads of blobs are cached in a local directory."""

    kind = "s3"

    def __init__(self, root: str, client=None, cache_dir: str | None = None) -> None:
        parsed = urlparse(root)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise DatastoreError(
                f"{root!r} is not an S3 location.", [("i", "Set METAFLOW_DATASTORE_SYSROOT_S3 to s3://bucket/prefix.")]
            )
        self.root = root.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client
        # Only immutable, content-addressed blobs are read through the cache, so it is safe to keep it
        # across runs and sessions.
        self.cache_dir = cache_dir or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                "metaflow-r", "s3", self.bucket, self.prefix))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def sha256(self, key: str) -> str | None:
        try:
            return sha256_stream(self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"])
        except self.client.exceptions.NoSuchKey:
            return None

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def create(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def write_file(self, key: str, path: str) -> None:
        self.client.upload_file(path, self.bucket, self._key(key))

    def local_path(self, key: str, sha: str | None = None) -> str:
        """A cached local copy; a download that does not hash to ``sha`` is refused, not cached."""
        target = Path(self.cache_dir, key)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{target}.part-{os.getpid()}"
            self.client.download_file(self.bucket, self._key(key), tmp)
            if sha is not None and sha256_stream(open(tmp, "rb")) != sha:
                os.unlink(tmp)
                raise DatastoreError(f"{self.root}/{key} does not hold what its name says: it is damaged.",
                                     [("i", "Run the step that made it again (resume) to store it anew.")])
            os.replace(tmp, target)
        return str(target)

    def list_children(self, prefix: str) -> list[str]:
        full = self._key(prefix).rstrip("/")
        full = full + "/" if full else ""  # the bucket's root has no "/" prefix
        names: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
            names.update(p["Prefix"][len(full):].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][len(full):] for o in page.get("Contents", []))
        return sorted(n for n in names if n and not n.startswith("."))

    def make_dir(self, key: str) -> bool:
        """S3 has no directories: claim the id with a marker object that must not exist yet."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key) + "/.claimed", Body=b"", IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
