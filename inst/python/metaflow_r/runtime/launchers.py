"""How a task attempt's R process starts: forked from a warm worker (local runs) or as a process of its
own (a Batch job). Both report the same events to the attempt engine (attempt.py): that the task began
running in R, its output line by line and stream by stream, and its exit status. (A local run whose
steps are Batch jobs has a third launcher, batch_launcher.py, reporting the same events of a job.)

A warm worker is ``Rscript flow.R worker``: an R process that loaded the package and sourced the flow
once. It is handed a task by the path of the task's context file on its stdin; it forks, the child runs
the task, and the worker prints the protocol's exit marker and the child's status on stdout after all
the child's output. A task that crashes takes only its child; a worker that dies (or is killed for a
timeout) is replaced by a new one.

Single-threaded by design: the caller polls. R holds Python's lock while it runs R code, so a
background thread would barely move while R is busy.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Union

from metaflow_r.core.protocol import TASK_START_MARKER, WORKER_EXIT_MARKER

STREAMS = ("stdout", "stderr")
# A line longer than this is passed on in pieces, so memory and time stay linear in the output even for
# a progress bar that redraws with "\r" and never ends its line.
MAX_LINE = 64 * 1024
# Bytes always kept back when a long line is cut: the worker's exit marker can follow a task's last,
# unterminated line, and must never be cut in two.
_TAIL = 64
# R does not give back all the memory a forked job leaves behind in its parent, so a worker grows a
# little with every task; replacing it now and then keeps a run's memory flat in the foreach width.
TASKS_PER_WORKER = 200
# Reads of one pipe per poll, so a task that prints without pause cannot starve the others.
_READS_PER_POLL = 16


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


Event = Union[Started, Output, Exited]


def _task_line(attempt: Any, stream: str, line: bytes) -> Event:
    if stream == "stdout" and line == TASK_START_MARKER:
        return Started(attempt)
    return Output(attempt, stream, line)


class Launcher(Protocol):
    # Starts the attempt; returns what runs it, for the console ("pid 1234"). ``context_file`` is None for
    # a launcher whose attempts prepare their own context (a Batch job of a local run).
    def launch(self, attempt: Any, context_file: str | None) -> str: ...
    def poll(self, timeout: float) -> list[Event]: ...
    def kill(self, attempt: Any) -> None: ...
    def close(self) -> None: ...


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
            cut = len(self.partial) - _TAIL
            lines.extend(bytes(self.partial[i:min(i + MAX_LINE, cut)]) for i in range(0, cut, MAX_LINE))
            del self.partial[:cut]
        return lines

    def rest(self) -> list[bytes]:
        """What is left of an unterminated last line."""
        rest = [bytes(self.partial)] if self.partial else []
        self.partial.clear()
        return rest


class _Pipes:
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

    def read(self, process: subprocess.Popen, stream: str) -> list[bytes]:
        """The complete lines now readable on one pipe; once it ends, its unterminated last line too."""
        pipe = getattr(process, stream)
        if pipe.closed:
            return []
        buffer = self.buffers[(process.pid, stream)]
        lines: list[bytes] = []
        for _ in range(_READS_PER_POLL):
            try:
                data = os.read(pipe.fileno(), 65536)
            except BlockingIOError:
                break
            if not data:
                self.selector.unregister(pipe)
                pipe.close()
                return lines + self.buffers.pop((process.pid, stream)).rest()
            lines += buffer.feed(data)
        return lines

    def rest(self, process: subprocess.Popen, stream: str) -> list[bytes]:
        buffer = self.buffers.get((process.pid, stream))
        return buffer.rest() if buffer else []

    def close(self) -> None:
        self.selector.close()


def _kill_group(process: subprocess.Popen) -> None:
    """The process and everything it started: each launched process leads a process group of its own."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_leftovers(worker: subprocess.Popen) -> None:
    """Processes a finished task left in its worker's process group (``system("cmd &")``, a forked job):
    they end with the task. The worker itself is the group's leader and stays."""
    for pid in _group_members(worker.pid):
        if pid != worker.pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _group_members(pgid: int) -> list[int]:
    """The processes of a process group: from /proc where there is one (Linux), else from ps."""
    if not os.path.isdir("/proc/self"):
        listing = subprocess.run(["ps", "-A", "-o", "pid=,pgid="], capture_output=True, text=True).stdout
        return [int(pid) for pid, group in (line.split() for line in listing.splitlines()) if int(group) == pgid]
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # it ended meanwhile
        # After the command name, which may hold spaces and is in parentheses: state, ppid, pgrp.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            members.append(int(name))
    return members


def _close_pipes(process: subprocess.Popen) -> None:
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()


# -- a process per attempt (Batch) -------------------------------------------------------------------


class SubprocessLauncher:
    """Each attempt is ``Rscript flow.R task --context FILE``, a process of its own."""

    def __init__(self, rscript: str, script: str, cwd: str, env: dict[str, str]) -> None:
        self.command = [rscript, script, "task", "--context"]
        self.cwd = cwd
        self.env = env
        self.pipes = _Pipes()
        self.processes: dict[int, tuple[subprocess.Popen, Any]] = {}

    def launch(self, attempt: Any, context_file: str | None) -> str:
        assert context_file is not None
        process = subprocess.Popen([*self.command, context_file], cwd=self.cwd, env=self.env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        self.processes[process.pid] = (process, attempt)
        self.pipes.watch(process, process.pid)
        return f"pid {process.pid}"

    def poll(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        for pid, stream in self.pipes.ready(timeout):
            process, attempt = self.processes[pid]
            events += [_task_line(attempt, stream, line) for line in self.pipes.read(process, stream)]
            if process.stdout.closed and process.stderr.closed:
                del self.processes[pid]
                code = process.wait()
                _kill_group(process)  # children the step left behind end with it
                events.append(Exited(attempt, code if code >= 0 else 128 - code))
        return events

    def kill(self, attempt: Any) -> None:
        for process, running in self.processes.values():
            if running is attempt:
                _kill_group(process)

    def close(self) -> None:
        for process, _ in list(self.processes.values()):
            _kill_group(process)
            process.wait()
            _close_pipes(process)
        self.processes.clear()
        self.pipes.close()


# -- warm workers (local runs) -----------------------------------------------------------------------


@dataclass(eq=False)
class Worker:
    process: subprocess.Popen
    attempt: Any = None  # the attempt running on it, if any
    tasks_run: int = 0
    retiring: bool = False
    own_output: bytearray = field(default_factory=bytearray)  # printed while no task ran, e.g. the script failing

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

    def __init__(self, rscript: str, script: str, launch_dir: str, env: dict[str, str],
                 watch: Callable[[str, int], None] | None = None) -> None:
        """``watch("started" | "ended", pid)`` hears of each worker's process group (see reaper.py)."""
        self.command = [rscript, script, "worker"]
        self.launch_dir = launch_dir
        self.env = env
        self.watch = watch or (lambda event, pid: None)
        self.pipes = _Pipes()
        self.workers: dict[int, Worker] = {}

    def launch(self, attempt: Any, context_file: str | None) -> str:
        assert context_file is not None
        while True:
            worker = next((w for w in self.workers.values() if w.idle), None) or self._start_worker()
            if worker.assign(attempt, context_file):
                return f"pid {worker.pid}"
            _kill_group(worker.process)  # it died while idle: take another

    def _start_worker(self) -> Worker:
        process = subprocess.Popen(self.command, cwd=self.launch_dir, env=self.env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        worker = Worker(process)
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
        at = line.find(WORKER_EXIT_MARKER) if stream == "stdout" else -1
        if at < 0:
            if worker.attempt is None:
                worker.own_output += line + b"\n"
                return []
            return [_task_line(worker.attempt, stream, line)]
        events: list[Event] = []
        attempt = worker.attempt
        if attempt is None:
            return events
        if at > 0:
            events.append(Output(attempt, stream, line[:at]))
        # The child has exited, so all it wrote to stderr is in the pipe already: take it before moving on.
        events += [Output(attempt, "stderr", rest) for rest in
                   self.pipes.read(worker.process, "stderr") + self.pipes.rest(worker.process, "stderr")]
        code = line[at + len(WORKER_EXIT_MARKER):].strip()
        _kill_leftovers(worker.process)
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
        _close_pipes(process)
        _kill_group(process)  # anything its tasks left behind
        self.watch("ended", worker.pid)
        attempt, worker.attempt = worker.attempt, None
        if attempt is None:
            return []
        events: list[Event] = [Output(attempt, "stderr", line) for line in bytes(worker.own_output).splitlines()]
        return events + [Exited(attempt, code if code > 0 else 1)]

    def kill(self, attempt: Any) -> None:
        """Stop the worker running ``attempt`` and the task it forked (they share its process group)."""
        for worker in self.workers.values():
            if worker.attempt is attempt:
                _kill_group(worker.process)

    def close(self) -> None:
        """Let every worker go: idle ones quit at the end of their input; any still busy is killed."""
        for worker in self.workers.values():
            if worker.attempt is not None:
                _kill_group(worker.process)
            worker.end_input()
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            _kill_group(worker.process)  # and whatever its last tasks left behind
            worker.process.wait()
            _close_pipes(worker.process)
            self.watch("ended", worker.pid)
        self.workers.clear()
        self.pipes.close()
