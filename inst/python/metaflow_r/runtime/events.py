"""What a launcher tells the attempt engine of a task it started, and what every launcher provides.

Three launchers start attempts: a fork of the run's warm R (forks.py, local runs), a process of its own
(process.py, inside a Batch job), and a Batch job (aws/batch/launcher.py, ``run --with batch``). Each reports
the same events: that the task began running in R, its output line by line and stream by stream, and its
exit status. Single-threaded by design: the caller polls, since R holds Python's lock while it runs R code
and a background thread would barely move.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Union

from metaflow_r.core.protocol import TASK_START_MARKER


@dataclass
class Launched:
    """What runs the attempt, known once the launcher heard back (a fork's pid): for a launch that said None."""

    attempt: Any
    where: str


@dataclass
class Started:
    attempt: Any


@dataclass
class Output:
    attempt: Any
    stream: str
    line: bytes


@dataclass
class Exited:
    attempt: Any
    code: int
    why: str | None = None  # how it ended, when the exit status alone does not say (a Batch job's reason)


Event = Union[Launched, Started, Output, Exited]


def task_line(attempt: Any, stream: str, line: bytes) -> Event:
    if stream == "stdout" and line == TASK_START_MARKER:
        return Started(attempt)
    return Output(attempt, stream, line)


class AttemptLauncher(Protocol):
    # What the run's reaper runs, with the ids of the jobs it was told of, if the runtime dies (None: the
    # launcher's processes are in process groups the reaper kills itself).
    cleanup_command: list[str] | None

    # Starts the attempt; returns what runs it, for the console ("pid 1234"), or None when a Launched event
    # will say it. ``context_file`` is None for a launcher whose attempts prepare their own context (a Batch
    # job of a local run).
    def launch(self, attempt: Any, context_file: str | None) -> str | None: ...
    def poll(self, timeout: float) -> list[Event]: ...
    def kill(self, attempt: Any) -> None: ...
    def close(self) -> None: ...
