"""The attempt engine: one task attempt's whole life, the same for a local task and for a Batch job.

    prepare  the context (task.prepare), written for R as the protocol's context document
    launch   through a launcher (events.py): a fork of the run's R locally, a plain process on Batch
    capture  stdout and stderr apart, line by line: echoed as they come, stored as the attempt's two logs
    timeout  decorator("timeout"): the attempt is killed when its time is up
    end      commit (task.commit) or record the failure with R's task error document
    decide   what comes next: a retry, the fallback attempt of decorator("catch"), or the step failed

The callers only schedule: the local runtime (local_runtime.py) walks the graph and keeps the join barrier;
the Batch entry (aws/batch/task.py) runs the one attempt its job is for. Neither knows how an attempt runs.

Where an attempt is prepared and committed is its step's mode (``job_steps`` are "job", the others "here"):
    "here"  the task runs beside the engine, which prepares its context and commits what it leaves (a
            local task; the task inside a Batch job)
    "job"   the attempt is a Batch job of a local run (``run --with batch``) that runs this same engine in
            "here" mode and commits to S3 itself; this engine only launches it, passes its log lines on, and
            reads back the record it committed (or, if the job left none, records why), then decides.
            Every step with ``--with batch``; with decorator("batch"), only the steps carrying it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Collection, Literal, Mapping

from metaflow_r.core import protocol
from metaflow_r.core.errors import DatastoreError, DiskFull, FileTooLarge, ProtocolError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.write_failures import SCRATCH, diagnose, failed_write, writing
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.runtime import task as tasks
from metaflow_r.runtime.events import AttemptLauncher, Exited, Launched, Output, Started

Decision = Literal["succeeded", "retry", "catch", "failed"]
# echo(attempt, kind, text): kind is "stdout" or "stderr" for the task's own lines, "status" for the engine's.
Echo = Callable[["Attempt", str, str], None]


@dataclass(eq=False)
class Attempt:
    spec: tasks.AttemptSpec
    prepared: tasks.Prepared | None  # None in "job" mode: the job prepares its own context
    workdir: str
    started_at: float
    timeout: float | None
    where: str = ""  # what runs it, for the console: "pid 1234", "job 4f2a9c1e"
    running_since: float | None = None  # when R began the task: its timeout counts from here
    timed_out: bool = False
    stopped: str | None = None  # why it was stopped from outside (its Batch job got SIGTERM)
    log_error: str | None = None  # why the attempt's output could not be kept, e.g. a full disk
    # A full disk or the file size limit, met by the engine writing for the attempt or diagnosed after it
    # (core/write_failures.py): how the attempt's failure is told.
    write_failure: DiskFull | FileTooLarge | None = None
    logs: dict[str, Any] = field(default_factory=dict)  # stream -> open file in workdir

    @property
    def deadline(self) -> float | None:
        return self.running_since + self.timeout if self.timeout and self.running_since else None


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended and what comes next: ``next`` is the attempt to run for a retry or a catch."""

    attempt: Attempt
    decision: Decision
    record: dict[str, Any]
    code: int
    next: tasks.AttemptSpec | None = None

    @property
    def spec(self) -> tasks.AttemptSpec:
        return self.attempt.spec


class AttemptEngine:
    def __init__(self, graph: FlowGraph, ds: FlowDatastore, run_record: dict[str, Any], launcher: AttemptLauncher, *,
                 retries: Mapping[str, int], echo: Echo, scratch: str, batch_job_id: str | None = None,
                 job_steps: Collection[str] = ()) -> None:
        self.graph = graph
        self.ds = ds
        self.run_record = run_record
        self.launcher = launcher
        self.retries = retries
        self.echo = echo
        self.scratch = scratch
        self.batch_job_id = batch_job_id
        self.job_steps = frozenset(job_steps)
        self.running: list[Attempt] = []

    # -- the attempt's life ----------------------------------------------------------------------

    def start(self, spec: tasks.AttemptSpec, known: dict[str, dict[str, Any]] | None = None) -> Attempt:
        """Prepare and launch one attempt; ``known`` holds parents' records the caller already has."""
        prepared = context_file = None
        here = spec.step not in self.job_steps
        with writing(f"the task directory of step {spec.step!r}", self.scratch, SCRATCH):
            workdir = tempfile.mkdtemp(prefix=f"{spec.step}-{spec.task_id}-{spec.retry_count}-", dir=self.scratch)
        if here:
            prepared = tasks.prepare(self.graph, self.ds, spec, self.run_record, workdir, known=known)
            context_file = os.path.join(workdir, protocol.CONTEXT_FILE)
        attempt = Attempt(spec, prepared, workdir, time.time(), self.graph[spec.step].spec.timeout_seconds())
        if here:
            with writing(f"the task directory of step {spec.step!r}", workdir, SCRATCH):
                protocol.write("context", prepared.context, context_file)
                attempt.logs = {s: open(os.path.join(workdir, f"{s}.log"), "wb") for s in ("stdout", "stderr")}
        try:
            where = self.launcher.launch(attempt, context_file)
        except BaseException:
            self._discard(attempt)
            raise
        self.running.append(attempt)
        if where is not None:
            self._launched(attempt, where)
        return attempt

    def _launched(self, attempt: Attempt, where: str) -> None:
        attempt.where = where
        retry = attempt.spec.retry_count
        self.echo(attempt, "status", "Task is starting" + (f" (retry {retry})." if retry else "."))

    def poll(self, timeout: float) -> list[AttemptOutcome]:
        """Pass on the output that arrived within ``timeout`` seconds; returns the attempts that ended."""
        outcomes = []
        for event in self.launcher.poll(timeout):
            if isinstance(event, Launched):
                self._launched(event.attempt, event.where)
            elif isinstance(event, Output):
                self._output(event.attempt, event.stream, event.line)
            elif isinstance(event, Started):
                event.attempt.running_since = time.time()
            elif isinstance(event, Exited):
                end = self._read_back if event.attempt.spec.step in self.job_steps else self._end
                outcomes.append(end(event.attempt, event.code, event.why))
        now = time.time()
        for attempt in self.running:
            if attempt.deadline and now > attempt.deadline and not attempt.timed_out:
                attempt.timed_out = True
                self.launcher.kill(attempt)  # its exit arrives as an event, then it ends as timed out
        return outcomes

    def run(self, spec: tasks.AttemptSpec) -> AttemptOutcome:
        """One attempt from start to end (a Batch job runs exactly one, or two with a catch)."""
        attempt = self.start(spec)
        while True:
            for outcome in self.poll(0.2):
                if outcome.attempt is attempt:
                    return outcome

    def stop_recording(self, why: str) -> list[AttemptOutcome]:
        """Kill every attempt still running and record each as failed, its logs so far kept: a Batch job that
        AWS stops (its timeout, TerminateJob, a reclaimed instance) still says why in the datastore."""
        outcomes = []
        for attempt in list(self.running):
            self.launcher.kill(attempt)
            attempt.stopped = why
            outcomes.append(self._end(attempt, 143))  # 128 + SIGTERM, as a shell reports it
        return outcomes

    def stop_all(self, why: str) -> None:
        """Kill every attempt still running; none of them leaves a record."""
        for attempt in self.running:
            self.launcher.kill(attempt)
            self.echo(attempt, "status", why)
            self._discard(attempt)
        self.running.clear()

    def _output(self, attempt: Attempt, stream: str, line: bytes) -> None:
        if attempt.log_error is None and stream in attempt.logs:
            try:
                attempt.logs[stream].write(line + b"\n")
            except OSError as exc:
                attempt.log_error = self._failed(attempt, "its output could not be written", failed_write(
                    exc, f"the output of step {attempt.spec.step!r}", attempt.logs[stream].name, SCRATCH) or exc)
        self.echo(attempt, stream, line.decode("utf-8", errors="replace"))

    # -- ending --------------------------------------------------------------------------------------

    def _end(self, attempt: Attempt, code: int, why: str | None = None) -> AttemptOutcome:
        self.running.remove(attempt)
        spec = attempt.spec
        assert attempt.prepared is not None
        try:
            reason = self._save_logs(attempt) or attempt.log_error
            if code == 0 and reason is None:
                try:
                    record = tasks.commit(self.ds, spec, attempt.prepared, attempt.started_at, self.batch_job_id)
                except (OSError, DatastoreError, ProtocolError) as exc:  # e.g. a full disk: the task failed
                    reason = self._failed(attempt, "its artifacts could not be stored", exc)
                else:
                    self.echo(attempt, "status", "Task finished successfully.")
                    return AttemptOutcome(attempt, "succeeded", record, 0)
            code = code or 1
            if reason is None and (failure := self._diagnosed(attempt)):
                reason = self._failed(attempt, "", failure)
            if reason is None:
                reason = attempt.stopped or (f"timed out after {attempt.timeout:g} s" if attempt.timed_out
                                             else f"exit status {code}")
            error = self._task_error(attempt, reason)
            try:
                record = tasks.record_failure(self.ds, spec, attempt.prepared, attempt.started_at, reason, error,
                                              self.batch_job_id)
            except (OSError, DatastoreError) as exc:  # the decision stands; only the record is lost
                self.echo(attempt, "status", f"Its failure could not be recorded: {exc}")
                record = {}
            return self._decide(attempt, record, code, reason, error)
        finally:
            self._discard(attempt)

    def _read_back(self, attempt: Attempt, code: int, why: str | None) -> AttemptOutcome:
        """A Batch job's attempt ("job" mode): its record as the job committed it. A job that left none (its
        image could not be pulled, it was stopped, it died) gets a failure record saying how it ended."""
        self.running.remove(attempt)
        spec = attempt.spec
        try:
            record = self.ds.readable(self.ds.attempt_record, spec.run_id, spec.step, spec.task_id, spec.retry_count)
            if record is None:
                ended = why or f"exit status {code}"
                reason = f"its Batch job ended without recording the attempt ({ended})"
                error = tasks.task_error("metaflow_batch_job_error", f"The Batch job of step '{spec.step}' ended "
                                                                     f"without running the task: {ended}.")
                try:
                    record = tasks.record_failure(self.ds, spec, tasks.Prepared({"split_stack": []}, {}),
                                                  attempt.started_at, reason, error)
                except (OSError, DatastoreError) as exc:
                    self.echo(attempt, "status", f"Its failure could not be recorded: {exc}")
                    record = {"error": reason, "exception": error}
            if record.get("successful"):
                self.echo(attempt, "status", "Task finished successfully.")
                return AttemptOutcome(attempt, "succeeded", record, 0)
            error = record.get("exception") or tasks.task_error("metaflow_task_failure", "The task failed.")
            return self._decide(attempt, record, code or 1, record.get("error") or f"exit status {code or 1}",
                                error)
        finally:
            self._discard(attempt)

    def _decide(self, attempt: Attempt, record: dict[str, Any], code: int, reason: str,
                error: dict[str, Any]) -> AttemptOutcome:
        spec = attempt.spec
        if spec.retry_count < self.retries.get(spec.step, 0) and spec.caught is None:
            self.echo(attempt, "status", f"Task failed ({reason}); retrying.")
            return AttemptOutcome(attempt, "retry", record, code, replace(spec, retry_count=spec.retry_count + 1))
        if self.graph[spec.step].spec.decorator("catch") is not None and spec.caught is None:
            self.echo(attempt, "status", f"Task failed ({reason}); decorator(\"catch\") records the error and the "
                                         "run goes on.")
            return AttemptOutcome(attempt, "catch", record, code, replace(spec, retry_count=spec.retry_count + 1,
                                                                   caught=error))
        self.echo(attempt, "status", f"Task failed ({reason}).")
        return AttemptOutcome(attempt, "failed", record, code)

    def _task_error(self, attempt: Attempt, reason: str) -> dict[str, Any]:
        """Why the attempt failed: R's own task error document when it wrote one."""
        if attempt.stopped:
            return tasks.task_error("metaflow_job_stopped", f"Step '{attempt.spec.step}' was stopped: "
                                                            f"{attempt.stopped}.")
        if attempt.timed_out:
            return tasks.task_error("metaflow_timeout", f"Step '{attempt.spec.step}' timed out after "
                                                         f"{attempt.timeout:g} s.")
        if attempt.write_failure is not None:
            return tasks.task_error(attempt.write_failure.r_class, str(attempt.write_failure))
        assert attempt.prepared is not None
        path = os.path.join(attempt.prepared.output_dir, protocol.TASK_ERROR_FILE)
        if os.path.exists(path):
            try:
                return protocol.read("task_error", path)
            except ProtocolError as exc:
                return tasks.task_error("metaflow_protocol_error", str(exc))
        return tasks.task_error("metaflow_task_failure", f"The task failed: {reason}.")

    def _save_logs(self, attempt: Attempt) -> str | None:
        """Store the attempt's two logs; the reason the attempt failed if they could not be stored."""
        spec = attempt.spec
        try:
            for stream, handle in attempt.logs.items():
                with writing(f"the output of step {spec.step!r}", handle.name, SCRATCH):
                    handle.close()
                if os.path.getsize(handle.name):
                    self.ds.write_log_file(spec.run_id, spec.step, spec.task_id, spec.retry_count, stream,
                                           handle.name)
        except (OSError, DiskFull, FileTooLarge) as exc:
            return self._failed(attempt, "its log could not be stored", exc)
        return None

    @staticmethod
    def _failed(attempt: Attempt, doing: str, exc: Exception) -> str:
        """The reason an attempt failed when the engine could not write for it: a full disk or the file size
        limit is told as itself (and becomes the attempt's error); anything else follows what it was doing."""
        if isinstance(exc, (DiskFull, FileTooLarge)):
            attempt.write_failure = attempt.write_failure or exc
            return exc.message.rstrip(".")
        return f"{doing}: {exc}"

    @staticmethod
    def _diagnosed(attempt: Attempt) -> DiskFull | FileTooLarge | None:
        """A task that left no error document of its own (SIGXFSZ killed it, or the disk was too full to
        write one): whether the file size limit or a full disk is why, from what it left in its directory."""
        if attempt.stopped or attempt.timed_out or attempt.prepared is None:
            return None
        output_dir = attempt.prepared.output_dir
        try:
            protocol.read("task_error", os.path.join(output_dir, protocol.TASK_ERROR_FILE))
            return None  # R told why
        except (OSError, ProtocolError):
            return diagnose(output_dir, f"step {attempt.spec.step!r}")

    @staticmethod
    def _discard(attempt: Attempt) -> None:
        for handle in attempt.logs.values():
            handle.close()
        shutil.rmtree(attempt.workdir, ignore_errors=True)
