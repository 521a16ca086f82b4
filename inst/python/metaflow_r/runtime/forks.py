"""Attempts forked from one warm R (local runs).

Every local task is a fork of one R that loaded the package and sourced the flow once (R/task-worker.R):
the R running ``Rscript flow.R run``, which hands this process the two ends of the task channel as file
descriptors, or, for run() in an R session, one ``Rscript flow.R worker`` started here. One R per run, not
one per worker slot: the forks share its pages, so memory grows with the tasks running, not with an R each.

A request names the task's context file, two FIFOs for its stdout and stderr (read here, so each task's
output stays its own while many run at once) and its temporary directory. The R answers with the fork's
pid; the fork answers with its exit status once the task is over, after everything it printed. A fork that
dies without a word (killed, out of memory) is found gone and counts as failed.
"""
from __future__ import annotations

import itertools
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from metaflow_r.core import processes
from metaflow_r.core.protocol import TASK_CHANNEL_VARIABLE
from metaflow_r.core.write_failures import SCRATCH, writing
from metaflow_r.runtime.events import Event, Exited, Launched, Output, task_line
from metaflow_r.runtime.pipes import STREAMS, LineBuffer, Pipes, close_pipes, kill_group, kill_task_processes

# How long the run's end waits for the R to fork what it was asked to.
FORK_TIMEOUT = 60.0
# How long the run's end waits for the R to collect its last forks (it collects each in milliseconds).
COLLECT_TIMEOUT = 5.0


@dataclass(eq=False)
class TaskStreams:
    """A fork's stdout and stderr FIFOs, read ends, shaped as Pipes reads a process's."""

    pid: int  # the request's token: Pipes keys its buffers by it
    stdout: IO[bytes]
    stderr: IO[bytes]


@dataclass(eq=False)
class Fork:
    attempt: Any
    streams: TaskStreams
    identity: dict[str, Any] = field(default_factory=dict)  # the fork's, once the R said its pid
    code: int | None = None  # its exit status, once it said
    unforked: str | None = None  # why the R could not fork it
    killed: bool = False  # asked to be killed, maybe before its pid was known
    early: list[Event] = field(default_factory=list)  # its output read before its pid

    @property
    def pid(self) -> int | None:
        return self.identity.get("pid")


class ForkLauncher:
    """Attempts run in forks of the run's warm R, as many at once as the runtime starts."""

    cleanup_command = None  # the reaper is told each fork's pid and kills them itself

    def __init__(self, rscript: str, script: str, launch_dir: str, env: dict[str, str],
                 channel: tuple[int, int] | None = None,
                 watch: Callable[[str, int], None] | None = None) -> None:
        """``channel``: the (requests, replies) descriptors of the R that launched this process; without
        it, an ``Rscript script worker`` is started at the first attempt. ``watch("forked" | "reaped" |
        "started" | "ended", pid)`` hears of each fork (and of the worker R's process group), for the
        reaper (reaper.py)."""
        self.command = [rscript, script, "worker"]
        self.launch_dir = launch_dir
        self.env = env
        self.watch = watch or (lambda event, pid: None)
        self.channel = channel
        self.requests: int | None = None  # the channel's ends here, once open
        self.replies_fd: int | None = None
        self.worker: subprocess.Popen | None = None
        self.worker_output: list[bytes] = []  # what the worker R printed itself, e.g. its script failing
        self.pipes = Pipes()
        self.replies = LineBuffer()
        self.tokens = itertools.count(1)
        self.forks: dict[int, Fork] = {}
        self.uncollected: list[dict[str, Any]] = []  # the identities of forks that may not be collected yet
        self.pending: list[Event] = []  # for the next poll: the exits of attempts that could not start

    # -- the AttemptLauncher protocol --------------------------------------------------------------------

    def launch(self, attempt: Any, context_file: str | None) -> str | None:
        """Ask for the fork and go on: its pid comes back as a Launched event (waiting for it here would hold
        the whole runtime for a scheduling round trip to R per task)."""
        assert context_file is not None
        if not self._ready():
            self.pending += [Launched(attempt, "no worker"), *self._worker_failed(attempt)]
            return None
        token = next(self.tokens)
        paths = {stream: os.path.join(attempt.workdir, f"{stream}.fifo") for stream in STREAMS}
        tmp = os.path.join(attempt.workdir, "tmp")
        with writing(f"the task directory of step {attempt.spec.step!r}", attempt.workdir, SCRATCH):
            for path in paths.values():
                os.mkfifo(path, 0o600)
            os.mkdir(tmp)
        streams = TaskStreams(token, *(os.fdopen(os.open(paths[s], os.O_RDONLY | os.O_NONBLOCK), "rb", buffering=0)
                                       for s in STREAMS))
        fork = self.forks[token] = Fork(attempt, streams)
        self.pipes.watch(streams, fork)
        request = "\t".join([str(token), context_file, paths["stdout"], paths["stderr"], tmp])
        try:
            assert self.requests is not None
            os.write(self.requests, request.encode() + b"\n")
        except OSError:
            fork.unforked = "the R that forks the tasks has ended"
        return None

    def poll(self, timeout: float) -> list[Event]:
        events, self.pending = self.pending, []
        ready = self.pipes.ready(0 if events else timeout)
        events += self._read_replies()  # first: a fork's pid before its output
        for owner, stream in ready:
            if owner == "worker":
                self.worker_output += self.pipes.read(self.worker, stream)
            elif isinstance(owner, Fork) and owner.streams.pid in self.forks:
                lines = [task_line(owner.attempt, stream, line) for line in self.pipes.read(owner.streams, stream)]
                if owner.pid is None:
                    owner.early += lines  # printed before the R said it forked: passed on once it has
                else:
                    events += lines
        if self.worker is not None and self.worker.poll() is not None:  # its script failed, or it was killed
            for fork in [f for f in self.forks.values() if f.pid is None and f.unforked is None]:
                self._forget(fork)
                events += [Launched(fork.attempt, "no worker"), *self._worker_failed(fork.attempt)]
        for fork in list(self.forks.values()):
            if fork.unforked is not None:
                self._forget(fork)
                events += [Launched(fork.attempt, "no fork"), *self._worker_failed(fork.attempt, fork.unforked)]
                continue
            if fork.code is None and fork.pid is not None and processes.state(fork.identity) != "running":
                events += self._read_replies()  # a fork says its status, then ends: what it said is in the pipe now
                if fork.code is None:
                    fork.code = 1  # it died without a word: killed by a signal, or its R crashed
            if fork.code is not None and fork.pid is not None:
                events += self._ended(fork)
        return events

    def kill(self, attempt: Any) -> None:
        """SIGKILL the attempt's fork (once forked) and what its task started; its end arrives as an event."""
        for fork in self.forks.values():
            if fork.attempt is attempt:
                fork.killed = True
                if fork.pid is not None:
                    _kill(fork.pid)
                kill_task_processes(attempt)

    def close(self) -> None:
        """Kill the forks still running; closing the requests lets the R go on (or the worker R end)."""
        self._await_forks()
        for fork in list(self.forks.values()):
            self.kill(fork.attempt)
            self._forget(fork)
        self._await_collection()
        if self.requests is not None and self.replies_fd is not None:
            os.close(self.requests)
            self.pipes.selector.unregister(self.replies_fd)
            os.close(self.replies_fd)
            self.requests = self.replies_fd = None
        if self.worker is not None:
            try:
                self.worker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            kill_group(self.worker)
            self.worker.wait()
            close_pipes(self.worker)
            self.watch("ended", self.worker.pid)
            self.worker = None
        self.pipes.close()

    # -- the channel --------------------------------------------------------------------------------------

    def _ready(self) -> bool:
        """The channel is open: the R that launched this process, or a worker R started now."""
        if self.channel is None and self.worker is None:
            self._start_worker()
        elif self.worker is not None and self.worker.poll() is not None:
            return False
        if self.requests is None and self.channel is not None:
            self.requests, self.replies_fd = self.channel
            os.set_blocking(self.replies_fd, False)
            self.pipes.selector.register(self.replies_fd, selectors.EVENT_READ, ("replies", "replies"))
        return True

    def _start_worker(self) -> None:
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        env = {**self.env, TASK_CHANNEL_VARIABLE: f"{requests_read},{replies_write}"}
        self.worker = subprocess.Popen(self.command, cwd=self.launch_dir, env=env, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                       pass_fds=(requests_read, replies_write))
        os.close(requests_read)
        os.close(replies_write)
        self.channel = (requests_write, replies_read)
        self.pipes.watch(self.worker, "worker")
        self.watch("started", self.worker.pid)

    def _read_replies(self) -> list[Event]:
        """What the R and the forks said: a fork's pid (the attempt is launched), its status, or why the R
        could not fork it."""
        lines: list[bytes] = []
        while self.replies_fd is not None:
            try:
                data = os.read(self.replies_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            lines += self.replies.feed(data)
        events: list[Event] = []
        for line in lines:
            token, what, value = (line.decode(errors="replace").split(" ", 2) + ["", ""])[:3]
            fork = self.forks.get(int(token)) if token.isdigit() else None
            if fork is None:
                continue
            if what == "forked" and value.isdigit():
                fork.identity = processes.identity(int(value))
                self.uncollected.append(fork.identity)
                self.watch("forked", int(value))
                if fork.killed:
                    _kill(int(value))
                events += [Launched(fork.attempt, f"pid {value}"), *fork.early]
                fork.early = []
            elif what == "exited":
                fork.code = int(value) if value.isdigit() else 1
            elif what == "unforked":
                fork.unforked = value
        return events

    def _await_forks(self) -> None:
        """Hear the R out on every fork asked for, so that none starts after the run has let it go."""
        deadline = time.monotonic() + FORK_TIMEOUT
        while any(f.pid is None and f.unforked is None for f in self.forks.values()) and time.monotonic() < deadline:
            if self.worker is not None and self.worker.poll() is not None:
                return
            self.pipes.selector.select(0.1)
            self._read_replies()

    # -- a fork's end -------------------------------------------------------------------------------------

    def _ended(self, fork: Fork) -> list[Event]:
        """All the fork printed is in its FIFOs once it has said its status or died: take it, and end what
        the task left running (a background process holding the FIFOs would otherwise hold them open). The
        fork waits to be killed after its status, so what it forked itself is still found below it."""
        events: list[Event] = []
        if fork.pid is not None:
            for pid in [*processes.descendants(fork.pid), fork.pid]:
                _kill(pid)
        kill_task_processes(fork.attempt)
        for stream in STREAMS:
            events += [task_line(fork.attempt, stream, line)
                       for line in self.pipes.read(fork.streams, stream, drain=True)]
        self._forget(fork)
        return events + [Exited(fork.attempt, fork.code if fork.code is not None else 1)]

    def _forget(self, fork: Fork) -> None:
        self.forks.pop(fork.streams.pid, None)
        for stream in STREAMS:
            self.pipes.read(fork.streams, stream, drain=True)  # closes it; a no-op once closed
        if fork.pid is not None:
            self.watch("reaped", fork.pid)

    def _await_collection(self) -> None:
        """Wait until the R has collected every fork (none is left even as a zombie) before letting it go on:
        R's `parallel` collects them in its SIGCHLD handler, which R's processx puts back to its own once
        this process ends, and R then waits 10 seconds at its exit for forks it never collected."""
        deadline = time.monotonic() + COLLECT_TIMEOUT
        while self.uncollected and time.monotonic() < deadline:
            self.uncollected = [i for i in self.uncollected if processes.state(i) != "gone"]
            if self.uncollected:
                time.sleep(0.01)

    def _worker_failed(self, attempt: Any, unforked: str | None = None) -> list[Event]:
        """The R could not fork the task (``unforked`` says why), or the worker R ended (its script failed
        as it was sourced, or it was killed): the attempt fails with what it printed."""
        if unforked is not None:
            return [Output(attempt, "stderr", f"The task could not be started: {unforked}".encode()), Exited(attempt, 1)]
        code = 1
        if self.worker is not None:
            code = self.worker.wait()
            self.worker_output += self.pipes.read(self.worker, "stdout", drain=True)
            self.worker_output += self.pipes.read(self.worker, "stderr", drain=True)
        lines = [Output(attempt, "stderr", line) for line in self.worker_output]
        return lines + [Exited(attempt, code if code > 0 else 1)]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
