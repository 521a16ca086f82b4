"""The local runtime: walks a run's graph and schedules its tasks, at most ``max_workers`` at a time.

It owns only what is particular to a local run: which tasks become ready as others finish, the join
barrier, the bound on concurrent tasks, and resume's reuse of an earlier run's tasks. How each attempt
runs, ends and is retried is the attempt engine's (attempt.py), the same as on Batch; here attempts run
in forks of the run's warm R (forks.py), or, given a launcher of remote attempts (``run --with batch``: the caller
passes aws/batch/launcher.py's, so this module imports no AWS code), as Batch jobs that commit themselves:
every step's, or only ``remote_steps``' (the steps with decorator("batch")), the others' in local forks.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Callable

from metaflow_r.core import processes
from metaflow_r.core.errors import DatastoreError, DiskFull, FileTooLarge
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.procenv import subprocess_env
from metaflow_r.core.write_failures import SCRATCH, writing
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.runtime import task as tasks
from metaflow_r.runtime.attempt import Attempt, AttemptEngine, AttemptOutcome
from metaflow_r.runtime.events import AttemptLauncher
from metaflow_r.runtime.progress import RunConsole
from metaflow_r.runtime.reaper import Reaper
from metaflow_r.runtime.resume import Clone
from metaflow_r.runtime.step_router import StepRouter
from metaflow_r.runtime.forks import ForkLauncher

SCRATCH_PREFIX = "metaflow-r-"
# Makes the launcher of attempts that run elsewhere and commit themselves, given the reaper's watch.
RemoteLauncher = Callable[[Callable[[str, Any], None]], AttemptLauncher]
OWNERS = ".owners"  # in a run's scratch directory: the identities of its runtime and its reaper
WORKER_TMP = "tmp"  # in a run's scratch directory: where a worker R's temporary directory is


def sweep_stale_scratch() -> None:
    """Remove the scratch directories of local runs whose runtime and reaper are both provably gone."""
    root = Path(tempfile.gettempdir())
    for directory in root.glob(f"{SCRATCH_PREFIX}*"):
        try:
            owners = json.loads((directory / OWNERS).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being set up
        if isinstance(owners, list) and owners and all(isinstance(o, dict) and processes.gone(o) for o in owners):
            shutil.rmtree(directory, ignore_errors=True)


def worker_env(env: dict[str, str], scratch: str) -> dict[str, str]:
    """A worker R's environment: its temporary directory (``tempdir()``) lives in the run's scratch
    directory, so it goes with it however the run ends (its end, its reaper, or a later run's sweep)."""
    tmp = Path(scratch, WORKER_TMP)
    tmp.mkdir()
    return {**env, "TMPDIR": str(tmp)}


class LocalRuntime:
    def __init__(self, graph: FlowGraph, ds: FlowDatastore, run_id: str, run_record: dict[str, Any], *,
                 script: str, launch_dir: str, rscript: str, max_workers: int = 16,
                 retries: dict[str, int] | None = None, clone: Clone | None = None,
                 console: RunConsole | None = None, remote: RemoteLauncher | None = None,
                 remote_steps: frozenset[str] | None = None, task_channel: tuple[int, int] | None = None) -> None:
        self.graph = graph
        self.ds = ds
        self.run_id = run_id
        self.max_workers = max(1, max_workers)
        self.clone = clone
        self.console = console or RunConsole({n.name for n in graph if any(graph[s].is_foreach for s in n.split_parents)})
        self.queue: deque[tasks.AttemptSpec] = deque()
        self.records: dict[str, dict[str, Any]] = {}  # successful task records of this run, by pathspec
        self.join_inputs: dict[tuple[str, str], dict[Any, str]] = {}
        self.next_task_id = 1
        self.failed: tasks.AttemptSpec | None = None
        self.failed_record: dict[str, Any] = {}  # the failed task's last attempt record: why it failed
        sweep_stale_scratch()
        env = subprocess_env()
        with writing("the run's scratch directory", tempfile.gettempdir(), SCRATCH):
            self.scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{run_id}-")
            workers = worker_env(env, self.scratch)
        job_steps = frozenset() if remote is None else remote_steps or frozenset(n.name for n in graph)
        # The launcher starts nothing before its first attempt, so the reaper can be told its cleanup.
        forks = ForkLauncher(rscript, script, launch_dir, workers, task_channel, self._watch)
        self.launcher = self._launcher(remote, job_steps, forks)
        self.reaper = Reaper.start(ds.storage.kind, ds.storage.root, ds.flow, run_id, self.scratch, env,
                                   getattr(self.launcher, "cleanup_command", None))
        reaper = processes.identity(self.reaper.process.pid)
        with writing("the run's scratch directory", self.scratch, SCRATCH):
            Path(self.scratch, OWNERS).write_text(json.dumps([processes.identity(), reaper]))
        ds.record_reaper(run_id, reaper)
        self.engine = AttemptEngine(graph, ds, run_record, self.launcher, retries=retries or {},
                                    echo=self._say, scratch=self.scratch, job_steps=job_steps)
        self.origin_tasks = self._origin_tasks() if clone else {}

    def _launcher(self, remote: RemoteLauncher | None, job_steps: frozenset[str],
                  forks: ForkLauncher) -> AttemptLauncher:
        if remote is None:
            return forks
        if job_steps == {n.name for n in self.graph}:
            return remote(self._watch)
        return StepRouter(forks, remote(self._watch), job_steps)

    # -- public --------------------------------------------------------------------------------

    def execute(self) -> bool:
        """Run every task; True when the run succeeded. Interrupted (Ctrl-C), it stops every task, marks the
        run failed with the reason and lets the KeyboardInterrupt go on."""
        interrupted = None
        try:
            self._enqueue("start", [], None)
            while (self.queue or self.engine.running) and not self.failed:
                while self.queue and len(self.engine.running) < self.max_workers and not self.failed:
                    spec = self.queue.popleft()
                    self.engine.start(spec, known=self.records)
                    self.console.started(spec.step)
                for outcome in self.engine.poll(0.05):
                    self.console.ended(outcome.spec.step, done=outcome.next is None)
                    self._ended(outcome)
        except BaseException as exc:
            interrupted = "the run was interrupted" if isinstance(exc, KeyboardInterrupt) else \
                f"the runtime failed ({type(exc).__name__}: {exc})"
            raise
        finally:
            self.engine.stop_all(f"Task was stopped because {interrupted or 'another task failed'}.")
            self.console.close()
            self.launcher.close()
            shutil.rmtree(self.scratch, ignore_errors=True)
            self._finish(interrupted)
        return self.failed is None

    def _finish(self, interrupted: str | None) -> None:
        successful = self.failed is None and interrupted is None
        reason = interrupted or (f"step {self.failed.step!r} failed" if self.failed else None)
        try:
            self.ds.finish_run(self.run_id, successful, reason)
        except (OSError, DiskFull, FileTooLarge) as exc:
            # Once this process has ended (or, in an R session, once run() returns), the run reads as ended
            # all the same (datastore/flow.py): the advice can be followed.
            then = "it reads as successful." if successful else "resume the run."
            typed = isinstance(exc, (DiskFull, FileTooLarge))
            error = type(exc) if typed else DatastoreError
            raise error(f"Run {self.ds.flow}/{self.run_id} {'succeeded' if successful else 'failed'}, "
                        f"but its status could not be stored: {exc.message.rstrip('.') if typed else exc}.",
                        [("i", f"Free some space in the datastore, then {then}")]) from None
        finally:
            self.reaper.done()

    def _watch(self, event: str, what: Any) -> None:
        """A launcher's news for the reaper: a fork, a worker R's process group, or a Batch job."""
        {"forked": self.reaper.fork_started, "reaped": self.reaper.fork_ended,
         "started": self.reaper.group_started, "ended": self.reaper.group_ended,
         "submitted": self.reaper.job_submitted, "finished": self.reaper.job_finished}[event](what)

    # -- scheduling ------------------------------------------------------------------------------

    def _ended(self, outcome: AttemptOutcome) -> None:
        if outcome.decision == "succeeded":
            self._finished(outcome.spec, outcome.record)
        elif outcome.next is not None:  # a retry, or the catch's fallback attempt: before anything else
            self.queue.appendleft(outcome.next)
            self.console.queued(outcome.next.step)
        elif not self.failed:
            self.failed, self.failed_record = outcome.spec, outcome.record

    def _enqueue(self, step: str, input_paths: list[str], split_index: int | None) -> None:
        key = (step, tuple(input_paths), split_index)
        origin = self.origin_tasks.get(key)
        if origin is not None:
            task_id, record = origin
            self._reuse(step, task_id, record, input_paths)
            return
        spec = tasks.AttemptSpec(self.run_id, step, str(self.next_task_id), input_paths, split_index)
        self.next_task_id += 1
        self.queue.append(spec)
        self.console.queued(step)

    def _finished(self, spec: tasks.AttemptSpec, record: dict[str, Any]) -> None:
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

    def _arrive_at_join(self, join: str, spec: tasks.AttemptSpec, record: dict[str, Any]) -> None:
        frame = record["split_stack"][-1]  # the split this join closes
        key = (join, frame["task_id"])
        arrived = self.join_inputs.setdefault(key, {})
        arrived[frame["index"]] = spec.pathspec
        if len(arrived) == frame["num_splits"]:
            del self.join_inputs[key]
            split = self.graph[frame["step"]]
            order = sorted(arrived) if split.is_foreach else [s for s in split.next if s in arrived]
            self._enqueue(join, [arrived[i] for i in order], None)

    def _say(self, attempt: Attempt, kind: str, text: str) -> None:
        self.console.task_line(attempt.spec.pathspec, attempt.where, attempt.spec.step, kind, text)

    # -- resume ----------------------------------------------------------------------------------

    def _origin_tasks(self) -> dict[tuple, tuple[str, dict[str, Any]]]:
        """Successful tasks of the origin run that resume may reuse, keyed like ``_enqueue``'s calls. A task
        whose artifacts are not intact in the datastore is not reused: it runs again and stores them anew."""
        assert self.clone is not None
        origin, source = self.clone.origin_run_id, self.clone.origin
        found: dict[tuple, tuple[str, dict[str, Any]]] = {}
        intact: dict[str, bool] = {}
        for step in self.clone.reuse_before:
            for task_id in source.task_ids(origin, step):
                record = source.task_record(origin, step, task_id)
                if not (record and record.get("successful")):
                    continue
                damaged = [sha for sha in record["artifacts"].values()
                           if not intact.setdefault(sha, source.blob_intact(sha))]
                if damaged:
                    self.console.line(f"[{origin}/{step}/{task_id}] Not reused: its artifact "
                              f"{source.storage.root}/{source.blob_key(damaged[0])} is damaged; the task runs again.")
                    continue
                inputs = tuple(p.replace(f"{origin}/", f"{self.run_id}/", 1) for p in record["input_paths"])
                split = tasks.split_index_of(self.graph, step, record)
                found[(step, inputs, split)] = (task_id, record)
                if task_id.isdigit():
                    self.next_task_id = max(self.next_task_id, int(task_id) + 1)
        return found

    def _reuse(self, step: str, task_id: str, record: dict[str, Any], input_paths: list[str]) -> None:
        """Copy a finished task of the origin run into this run; from another datastore (a production run
        resumed locally), its artifacts come along."""
        origin, source = self.clone.origin_run_id, self.clone.origin
        if source.storage.root != self.ds.storage.root:
            for sha in record["artifacts"].values():
                self.ds.save_blob_file(source.blob_path(sha))
        copied = dict(record, input_paths=input_paths, cloned_from=f"{origin}/{step}/{task_id}")
        for stream in ("stdout", "stderr"):  # the clone keeps what the task printed
            log = source.read_log(origin, step, task_id, record["attempt"], stream)
            if log:
                self.ds.write_log(self.run_id, step, task_id, record["attempt"], stream, log.encode())
        self.ds.write_attempt(self.run_id, step, task_id, record["attempt"], copied)
        self.console.line(f"[{self.run_id}/{step}/{task_id}] Cloned from run {origin}.")
        self._finished(tasks.AttemptSpec(self.run_id, step, task_id, input_paths), copied)
