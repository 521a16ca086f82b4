"""Attempts forked from warm workers (local runs).

A warm worker is ``Rscript flow.R worker``: an R process that loaded the package and sourced the flow
once. It is handed a task by the path of the task's context file on its stdin; it forks, the child runs
the task, and the worker prints the protocol's exit marker, its own secret and the child's status on stdout after all
the child's output. A task that crashes takes only its child; a worker that dies (or is killed for a
timeout) is replaced by a new one.
"""
from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

from metaflow_r.core.protocol import WORKER_EXIT_MARKER, WORKER_NONCE_VARIABLE
from metaflow_r.runtime.events import Event, Exited, Output, task_line
from metaflow_r.runtime.pipes import Pipes, close_pipes, kill_group, kill_leftovers, kill_task_processes

# R does not give back all the memory a forked job leaves behind in its parent, so a worker grows a
# little with every task; replacing it now and then keeps a run's memory flat in the foreach width.
TASKS_PER_WORKER = 200


@dataclass(eq=False)
class Worker:
    process: subprocess.Popen
    attempt: Any = None  # the attempt running on it, if any
    tasks_run: int = 0
    retiring: bool = False
    own_output: bytearray = field(default_factory=bytearray)  # printed while no task ran, e.g. the script failing
    # The exit marker and this worker's secret (R/task-worker.R hides it from the tasks it forks).
    exit_marker: bytes = WORKER_EXIT_MARKER

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def idle(self) -> bool:
        return self.attempt is None and not self.retiring and self.process.poll() is None

    def assign(self, attempt: Any, context_file: str) -> bool:
        """Hand the worker a task; False if it can no longer take one."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(context_file.encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        self.attempt = attempt
        return True

    def release(self) -> None:
        """Count a finished task; a worker that has run its share is told to quit."""
        self.attempt = None
        self.tasks_run += 1
        if self.tasks_run >= TASKS_PER_WORKER:
            self.retiring = True
            self.end_input()

    def end_input(self) -> None:
        """End of input makes an idle worker quit."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass


class WorkerLauncher:
    """Attempts run in forks of warm workers (``Rscript flow.R worker``), one attempt per worker at a time."""

    cleanup_command = None  # the reaper kills the workers' process groups itself

    def __init__(self, rscript: str, script: str, launch_dir: str, env: dict[str, str],
                 watch: Callable[[str, int], None] | None = None) -> None:
        """``watch("started" | "ended", pid)`` hears of each worker's process group (see reaper.py)."""
        self.command = [rscript, script, "worker"]
        self.launch_dir = launch_dir
        self.env = env
        self.watch = watch or (lambda event, pid: None)
        self.pipes = Pipes()
        self.workers: dict[int, Worker] = {}

    def launch(self, attempt: Any, context_file: str | None) -> str:
        assert context_file is not None
        while True:
            worker = next((w for w in self.workers.values() if w.idle), None) or self._start_worker()
            if worker.assign(attempt, context_file):
                return f"pid {worker.pid}"
            kill_group(worker.process)  # it died while idle: take another

    def _start_worker(self) -> Worker:
        nonce = secrets.token_hex(8)
        process = subprocess.Popen(self.command, cwd=self.launch_dir, env={**self.env, WORKER_NONCE_VARIABLE: nonce},
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        worker = Worker(process, exit_marker=WORKER_EXIT_MARKER + nonce.encode() + b" ")
        self.workers[worker.pid] = worker
        self.pipes.watch(process, worker)
        self.watch("started", worker.pid)
        return worker

    def poll(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        for worker, stream in self.pipes.ready(timeout):
            for line in self.pipes.read(worker.process, stream):
                events += self._line(worker, stream, line)
            if worker.process.stdout.closed and worker.process.stderr.closed:
                events += self._worker_ended(worker)
        return events

    def _line(self, worker: Worker, stream: str, line: bytes) -> list[Event]:
        # The marker follows the task's output directly: after a last line with no newline, mid-line.
        at = line.find(worker.exit_marker) if stream == "stdout" else -1
        if at < 0:
            if worker.attempt is None:
                worker.own_output += line + b"\n"
                return []
            return [task_line(worker.attempt, stream, line)]
        events: list[Event] = []
        attempt = worker.attempt
        if attempt is None:
            return events
        if at > 0:
            events.append(Output(attempt, stream, line[:at]))
        # The child has exited, so all it wrote to stderr is in the pipe already: take it before moving on.
        events += [Output(attempt, "stderr", rest) for rest in
                   self.pipes.read(worker.process, "stderr") + self.pipes.rest(worker.process, "stderr")]
        code = line[at + len(worker.exit_marker):].strip()
        kill_leftovers(worker.process)
        kill_task_processes(attempt)
        worker.release()
        events.append(Exited(attempt, int(code) if code.isdigit() else 1))
        return events

    def _worker_ended(self, worker: Worker) -> list[Event]:
        """Both pipes closed: the worker has ended (killed for a timeout, or its script failed)."""
        process = worker.process
        if worker.pid not in self.workers:
            return []
        del self.workers[worker.pid]
        code = process.wait()
        close_pipes(process)
        kill_group(process)  # anything its tasks left behind
        self.watch("ended", worker.pid)
        attempt, worker.attempt = worker.attempt, None
        if attempt is None:
            return []
        kill_task_processes(attempt)
        events: list[Event] = [Output(attempt, "stderr", line) for line in bytes(worker.own_output).splitlines()]
        return events + [Exited(attempt, code if code > 0 else 1)]

    def kill(self, attempt: Any) -> None:
        """Stop the worker running ``attempt`` and the task it forked (they share its process group)."""
        for worker in self.workers.values():
            if worker.attempt is attempt:
                kill_group(worker.process)
                kill_task_processes(attempt)

    def close(self) -> None:
        """Let every worker go: idle ones quit at the end of their input; any still busy is killed."""
        for worker in self.workers.values():
            if worker.attempt is not None:
                kill_group(worker.process)
                kill_task_processes(worker.attempt)
            worker.end_input()
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            kill_group(worker.process)  # and whatever its last tasks left behind
            worker.process.wait()
            close_pipes(worker.process)
            self.watch("ended", worker.pid)
        self.workers.clear()
        self.pipes.close()
