"""The flow datastore: content-addressed artifacts and run/task records on top of a Storage.

Its keys are layout.py's: artifacts by content (immutable RDS files, R/artifact.R), a run's record and its
end, and each task attempt's ``DONE.json`` (artifacts by name -> sha, foreach stack, parents, outcome;
written last, atomically) beside its stdout and stderr logs. An attempt without ``DONE.json`` (crashed,
killed, still running) is invisible to readers.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from metaflow_r.core import processes
from metaflow_r.core.config import setting
from metaflow_r.core.errors import ConfigurationError, DamagedRecord, DatastoreError, UsageError
from metaflow_r.datastore.layout import (
    ATTEMPT_PREFIX,
    BLOB_KEY,
    DATASTORE_DIR,
    DEPLOYMENT_KEY,
    EXECUTION_STATUS_KEY,
    RESUME_CLAIM_KEY,
    RUN_KEY,
    RUN_REAPER_KEY,
    RUN_RECORD_KEY,
    RUN_STATUS_KEY,
)
from metaflow_r.datastore.storage import LocalStorage, Storage, sha256_stream


def find_local_root(start: str | os.PathLike | None = None) -> str:
    """Where the local datastore lives, as Metaflow users expect.

    ``METAFLOW_DATASTORE_SYSROOT_LOCAL`` names the directory holding ``.metaflow``; otherwise the nearest
    ``.metaflow`` in the start directory or a parent; otherwise a new one in the start directory.
    """
    sysroot = os.environ.get("METAFLOW_DATASTORE_SYSROOT_LOCAL")
    if sysroot:
        return str(Path(sysroot, DATASTORE_DIR).absolute())
    here = Path(start or os.getcwd()).absolute()
    for directory in (here, *here.parents):
        candidate = directory / DATASTORE_DIR
        if candidate.is_dir():
            return str(candidate)
    return str(here / DATASTORE_DIR)


def storage_for(kind: str = "local", root: str | None = None) -> Storage:
    if kind == "local":
        return LocalStorage(root or find_local_root())
    if kind == "s3":
        from metaflow_r.datastore.s3 import S3Storage  # a local run never loads AWS code

        return S3Storage(s3_root(root))
    raise DatastoreError(f"Unknown datastore {kind!r}.", [("i", "Use \"local\" or \"s3\".")])


def s3_root(root: str | None = None) -> str:
    """The S3 datastore's root: ``root``, else METAFLOW_DATASTORE_SYSROOT_S3."""
    root = root or setting("DATASTORE_SYSROOT_S3")
    if not root:
        raise ConfigurationError("No S3 datastore is configured.",
                                 [("i", "Set METAFLOW_DATASTORE_SYSROOT_S3 to s3://bucket/prefix.")])
    return root


# How a run whose runtime provably ended (processes.py) without recording its end reads: whatever killed
# the runtime took its reaper too (an OOM or cgroup kill, a power loss), or the end could not be stored.
RUNTIME_GONE = ("interrupted: the process running it (pid {pid} on {host}) ended without recording how the run "
                "ended (killed together with its reaper, e.g. out of memory or a power loss; or its end could not "
                "be stored)")

# A stored blob whose name is met again is re-hashed up to this size (larger ones: their size is compared).
VERIFY_BYTES = 8 << 20


def sha256_file(path: str) -> str:
    return sha256_stream(open(path, "rb"))


class FlowDatastore:
    """Everything stored for one flow."""

    def __init__(self, storage: Storage, flow: str) -> None:
        self.storage = storage
        self.flow = flow
        self.damaged: list[str] = []  # damaged records skipped so far, each as "where: what"

    # -- artifacts -----------------------------------------------------------------------------

    def blob_key(self, sha: str) -> str:
        return BLOB_KEY.format(flow=self.flow, sha2=sha[:2], sha=sha)

    def save_blob_file(self, path: str, take: bool = False) -> str:
        """Store a file by content; returns its sha. A blob stored before under that sha is kept when it
        holds what its name says (its size, and a small one's content, are checked) and healed otherwise.
        ``take``: the caller gives the file up, so a local datastore may move it rather than copy it."""
        sha = sha256_file(path)
        key = self.blob_key(sha)
        stored = self.storage.size(key)
        size = os.path.getsize(path)
        if stored != size or (size <= VERIFY_BYTES and self.storage.sha256(key) != sha):
            (self.storage.move_file if take else self.storage.write_file)(key, path)
        return sha

    def blob_intact(self, sha: str) -> bool:
        """Whether the stored blob hashes to its name (reads it whole)."""
        return self.storage.sha256(self.blob_key(sha)) == sha

    def blob_path(self, sha: str) -> str:
        """A local file holding the blob (downloaded and checked first for S3)."""
        return self.storage.local_path(self.blob_key(sha), sha)

    # -- runs ----------------------------------------------------------------------------------

    def new_run(self, tags: list[str], parameters: dict[str, Any], user: str, run_id: str | None = None,
                extra: dict[str, Any] | None = None) -> str:
        """Claim a fresh run id (microseconds since the epoch, unique even for concurrent runs)."""
        while True:
            candidate = run_id or str(time.time_ns() // 1000)
            if self.storage.make_dir(RUN_KEY.format(flow=self.flow, run_id=candidate)):
                break
            if run_id:
                raise DatastoreError(f"Run {self.flow}/{run_id} already exists.",
                                     [("i", "Choose another run id, or let one be generated.")])
        record = {"flow": self.flow, "run_id": candidate, "user": user, "tags": sorted(set(tags)),
                  "parameters": parameters, "created_at": time.time(), **(extra or {})}
        self._write_json(RUN_RECORD_KEY.format(flow=self.flow, run_id=candidate), record)
        return candidate

    def run_record(self, run_id: str) -> dict[str, Any] | None:
        return self._read_json(RUN_RECORD_KEY.format(flow=self.flow, run_id=run_id))

    def finish_run(self, run_id: str, successful: bool, reason: str | None = None) -> bool:
        """Mark a run ended, once: the first outcome written stands (a run stopped or failed never turns
        successful because a task still going finishes later). ``reason`` says why a run did not succeed.
        Returns whether this call's outcome was recorded."""
        status: dict[str, Any] = {"successful": successful, "finished_at": time.time()}
        if reason:
            status["reason"] = reason
        return self.storage.create(RUN_STATUS_KEY.format(flow=self.flow, run_id=run_id),
                                   json.dumps(status, indent=1, sort_keys=True).encode())

    def run_status(self, run_id: str) -> dict[str, Any] | None:
        """How the run ended, as its tasks recorded it, else as its state machine did; None while it runs.
        A local run whose runtime is provably gone has ended even if it could not record so: it failed, and
        resume continues it."""
        status = self._read_json(RUN_STATUS_KEY.format(flow=self.flow, run_id=run_id)) \
            or self._read_json(EXECUTION_STATUS_KEY.format(flow=self.flow, run_id=run_id))
        if status is None:
            return self._abandoned(run_id)
        if isinstance(status.get("finished_at"), str):
            # Written by the state machine itself ($$.State.EnteredTime, ISO 8601), not by a task.
            try:
                status["finished_at"] = datetime.fromisoformat(status["finished_at"].replace("Z", "+00:00")).timestamp()
            except ValueError:
                status["finished_at"] = None
        return status

    def record_reaper(self, run_id: str, reaper: dict[str, Any]) -> None:
        """Name the run's reaper: while it lives, the run's end is still to be recorded by it."""
        self._write_json(RUN_REAPER_KEY.format(flow=self.flow, run_id=run_id), reaper)

    def _abandoned(self, run_id: str) -> dict[str, Any] | None:
        record = self.run_record(run_id) or {}
        runtime = record.get("runtime")
        reaper = self._read_json(RUN_REAPER_KEY.format(flow=self.flow, run_id=run_id))
        owners = [runtime, *([reaper] if reaper is not None else [])]
        if not all(isinstance(owner, dict) and processes.gone(owner) for owner in owners):
            return None
        tasks = [r for step in self.step_names(run_id) for task_id in self.task_ids(run_id, step)
                 if (r := self.readable(self.task_record, run_id, step, task_id))]
        # When it ended is unknown: its last committed attempt is the last sign of life. A run whose end
        # step succeeded had nothing left to do: it succeeded.
        status = {"successful": any(r["step"] == "end" and r["successful"] for r in tasks),
                  "finished_at": max((r["finished_at"] for r in tasks), default=record.get("created_at"))}
        if not status["successful"]:
            status["reason"] = RUNTIME_GONE.format(pid=runtime.get("pid"), host=runtime.get("host"))
        return status

    def run_ids(self) -> list[str]:
        return [name for name in self.storage.list_children(self.flow) if name != "data" and not name.startswith("_")]

    def step_names(self, run_id: str) -> list[str]:
        return [n for n in self.storage.list_children(f"{self.flow}/{run_id}") if not n.startswith("_")]

    def task_ids(self, run_id: str, step: str) -> list[str]:
        return self.storage.list_children(f"{self.flow}/{run_id}/{step}")

    # -- task attempts -------------------------------------------------------------------------

    def attempt_prefix(self, run_id: str, step: str, task_id: str, attempt: int) -> str:
        return ATTEMPT_PREFIX.format(flow=self.flow, run_id=run_id, step=step, task_id=task_id, attempt=attempt)

    def write_attempt(self, run_id: str, step: str, task_id: str, attempt: int, record: dict[str, Any]) -> None:
        """Commit an attempt: its record becomes visible to readers in one atomic write."""
        self._write_json(f"{self.attempt_prefix(run_id, step, task_id, attempt)}/DONE.json", record)

    def write_log(self, run_id: str, step: str, task_id: str, attempt: int, stream: str, data: bytes) -> None:
        self.storage.write_bytes(f"{self.attempt_prefix(run_id, step, task_id, attempt)}/{stream}.log", data)

    def write_log_file(self, run_id: str, step: str, task_id: str, attempt: int, stream: str, path: str) -> None:
        self.storage.write_file(f"{self.attempt_prefix(run_id, step, task_id, attempt)}/{stream}.log", path)

    def read_log(self, run_id: str, step: str, task_id: str, attempt: int, stream: str) -> str:
        data = self.storage.read_bytes(f"{self.attempt_prefix(run_id, step, task_id, attempt)}/{stream}.log")
        return data.decode("utf-8", errors="replace") if data else ""

    def attempts(self, run_id: str, step: str, task_id: str) -> Iterator[dict[str, Any]]:
        """Committed attempt records, newest first; a damaged one is skipped and noted in ``damaged``."""
        names = self.storage.list_children(f"{self.flow}/{run_id}/{step}/{task_id}")
        for attempt in sorted((int(n) for n in names if n.isdigit()), reverse=True):
            record = self.readable(self.attempt_record, run_id, step, task_id, attempt)
            if record is not None:
                yield record

    def attempt_record(self, run_id: str, step: str, task_id: str, attempt: int) -> dict[str, Any] | None:
        """One attempt's committed record, or None if it has none (yet)."""
        return self._read_json(f"{self.attempt_prefix(run_id, step, task_id, attempt)}/DONE.json")

    def task_record(self, run_id: str, step: str, task_id: str) -> dict[str, Any] | None:
        """The latest committed attempt of a task, or None if none committed."""
        return next(self.attempts(run_id, step, task_id), None)

    def successful_task(self, pathspec: str) -> dict[str, Any]:
        """The committed, successful record of ``run/step/task``; DatastoreError otherwise."""
        run_id, step, task_id = pathspec.split("/")
        record = self.task_record(run_id, step, task_id)
        if record is None or not record.get("successful"):
            raise DatastoreError(f"Task {self.flow}/{pathspec} has no successful attempt.",
                                 [("i", "Run the flow (or resume it) until that task succeeds.")])
        return record

    def deployment(self) -> dict[str, Any] | None:
        """The flow's deployment record: production token, owner and namespace (None: not deployed)."""
        return self._read_json(DEPLOYMENT_KEY.format(flow=self.flow))

    def write_deployment(self, record: dict[str, Any]) -> None:
        self._write_json(DEPLOYMENT_KEY.format(flow=self.flow), record)

    # -- resume --------------------------------------------------------------------------------

    def check_not_being_resumed(self, origin_run_id: str, claimant: str | None = None) -> None:
        """Refuse a second resume of a run while another one (not ``claimant``) is still running."""
        holder = self.readable(self._read_json, self._resume_claim(origin_run_id)) or {}
        other = holder.get("run_id")
        if other and other != claimant and self.run_record(other) is not None and self.run_status(other) is None:
            raise UsageError(f"Run {self.flow}/{origin_run_id} is being resumed already, by run {other}.",
                             [("i", f"Wait for run {other} to end; then resume that one, or this one again.")])

    def claim_resume(self, origin_run_id: str, claimant: str) -> None:
        """Make ``claimant`` the one run resuming ``origin_run_id``. A claim whose run has ended (or never
        began) is stale and taken over."""
        record = json.dumps({"run_id": claimant, "claimed_at": time.time()}).encode()
        if not self.storage.create(self._resume_claim(origin_run_id), record):
            self.check_not_being_resumed(origin_run_id, claimant)
            self.storage.write_bytes(self._resume_claim(origin_run_id), record)

    def release_resume(self, origin_run_id: str, claimant: str) -> None:
        key = self._resume_claim(origin_run_id)
        if (self.readable(self._read_json, key) or {}).get("run_id") == claimant:
            self.storage.delete(key)

    def _resume_claim(self, origin_run_id: str) -> str:
        return RESUME_CLAIM_KEY.format(flow=self.flow, run_id=origin_run_id)

    # -- helpers -------------------------------------------------------------------------------

    def readable(self, read, *args: Any) -> Any:
        """``read(*args)``, or None when it meets a damaged record, which is noted in ``damaged``."""
        try:
            return read(*args)
        except DamagedRecord as exc:
            self.damaged.append(exc.message)
            return None

    def _write_json(self, key: str, value: Any) -> None:
        self.storage.write_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode())

    def _read_json(self, key: str) -> Any:
        data = self.storage.read_bytes(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:  # UnicodeDecodeError is one
            raise DamagedRecord(f"{self.storage.root}/{key} is damaged ({type(exc).__name__}: {exc})",
                                [("i", "Move it aside; the rest of the datastore stays readable.")]) from None
