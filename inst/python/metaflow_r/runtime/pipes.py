"""Reading many processes' output at once, line by line, and ending processes with what they started."""
from __future__ import annotations

import itertools
import os
import selectors
import signal
import subprocess
from typing import Any

from metaflow_r.core.processes import kill_marked
from metaflow_r.core.protocol import TASK_PROCESS_MARK

STREAMS = ("stdout", "stderr")
# A line longer than this is passed on in pieces, so memory and time stay linear in the output even for
# a progress bar that redraws with "\r" and never ends its line.
MAX_LINE = 64 * 1024
# Reads of one pipe per poll, so a task that prints without pause cannot starve the others.
_READS_PER_POLL = 16


class LineBuffer:
    """Splits a byte stream into lines in time linear in its length."""

    def __init__(self) -> None:
        self.partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self.partial += data[start:end]
            lines.append(bytes(self.partial))
            self.partial.clear()
            start = end + 1
        self.partial += data[start:]
        if len(self.partial) > MAX_LINE:
            cut = len(self.partial) - len(self.partial) % MAX_LINE
            lines.extend(bytes(self.partial[i:i + MAX_LINE]) for i in range(0, cut, MAX_LINE))
            del self.partial[:cut]
        return lines

    def rest(self) -> list[bytes]:
        """What is left of an unterminated last line."""
        rest = [bytes(self.partial)] if self.partial else []
        self.partial.clear()
        return rest


class Pipes:
    """Non-blocking reads of many processes' stdout and stderr through one selector."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[tuple[int, str], LineBuffer] = {}

    def watch(self, process: subprocess.Popen, owner: Any) -> None:
        for stream in STREAMS:
            pipe = getattr(process, stream)
            os.set_blocking(pipe.fileno(), False)
            self.selector.register(pipe, selectors.EVENT_READ, (owner, stream))
            self.buffers[(process.pid, stream)] = LineBuffer()

    def ready(self, timeout: float) -> list[tuple[Any, str]]:
        return [key.data for key, _ in self.selector.select(timeout)]

    def read(self, process: subprocess.Popen, stream: str, drain: bool = False) -> list[bytes]:
        """The complete lines now readable on one pipe; once it ends, its unterminated last line too. With
        ``drain`` (its writer has ended), all it holds, and the pipe is closed even if another process
        still holds it open."""
        pipe = getattr(process, stream)
        if pipe.closed:
            return []
        buffer = self.buffers[(process.pid, stream)]
        lines: list[bytes] = []
        for _ in itertools.count() if drain else range(_READS_PER_POLL):
            try:
                data = os.read(pipe.fileno(), 65536)
            except BlockingIOError:
                break
            if not data:
                return lines + self._close(process, stream)
            lines += buffer.feed(data)
        return lines + self._close(process, stream) if drain else lines

    def _close(self, process: subprocess.Popen, stream: str) -> list[bytes]:
        pipe = getattr(process, stream)
        self.selector.unregister(pipe)
        pipe.close()
        return self.buffers.pop((process.pid, stream)).rest()

    def rest(self, process: subprocess.Popen, stream: str) -> list[bytes]:
        buffer = self.buffers.get((process.pid, stream))
        return buffer.rest() if buffer else []

    def close(self) -> None:
        self.selector.close()


def kill_group(process: subprocess.Popen) -> None:
    """The process and everything it started: each launched process leads a process group of its own."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_task_processes(attempt: Any) -> None:
    """What the attempt's task started outside its process group (``callr::r_bg()``, ``processx``, ``setsid``):
    such processes carry the task's mark (R/task.R), and end with it."""
    kill_marked(TASK_PROCESS_MARK, attempt.workdir)


def close_pipes(process: subprocess.Popen) -> None:
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()
