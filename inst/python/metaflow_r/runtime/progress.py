"""What a local run prints: each task's lines, prefixed with its pathspec, and a counter for the steps that
run inside a foreach ("square: 12/40 done, 2 running").

On a terminal the counter is one line redrawn in place, and the start and finish lines of those steps'
tasks are left out (their output, retries and failures are not). Elsewhere (a file, a pipe, a log) every
line is kept, and the counter is a plain line each time another tenth of the step's tasks is done.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

# Task lines a counter stands for, on a terminal.
_ROUTINE = ("Task is starting", "Task finished successfully.")
_REDRAW_SECONDS = 0.1


@dataclass
class _Counts:
    total: int = 0  # tasks of the step known so far (a nested foreach's width grows as its parents end)
    running: int = 0
    done: int = 0
    shown_tenth: int = -1


class RunConsole:
    def __init__(self, counted_steps: set[str], stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self._is_terminal() if live is None else live
        self.counted = counted_steps
        self.counts: dict[str, _Counts] = {}
        self.status_shown = ""  # the counter line on the terminal now
        self.drawn_at = 0.0

    def _is_terminal(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    # -- lines -------------------------------------------------------------------------------------

    def line(self, text: str) -> None:
        self._clear()
        self._write(text + "\n")
        self._redraw(force=True)
        self._write("")

    def task_line(self, pathspec: str, where: str, step: str, kind: str, text: str) -> None:
        """One line of a task, prefixed with its pathspec and what runs it ("pid 1234", "job 4f2a9c1e")."""
        if self.live and step in self.counted and kind == "status" and text.startswith(_ROUTINE):
            return
        self.line(f"[{pathspec} ({where})] {text}")

    # -- counts ------------------------------------------------------------------------------------

    def queued(self, step: str) -> None:
        if step in self.counted:
            self.counts.setdefault(step, _Counts()).total += 1

    def started(self, step: str) -> None:
        if step in self.counted:
            self.counts[step].running += 1
            self._show(step)

    def ended(self, step: str, done: bool) -> None:
        """A task of ``step`` ended: done, or going to be tried again (a retry, a catch)."""
        if step in self.counted:
            counts = self.counts[step]
            counts.running -= 1
            counts.done += done
            self._show(step)

    def close(self) -> None:
        self._clear()
        self._write("")

    def _text(self, step: str) -> str:
        c = self.counts[step]
        return f"{step}: {c.done}/{c.total} done" + (f", {c.running} running" if c.running else "")

    def _show(self, step: str) -> None:
        if self.live:
            self._redraw()
            return
        c = self.counts[step]
        tenth = c.done * 10 // max(c.total, 1)
        if c.done and tenth > c.shown_tenth:
            c.shown_tenth = tenth
            self.line(f"  {self._text(step)}")

    def _redraw(self, force: bool = False) -> None:
        if not self.live or not self.counts:
            return
        now = time.monotonic()
        if not force and now - self.drawn_at < _REDRAW_SECONDS:
            return
        self.drawn_at = now
        text = "  " + " | ".join(self._text(step) for step in self.counts)
        self._write("\r\033[K" + text)
        self.status_shown = text

    def _clear(self) -> None:
        if self.status_shown:
            self._write("\r\033[K")
            self.status_shown = ""

    def _write(self, text: str) -> None:
        """Write and flush. In an R session sys.stdout is R's console (reticulate remaps it): Ctrl-C while R
        prints aborts the write with a RuntimeError, which is the user's interrupt, not a fault of the run."""
        try:
            if text:
                self.stream.write(text)
            self.stream.flush()
        except RuntimeError as exc:
            raise KeyboardInterrupt from exc
