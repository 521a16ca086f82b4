"""The S3 backend of the datastore: keys are objects below ``s3://bucket/prefix``.

Reads of content-addressed blobs go through a local cache (they never change). Every request is made
through the backend's one AWS session, and any failure reads as the backend's AWS errors do, naming the
object (aws/errors.py).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from metaflow_r.aws.errors import EXISTS_CODES, calling, error_code, is_missing
from metaflow_r.aws.session import client as aws_client
from metaflow_r.aws.session import s3_transfer_config
from metaflow_r.core.errors import DatastoreError
from metaflow_r.datastore.layout import split_s3_url
from metaflow_r.datastore.storage import sha256_stream
from metaflow_r.datastore.transfer_progress import TransferProgress


class S3Storage:
    kind = "s3"

    def __init__(self, root: str, client: Any = None, cache_dir: str | None = None) -> None:
        self.bucket, self.prefix = split_s3_url(root)
        self.root = root.rstrip("/")
        self.client = client if client is not None else aws_client("s3")
        # Only immutable, content-addressed blobs are read through the cache, so it is safe to keep it
        # across runs and sessions.
        self.cache_dir = cache_dir or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                               "metaflow-r", "s3", self.bucket, self.prefix))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _head(self, key: str) -> dict[str, Any] | None:
        with calling(f"reading {self.url(key)}"):
            try:
                return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except Exception as exc:  # noqa: BLE001 - only "not found" is an answer; the rest is translated
                if is_missing(exc):
                    return None
                raise

    def _get(self, key: str) -> Any:
        """The object's streaming body, or None when there is no such object."""
        with calling(f"reading {self.url(key)}"):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            except Exception as exc:  # noqa: BLE001
                if is_missing(exc):
                    return None
                raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int | None:
        head = self._head(key)
        return None if head is None else head["ContentLength"]

    def sha256(self, key: str) -> str | None:
        body = self._get(key)
        if body is None:
            return None
        with calling(f"reading {self.url(key)}"):
            return sha256_stream(body)

    def read_bytes(self, key: str) -> bytes | None:
        body = self._get(key)
        if body is None:
            return None
        with calling(f"reading {self.url(key)}"):
            return body.read()

    def create(self, key: str, data: bytes) -> bool:
        """A conditional PUT (IfNoneMatch): of two writers exactly one wins."""
        with calling(f"writing {self.url(key)}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
                return True
            except Exception as exc:  # noqa: BLE001
                if error_code(exc) in EXISTS_CODES:
                    return False
                raise

    def delete(self, key: str) -> None:
        with calling(f"deleting {self.url(key)}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        with calling(f"writing {self.url(key)}"):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def write_file(self, key: str, path: str) -> None:
        progress = TransferProgress("Uploading", self.url(key), os.path.getsize(path))
        with calling(f"writing {self.url(key)}"):
            self.client.upload_file(path, self.bucket, self._key(key), Config=s3_transfer_config(), Callback=progress)
        progress.done()

    def move_file(self, key: str, path: str) -> None:
        self.write_file(key, path)

    def local_path(self, key: str, sha: str | None = None) -> str:
        """A cached local copy; a download that does not hash to ``sha`` is refused, not cached."""
        target = Path(self.cache_dir, key)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{target}.part-{os.getpid()}"
            progress = TransferProgress("Downloading", self.url(key))
            with calling(f"reading {self.url(key)}"):
                self.client.download_file(self.bucket, self._key(key), tmp, Config=s3_transfer_config(),
                                          Callback=progress)
            progress.done()
            if sha is not None and sha256_stream(open(tmp, "rb")) != sha:
                os.unlink(tmp)
                raise DatastoreError(f"{self.url(key)} does not hold what its name says: it is damaged.",
                                     [("i", "Run the step that made it again (resume) to store it anew.")])
            os.replace(tmp, target)
        return str(target)

    def list_children(self, prefix: str) -> list[str]:
        full = self._key(prefix).rstrip("/")
        full = full + "/" if full else ""  # the bucket's root has no "/" prefix
        names: set[str] = set()
        with calling(f"listing {self.url(prefix)}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                names.update(p["Prefix"][len(full):].rstrip("/") for p in page.get("CommonPrefixes", []))
                names.update(o["Key"][len(full):] for o in page.get("Contents", []))
        return sorted(n for n in names if n and not n.startswith("."))

    def make_dir(self, key: str) -> bool:
        """S3 has no directories: claim the key with a marker object that must not exist yet."""
        return self.create(f"{key}/.claimed", b"")
