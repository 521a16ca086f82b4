"""Writes that fail for want of room: a full disk (ENOSPC, EDQUOT) or the file size limit (EFBIG, SIGXFSZ).

Python says "[Errno 28] No space left on device", often without a path; a task's R says "error writing to
connection"; a task killed by SIGXFSZ says nothing at all. Each is told once, as one error of the catalogue
(DiskFull, FileTooLarge) naming what was being written, where, and how to make room:

    the datastore's writes (datastore/storage.py) and the run's scratch area's (runtime/) go through
    ``writing()``; the task's own R tells its writes with the same classes and words (R/artifact-write.R);
    a task that ended without telling (SIGXFSZ kills before R can speak) is diagnosed from what it left
    in its directory, by the attempt engine (``diagnose()``).
"""
from __future__ import annotations

import errno
import os
import resource
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from metaflow_r.core.errors import DiskFull, FileTooLarge

# Below this much free space, a write that failed without saying why failed for want of room: a failed
# write leaves less than one buffer free, and R's and Python's buffers are far smaller than this.
NEARLY_FULL_BYTES = 1 << 20
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})
THEN = "then resume the run"
AGAIN = "then start the run again"  # for what failed before the run had begun: there is nothing to resume


@dataclass(frozen=True)
class Area:
    """Where a local run writes, and the setting that moves it elsewhere."""

    name: str
    setting: str


DATASTORE = Area("the datastore", "METAFLOW_DATASTORE_SYSROOT_LOCAL")
SCRATCH = Area("the run's scratch area", "TMPDIR")
AREAS = {area.name: area for area in (DATASTORE, SCRATCH)}


def file_size_limit() -> int | None:
    """This process's file size limit in bytes (``ulimit -f``; the tasks it starts inherit it), or None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def disk_full(what: str, path: str, area: Area, then: str = THEN) -> DiskFull:
    return DiskFull(f"The disk is full: {what} could not be written to {path}.",
                    [("i", f"Free some space on the disk holding {area.name}, or point {area.setting} at a "
                           f"directory on a disk with room; {then}.")],
                    data={"what": what, "path": path, "area": area.name})


def too_large(what: str, path: str, limit: int | None, then: str = THEN) -> FileTooLarge:
    size = f" of {limit:,} bytes" if limit else ""
    return FileTooLarge(f"{what[:1].upper()}{what[1:]} could not be written to {path}: it exceeds the file size "
                        f"limit (ulimit -f){size}.",
                        [("i", "Raise the limit (ulimit -f unlimited, in the shell that starts the run) or store "
                               f"the data in smaller artifacts; {then}.")],
                        data={"what": what, "path": path, "limit": limit})


def failed_write(exc: OSError, what: str, path: str, area: Area) -> DiskFull | FileTooLarge | None:
    """The error ``exc`` is, if a full disk or the file size limit caused it."""
    if exc.errno in NO_ROOM:
        return disk_full(what, path, area)
    if exc.errno == errno.EFBIG:
        return too_large(what, path, file_size_limit())
    return None


@contextmanager
def writing(what: str, path: str, area: Area) -> Iterator[None]:
    """Writes to ``path`` (a file, or a directory of them) that fail for want of room raise one error saying so."""
    try:
        yield
    except OSError as exc:
        failure = failed_write(exc, what, path, area)
        if failure is None:
            raise
        raise failure from None


def about(failure: DiskFull | FileTooLarge, what: str | None = None, then: str = THEN) -> DiskFull | FileTooLarge:
    """The same failure, naming what the caller was writing (an artifact of a step, not a blob's key), and
    what to do once there is room."""
    what = what or failure.data["what"]
    if isinstance(failure, DiskFull):
        return disk_full(what, failure.data["path"], AREAS[failure.data["area"]], then)
    return too_large(what, failure.data["path"], failure.data["limit"], then)


def diagnose(directory: str, what: str) -> DiskFull | FileTooLarge | None:
    """Why a task that left no word of its own failed, if a full disk or the file size limit did: a file of
    its ``directory`` (in the run's scratch area) at the limit, or that disk (nearly) full."""
    limit = file_size_limit()
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
        stats = os.statvfs(directory)
    except OSError:
        return None
    for entry in entries:
        if limit is not None and entry.is_file() and entry.stat().st_size >= limit:
            kind = "an artifact" if entry.name.startswith("artifact-") else "a file"
            return too_large(f"{kind} of {what}", entry.path, limit)
    free = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail  # root may use the reserved blocks
    if free * stats.f_frsize < NEARLY_FULL_BYTES:
        return disk_full(f"the files of {what}", directory, SCRATCH)
    return None
