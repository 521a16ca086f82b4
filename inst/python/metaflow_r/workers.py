"""Warm R workers for the local runtime.

Each worker is ``Rscript flow.R worker``: an R process that has loaded the package and sourced the flow
once. The runtime hands it a task by writing the task's context file path to its stdin; the worker forks,
the child runs the task, and the worker prints ``WORKER_EXIT_MARKER <status>`` on stdout after all the
child's output. A task that crashes takes only its forked child; a worker that dies (or is killed for a
timeout) is simply replaced by a new one.
"""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any

# Must match worker_exit_marker in R/worker.R.
WORKER_EXIT_MARKER = b"\x1emetaflow-task-exit "
# R does not give back all the memory a forked job leaves behind in its parent, so a worker grows a
# little with every task; replacing it now and then keeps a run's memory flat in the foreach width.
TASKS_PER_WORKER = 200


@dataclass
class Worker:
    process: subprocess.Popen
    task: Any = None  # the runtime's attempt running on it, if any
    tasks_run: int = 0
    retiring: bool = False
    partial: dict[str, bytes] = field(default_factory=lambda: {"stdout": b"", "stderr": b""})

    @property
    def pid(self) -> int:
        return self.process.pid

    def assign(self, task: Any, context_file: str) -> bool:
        """Hand the worker a task; False if it can no longer take one."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(context_file.encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        self.task = task
        return True

    def kill(self) -> None:
        """Stop the worker and any task it forked (they share its process group)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finished_task(self) -> None:
        """Count a finished task; a worker that has run its share is told to quit."""
        self.task = None
        self.tasks_run += 1
        if self.tasks_run >= TASKS_PER_WORKER:
            self.retiring = True
            self.close()

    def close(self) -> None:
        """Let an idle worker finish: end of input makes it quit."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass


def start_worker(rscript: str, script: str, launch_dir: str, env: dict[str, str]) -> Worker:
    process = subprocess.Popen([rscript, script, "worker"], cwd=launch_dir, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    for pipe in (process.stdout, process.stderr):
        os.set_blocking(pipe.fileno(), False)
    return Worker(process)
