"""The local runtime: schedules a run's tasks as R processes, at most ``max_workers`` at a time.

Single-threaded by design: one loop in the main thread launches tasks, relays their output line by line,
and reacts to their exit. (R holds Python's lock while it runs R code, and writing to R's console from
another thread is unsafe, so nothing here runs in a background thread.)
"""
from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from . import task as tasks
from .datastore import FlowDatastore
from .errors import DatastoreError
from .graph import FlowGraph
from .procenv import subprocess_env
from .workers import WORKER_EXIT_MARKER, Worker, start_worker

@dataclass
class Attempt:
    spec: tasks.TaskSpec
    context: dict[str, Any]
    worker: Worker
    started_at: float
    deadline: float | None
    workdir: str
    logs: dict[str, bytearray] = field(default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()})
    timed_out: bool = False


@dataclass
class Clone:
    """A finished task of an earlier run, reused by ``resume``."""

    origin_run_id: str
    reuse_before: set[str]  # steps whose finished tasks may be reused


class LocalRuntime:
    def __init__(self, graph: FlowGraph, ds: FlowDatastore, run_id: str, run_record: dict[str, Any], *,
                 script: str, launch_dir: str, rscript: str, max_workers: int = 16,
                 retries: dict[str, int] | None = None, timeouts: dict[str, float] | None = None,
                 clone: Clone | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.graph = graph
        self.ds = ds
        self.run_id = run_id
        self.run_record = run_record
        self.script = script
        self.launch_dir = launch_dir
        self.rscript = rscript
        self.max_workers = max(1, max_workers)
        self.retries = retries or {}
        self.timeouts = timeouts or {}
        self.clone = clone
        self.echo = echo or (lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush()))
        self.queue: deque[tasks.TaskSpec] = deque()
        self.running: dict[int, Attempt] = {}  # by worker pid
        self.workers: dict[int, Worker] = {}
        self.records: dict[str, dict[str, Any]] = {}  # successful task records of this run, by pathspec
        self.worker_output: dict[int, bytes] = {}
        self.join_inputs: dict[tuple[str, str], dict[Any, str]] = {}
        self.next_task_id = 1
        self.failed: tasks.TaskSpec | None = None
        self.selector = selectors.DefaultSelector()
        self.scratch = tempfile.mkdtemp(prefix=f"metaflow-r-{run_id}-")
        self.env = subprocess_env()
        self.origin_tasks = self._origin_tasks() if clone else {}

    # -- public --------------------------------------------------------------------------------

    def execute(self) -> bool:
        """Run every task; True when the run succeeded."""
        try:
            self._enqueue("start", [], None)
            while (self.queue or self.running) and not self.failed:
                while self.queue and len(self.running) < self.max_workers and not self.failed:
                    self._start(self.queue.popleft())
                self._poll(0.05)
        finally:
            self._stop_all()
            self.selector.close()
            shutil.rmtree(self.scratch, ignore_errors=True)
        successful = self.failed is None
        self.ds.finish_run(self.run_id, successful)
        return successful

    # -- scheduling ------------------------------------------------------------------------------

    def _enqueue(self, step: str, input_paths: list[str], split_index: int | None) -> None:
        key = (step, tuple(input_paths), split_index)
        origin = self.origin_tasks.get(key)
        if origin is not None:
            task_id, record = origin
            self._reuse(step, task_id, record, input_paths)
            return
        spec = tasks.TaskSpec(self.run_id, step, str(self.next_task_id), input_paths, split_index)
        self.next_task_id += 1
        self.queue.append(spec)

    def _finished(self, spec: tasks.TaskSpec, record: dict[str, Any]) -> None:
        self.records[spec.pathspec] = record  # its children's prepare() reads it from here, not the datastore
        node = self.graph[spec.step]
        for child in node.next:
            if node.is_foreach:
                for index in range(record["num_splits"]):
                    self._enqueue(child, [spec.pathspec], index)
            elif self.graph[child].is_join:
                self._arrive_at_join(child, spec, record)
            else:
                self._enqueue(child, [spec.pathspec], None)

    def _arrive_at_join(self, join: str, spec: tasks.TaskSpec, record: dict[str, Any]) -> None:
        frame = record["split_stack"][-1]  # the split this join closes
        key = (join, frame["task_id"])
        arrived = self.join_inputs.setdefault(key, {})
        arrived[frame["index"]] = spec.pathspec
        if len(arrived) == frame["num_splits"]:
            del self.join_inputs[key]
            split = self.graph[frame["step"]]
            order = sorted(arrived) if split.is_foreach else [s for s in split.next if s in arrived]
            self._enqueue(join, [arrived[i] for i in order], None)

    # -- processes -------------------------------------------------------------------------------

    def _start(self, spec: tasks.TaskSpec) -> None:
        workdir = tempfile.mkdtemp(prefix=f"{spec.step}-{spec.task_id}-{spec.retry_count}-", dir=self.scratch)
        context = tasks.prepare(self.graph, self.ds, spec, self.run_record, workdir, known=self.records)
        context_file = os.path.join(workdir, "context.json")
        tasks.write_context(context, context_file)
        timeout = self.timeouts.get(spec.step)
        while True:
            worker = self._idle_worker()
            attempt = Attempt(spec, context, worker, time.time(), time.time() + timeout if timeout else None,
                              workdir)
            if worker.assign(attempt, context_file):
                break
            worker.kill()  # it died while idle: take another
        self.running[worker.pid] = attempt
        self._say(attempt, "Task is starting" + (f" (retry {spec.retry_count})." if spec.retry_count else "."))

    def _idle_worker(self) -> Worker:
        for worker in self.workers.values():
            if worker.task is None and not worker.retiring and worker.process.poll() is None:
                return worker
        worker = start_worker(self.rscript, self.script, self.launch_dir, self.env)
        self.workers[worker.pid] = worker
        for stream, pipe in (("stdout", worker.process.stdout), ("stderr", worker.process.stderr)):
            self.selector.register(pipe, selectors.EVENT_READ, (worker, stream))
        return worker

    def _poll(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            worker, stream = key.data
            self._read(worker, stream)
        now = time.time()
        for attempt in list(self.running.values()):
            if attempt.deadline and now > attempt.deadline and not attempt.timed_out:
                attempt.timed_out = True
                attempt.worker.kill()  # its pipes close; _read then ends the attempt

    def _read(self, worker: Worker, stream: str) -> None:
        pipe = worker.process.stdout if stream == "stdout" else worker.process.stderr
        try:
            data = os.read(pipe.fileno(), 65536)
        except BlockingIOError:
            return
        if data:
            self._consume(worker, stream, data)
        else:
            self._worker_gone(worker, stream, pipe)

    def _consume(self, worker: Worker, stream: str, data: bytes) -> None:
        lines = (worker.partial[stream] + data).split(b"\n")
        worker.partial[stream] = lines.pop()
        for line in lines:
            # The marker follows the task's output directly: after a last line with no newline, mid-line.
            at = line.find(WORKER_EXIT_MARKER) if stream == "stdout" else -1
            if at >= 0:
                if at > 0 and worker.task is not None:
                    self._output(worker.task, stream, line[:at])
                self._task_done(worker, int(line[at + len(WORKER_EXIT_MARKER):] or 1))
            elif worker.task is not None:
                self._output(worker.task, stream, line)
            else:  # the worker's own output, e.g. the script failing before any task
                self.worker_output[worker.pid] = self.worker_output.get(worker.pid, b"") + line + b"\n"

    def _output(self, attempt: Attempt, stream: str, line: bytes) -> None:
        attempt.logs[stream] += line + b"\n"
        self._say(attempt, line.decode("utf-8", errors="replace"))

    def _flush_partial(self, worker: Worker) -> None:
        """Unterminated last lines belong to the task that wrote them."""
        for stream in ("stderr", "stdout"):
            if worker.partial[stream] and worker.task is not None:
                self._output(worker.task, stream, worker.partial[stream])
            worker.partial[stream] = b""

    def _task_done(self, worker: Worker, code: int) -> None:
        attempt = worker.task
        if attempt is None:
            return
        # The child has exited, so all it wrote to stderr is already in the pipe: read it before moving on.
        pipe = worker.process.stderr
        while pipe is not None and not pipe.closed:
            try:
                data = os.read(pipe.fileno(), 65536)
            except BlockingIOError:
                break
            if not data:
                break
            self._consume(worker, "stderr", data)
        self._flush_partial(worker)
        worker.finished_task()
        del self.running[worker.pid]
        self._exited(attempt, code)

    def _worker_gone(self, worker: Worker, stream: str, pipe) -> None:
        """A pipe closed: the worker ended (killed for a timeout, or its script failed)."""
        self.selector.unregister(pipe)
        pipe.close()
        other = worker.process.stderr if stream == "stdout" else worker.process.stdout
        if not other.closed:
            return  # wait for both pipes, so no output is lost
        code = worker.process.wait()
        attempt = worker.task
        if attempt is not None:
            self._flush_partial(worker)
            for line in self.worker_output.pop(worker.pid, b"").splitlines():
                self._output(attempt, "stderr", line)
            worker.task = None
            del self.running[worker.pid]
            self._exited(attempt, code or 1)
        del self.workers[worker.pid]

    def _exited(self, attempt: Attempt, code: int) -> None:
        spec = attempt.spec
        self._save_logs(attempt)
        reason = None
        if code == 0:
            try:
                record = tasks.commit(self.ds, spec, attempt.context, attempt.started_at)
            except (OSError, DatastoreError) as exc:  # e.g. a full disk: the task failed, not the runtime
                code, reason = 1, f"its artifacts could not be stored: {exc}"
        if code == 0:
            self._say(attempt, "Task finished successfully.")
            self._finished(spec, record)
        else:
            reason = reason or (f"timed out after {self.timeouts[spec.step]:g} s" if attempt.timed_out
                                else f"exit status {code}")
            tasks.record_failure(self.ds, spec, attempt.context, attempt.started_at, reason)
            if spec.retry_count < self.retries.get(spec.step, 0):
                self._say(attempt, f"Task failed ({reason}); retrying.")
                self.queue.appendleft(replace(spec, retry_count=spec.retry_count + 1))
            elif self.graph[spec.step].spec.decorator("catch") is not None and spec.caught is None:
                self._say(attempt, f"Task failed ({reason}); decorator(\"catch\") records the error and the run "
                                   "goes on.")
                self.queue.appendleft(replace(spec, retry_count=spec.retry_count + 1,
                                              caught=tasks.caught_error(bytes(attempt.logs["stderr"]), reason)))
            else:
                self._say(attempt, f"Task failed ({reason}).")
                self.failed = spec
        shutil.rmtree(attempt.workdir, ignore_errors=True)

    def _save_logs(self, attempt: Attempt) -> None:
        spec = attempt.spec
        for stream, data in attempt.logs.items():
            if data:
                self.ds.write_log(spec.run_id, spec.step, spec.task_id, spec.retry_count, stream, bytes(data))

    def _stop_all(self) -> None:
        """After a failure, stop the tasks still running; then let every worker go."""
        for attempt in self.running.values():
            attempt.worker.kill()
            self._say(attempt, "Task was stopped because another task failed.")
        self.running.clear()
        for worker in self.workers.values():
            worker.close()
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.process.wait()
            for pipe in (worker.process.stdout, worker.process.stderr, worker.process.stdin):
                if pipe is not None and not pipe.closed:
                    pipe.close()
        self.workers.clear()

    def _say(self, attempt: Attempt, line: str) -> None:
        spec = attempt.spec
        self.echo(f"[{spec.pathspec} (pid {attempt.worker.pid})] {line}")

    # -- resume ----------------------------------------------------------------------------------

    def _origin_tasks(self) -> dict[tuple, tuple[str, dict[str, Any]]]:
        """Successful tasks of the origin run that resume may reuse, keyed like ``_enqueue``'s calls."""
        assert self.clone is not None
        origin = self.clone.origin_run_id
        found: dict[tuple, tuple[str, dict[str, Any]]] = {}
        for step in self.clone.reuse_before:
            for task_id in self.ds.task_ids(origin, step):
                record = self.ds.task_record(origin, step, task_id)
                if record and record.get("successful"):
                    inputs = tuple(p.replace(f"{origin}/", f"{self.run_id}/", 1) for p in record["input_paths"])
                    split = _split_index(self.graph, step, record)
                    found[(step, inputs, split)] = (task_id, record)
                    self.next_task_id = max(self.next_task_id, int(task_id) + 1)
        return found

    def _reuse(self, step: str, task_id: str, record: dict[str, Any], input_paths: list[str]) -> None:
        origin = self.clone.origin_run_id
        copied = dict(record, input_paths=input_paths, cloned_from=f"{origin}/{step}/{task_id}")
        for stream in ("stdout", "stderr"):  # the clone keeps what the task printed
            log = self.ds.read_log(origin, step, task_id, record["attempt"], stream)
            if log:
                self.ds.write_log(self.run_id, step, task_id, record["attempt"], stream, log.encode())
        self.ds.write_attempt(self.run_id, step, task_id, record["attempt"], copied)
        self.echo(f"[{self.run_id}/{step}/{task_id}] Cloned from run {self.clone.origin_run_id}.")
        self._finished(tasks.TaskSpec(self.run_id, step, task_id, input_paths), copied)


def _split_index(graph: FlowGraph, step: str, record: dict[str, Any]) -> int | None:
    """The split index a task was enqueued with: its foreach frame's index when its parent is the foreach."""
    node = graph[step]
    if node.is_join or not node.parents:
        return None
    parent = graph[node.parents[0]]
    return record["split_stack"][-1]["index"] if parent.is_foreach else None
