"""Progress of a large transfer to or from S3, so that the seconds or minutes spent moving a big artifact are
never silent: a line when it starts, one every few seconds with how much is done, and one when it ends, on
stderr (a task's log, a Batch job's CloudWatch stream, the R console). Transfers smaller than
METAFLOW_R_PROGRESS_BYTES (100 MB unless set; R's artifact files use the same setting) print nothing.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

DEFAULT_MIN_BYTES = 100e6
EVERY_SECONDS = 5.0


def min_bytes() -> float:
    try:
        return float(os.environ.get("METAFLOW_R_PROGRESS_BYTES") or DEFAULT_MIN_BYTES)
    except ValueError:
        return DEFAULT_MIN_BYTES


def format_bytes(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


class TransferProgress:
    """boto3's transfer Callback (called from its threads with each chunk's size), then ``done()``. ``total``
    may be unknown (a download): the first line then waits until the threshold's worth has moved."""

    def __init__(self, verb: str, what: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.verb, self.what, self.total = verb, what, total
        self.stream = stream or sys.stderr
        self.moved = 0
        self.started = self.last_line = time.monotonic()
        self.shown = False
        self.lock = threading.Lock()
        if total is not None and total >= min_bytes():
            self._say(f"{verb} {what} ({format_bytes(total)})...")

    def __call__(self, amount: int) -> None:
        with self.lock:
            self.moved += amount
            if not self.shown and self.total is None and self.moved >= min_bytes():
                self._say(f"{self.verb} {self.what}...")
            elif self.shown and time.monotonic() - self.last_line >= EVERY_SECONDS:
                of_total = f" of {format_bytes(self.total)}" if self.total else ""
                self._say(f"{self.verb} {self.what}: {format_bytes(self.moved)}{of_total} so far")

    def done(self) -> None:
        if self.shown:
            seconds = time.monotonic() - self.started
            self._say(f"{self.verb} {self.what} took {seconds:.1f} s ({format_bytes(self.moved)})")

    def _say(self, line: str) -> None:
        self.shown = True
        self.last_line = time.monotonic()
        print(line, file=self.stream, flush=True)
