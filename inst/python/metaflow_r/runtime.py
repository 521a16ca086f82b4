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
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from . import task as tasks
from .datastore import FlowDatastore
from .graph import FlowGraph
from .procenv import subprocess_env

DEFAULT_RETRIES = 3


@dataclass
class Attempt:
    spec: tasks.TaskSpec
    context: dict[str, Any]
    process: subprocess.Popen
    started_at: float
    deadline: float | None
    workdir: str
    logs: dict[str, bytearray] = field(default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()})
    partial: dict[str, bytes] = field(default_factory=lambda: {"stdout": b"", "stderr": b""})
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
        self.running: dict[int, Attempt] = {}
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
            self._stop_all()
        finally:
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
        context = tasks.prepare(self.graph, self.ds, spec, self.run_record, workdir)
        context_file = os.path.join(workdir, "context.json")
        tasks.write_context(context, context_file)
        command = [self.rscript, self.script, "task", "--run-id", spec.run_id, "--step", spec.step,
                   "--task-id", spec.task_id, "--retry-count", str(spec.retry_count),
                   "--input-paths", ",".join(spec.input_paths), "--context", context_file]
        process = subprocess.Popen(command, cwd=self.launch_dir, env=self.env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        timeout = self.timeouts.get(spec.step)
        attempt = Attempt(spec, context, process, time.time(), time.time() + timeout if timeout else None, workdir)
        self.running[process.pid] = attempt
        for stream, pipe in (("stdout", process.stdout), ("stderr", process.stderr)):
            self.selector.register(pipe, selectors.EVENT_READ, (attempt, stream))
        self._say(attempt, "Task is starting" + (f" (retry {spec.retry_count})." if spec.retry_count else "."))

    def _poll(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            attempt, stream = key.data
            self._read(attempt, stream, key.fileobj)
        now = time.time()
        for pid, attempt in list(self.running.items()):
            if attempt.deadline and now > attempt.deadline and attempt.process.poll() is None:
                attempt.timed_out = True
                attempt.process.kill()
            if attempt.process.poll() is not None:
                self._drain(attempt)
                del self.running[pid]
                self._exited(attempt)

    def _read(self, attempt: Attempt, stream: str, pipe: IO[bytes]) -> None:
        data = os.read(pipe.fileno(), 65536)
        attempt.logs[stream] += data
        if not data:  # end of stream: show an unterminated last line too
            self.selector.unregister(pipe)
            pipe.close()
            data = b"\n" if attempt.partial[stream] else b""
        lines = (attempt.partial[stream] + data).split(b"\n")
        attempt.partial[stream] = lines.pop()
        for line in lines:
            self._say(attempt, line.decode("utf-8", errors="replace"))

    def _drain(self, attempt: Attempt) -> None:
        for pipe, stream in ((attempt.process.stdout, "stdout"), (attempt.process.stderr, "stderr")):
            while pipe and not pipe.closed:
                self._read(attempt, stream, pipe)

    def _exited(self, attempt: Attempt) -> None:
        spec = attempt.spec
        code = attempt.process.returncode
        self._save_logs(attempt)
        if code == 0:
            record = tasks.commit(self.ds, spec, attempt.context, attempt.started_at)
            self._say(attempt, "Task finished successfully.")
            self._finished(spec, record)
        else:
            reason = (f"timed out after {self.timeouts[spec.step]:g} s" if attempt.timed_out
                      else f"exit status {code}")
            tasks.record_failure(self.ds, spec, attempt.context, attempt.started_at, reason)
            if spec.retry_count < self.retries.get(spec.step, 0):
                self._say(attempt, f"Task failed ({reason}); retrying.")
                self.queue.appendleft(tasks.TaskSpec(spec.run_id, spec.step, spec.task_id, spec.input_paths,
                                                     spec.split_index, spec.retry_count + 1))
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
        for attempt in self.running.values():
            attempt.process.kill()
        for attempt in self.running.values():
            attempt.process.wait()
            self._drain(attempt)
            self._say(attempt, "Task was stopped because another task failed.")
        self.running.clear()

    def _say(self, attempt: Attempt, line: str) -> None:
        spec = attempt.spec
        self.echo(f"[{spec.pathspec} (pid {attempt.process.pid})] {line}")

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
        copied = dict(record, input_paths=input_paths, cloned_from=f"{self.clone.origin_run_id}/{step}/{task_id}")
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
