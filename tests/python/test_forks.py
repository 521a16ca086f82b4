"""runtime/forks.py against R's answers that a real run rarely gives: the R cannot fork (out of memory or
processes), or the worker R's script fails as it is sourced. The R runs, forks and kills real tasks in
test_runtime.py, test_termination.py and tests/testthat/test-task-worker.R; here a few lines of Python
answer on the task channel in its place, as R would."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from metaflow_r.runtime.events import Exited, Output
from metaflow_r.runtime.forks import ForkLauncher

# A worker R that cannot fork: R's parallel says "unable to fork, possible reason: ..." for every request.
CANNOT_FORK = """
import os, sys
requests, replies = (int(fd) for fd in os.environ["METAFLOW_R_TASK_CHANNEL"].split(","))
for line in os.fdopen(requests):
    token = line.split("\\t")[0]
    os.write(replies, f"{token} unforked unable to fork, possible reason: Cannot allocate memory\\n".encode())
"""

# A worker R whose script fails as it is sourced, before it serves any request.
FAILS_TO_SOURCE = """
import sys
print("Error in library(data.table): there is no package called 'data.table'", file=sys.stderr)
sys.exit(1)
"""


@dataclass(frozen=True)
class StandInSpec:
    step: str = "start"


@dataclass(eq=False)
class StandInAttempt:
    workdir: str
    spec: StandInSpec = StandInSpec()


def ended(launcher: ForkLauncher, attempt: StandInAttempt) -> tuple[list[bytes], int]:
    """The attempt's stderr lines and exit status, once it has ended."""
    lines: list[bytes] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for event in launcher.poll(0.1):
            if isinstance(event, Output) and event.attempt is attempt:
                lines.append(event.line)
            if isinstance(event, Exited) and event.attempt is attempt:
                return lines, event.code
    raise AssertionError("the attempt never ended")


def launcher_for(tmp_path: Path, worker: str) -> ForkLauncher:
    script = tmp_path / "worker.py"
    script.write_text(worker)
    return ForkLauncher(sys.executable, str(script), str(tmp_path), {"PATH": "/usr/bin:/bin"})


def test_a_task_the_r_cannot_fork_fails_saying_why_and_the_next_is_asked_for(tmp_path):
    launcher = launcher_for(tmp_path, CANNOT_FORK)
    try:
        for n in (1, 2):  # the R serving the run goes on after a fork it could not make
            attempt = StandInAttempt(str(tmp_path / f"attempt-{n}"))
            Path(attempt.workdir).mkdir()
            assert launcher.launch(attempt, str(tmp_path / "context.json")) is None  # a Launched event says
            lines, code = ended(launcher, attempt)
            assert code == 1
            assert lines == [b"The task could not be started: unable to fork, possible reason: Cannot allocate memory"]
    finally:
        launcher.close()


def test_a_worker_r_whose_script_fails_fails_the_attempt_with_what_it_printed(tmp_path):
    launcher = launcher_for(tmp_path, FAILS_TO_SOURCE)
    attempt = StandInAttempt(str(tmp_path / "attempt"))
    Path(attempt.workdir).mkdir()
    try:
        launcher.launch(attempt, str(tmp_path / "context.json"))
        lines, code = ended(launcher, attempt)
    finally:
        launcher.close()
    assert code == 1
    assert b"there is no package called 'data.table'" in b"\n".join(lines)
