"""A local run's attempts as AWS Batch jobs (``run --with batch``): one job per attempt.

It only starts and follows jobs; the attempt engine (attempt.py, in "job" mode) owns each attempt's life.
Each job is told its attempt (identity.py) and runs ``metaflow-r batch-task`` in the image, which
runs the task and commits it to S3. Here, the job's CloudWatch log lines come back as the task's output
while it runs, and its end as its exit status (with Batch's reason when the container never ran).

AWS is asked at a measured pace: one DescribeJobs a second for up to 100 jobs, and GetLogEvents at most
LOG_READS_PER_SECOND times a second in all, each running job in turn. The log lines of stdout and stderr
arrive together (CloudWatch keeps one stream per job); the attempt's logs in the datastore keep them apart.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from metaflow_r.aws.batch import environment as env
from metaflow_r.aws.batch.identity import job_environment
from metaflow_r.aws.batch.job_definitions import BatchJobs
from metaflow_r.aws.batch.logs import read_events
from metaflow_r.aws.errors import call, translate
from metaflow_r.aws.session import client
from metaflow_r.aws.step_functions.compile import batch_job_name
from metaflow_r.runtime.events import Event, Exited, Output

DESCRIBE_SECONDS = 1.0
DESCRIBE_MAX_JOBS = 100  # DescribeJobs takes at most 100 job ids
# CloudWatch Logs allows 10 GetLogEvents a second per account and Region (its quotas page); half of that
# leaves room for other readers, e.g. `step-functions logs` or the console.
LOG_READS_PER_SECOND = 5
LOG_SECONDS = 1.0  # a job's log is read at most this often
ENDED = ("SUCCEEDED", "FAILED")


@dataclass(eq=False)
class _Job:
    id: str
    attempt: Any
    stream: str | None = None  # its CloudWatch log stream, once Batch names it
    token: str | None = None  # where the next read of its log starts
    read_at: float = 0.0
    ended: dict[str, Any] | None = None  # its description, once it succeeded or failed


class BatchLauncher:
    """Submits, follows and stops the Batch jobs of one local run."""

    # What the reaper runs, with the ids of the jobs still going, if the run dies (runtime/reaper.py).
    cleanup_command = [sys.executable, "-m", "metaflow_r.aws.batch.terminate"]

    def __init__(self, jobs: BatchJobs, flow: str, watch: Callable[[str, str], None] | None = None,
                 session: Any = None) -> None:
        """``watch("submitted" | "finished", job_id)`` hears of each job (see reaper.py)."""
        self.batch = client("batch", patient=True, session_=session)  # throttling is waited out
        self.logs = client("logs", patient=True, session_=session)
        self.plan = jobs
        self.flow = flow
        self.watch = watch or (lambda event, job_id: None)
        self.jobs: dict[str, _Job] = {}
        self.next_describe = 0.0
        self.reads = float(LOG_READS_PER_SECOND)  # a token bucket
        self.reads_at = time.monotonic()

    def launch(self, attempt: Any, context_file: str | None) -> str:
        spec = attempt.spec
        environment = {**job_environment(spec), env.CODE_URL: self.plan.code_url, env.CODE_SHA: self.plan.package.sha}
        submitted = call(f"submitting the Batch job of {spec.pathspec}", self.batch.submit_job,
                         jobName=batch_job_name(self.flow, spec.step), jobQueue=self.plan.queues[spec.step],
                         jobDefinition=self.plan.by_step[spec.step],
                         containerOverrides={"environment": env.overrides(environment)})
        job = _Job(submitted["jobId"], attempt)
        self.jobs[job.id] = job
        self.watch("submitted", job.id)
        self.next_describe = min(self.next_describe, time.monotonic() + 0.2)  # a short job's end comes soon
        return f"job {job.id[:8]}"

    def poll(self, timeout: float) -> list[Event]:
        deadline = time.monotonic() + timeout
        if self.jobs and time.monotonic() >= self.next_describe:
            self.next_describe = time.monotonic() + DESCRIBE_SECONDS
            self._describe()
        events: list[Event] = []
        for job in self._due_for_reading():
            events += self._read(job)
        for job in [j for j in self.jobs.values() if j.ended is not None]:
            events += self._read(job, to_the_end=True)
            del self.jobs[job.id]
            self.watch("finished", job.id)
            events.append(self._exited(job))
        if not events:
            time.sleep(max(0.0, min(deadline, self.next_describe) - time.monotonic()))
        return events

    def kill(self, attempt: Any) -> None:
        for job in [j for j in self.jobs.values() if j.attempt is attempt]:
            self._terminate(job, "Stopped by the local run that submitted it.")

    def close(self) -> None:
        """Stop every job still running: the run that wanted them is over."""
        for job in list(self.jobs.values()):
            self._terminate(job, "The local run that submitted it ended.")

    # -- following jobs --------------------------------------------------------------------------

    def _describe(self) -> None:
        ids = [job_id for job_id, job in self.jobs.items() if job.ended is None]
        for first in range(0, len(ids), DESCRIBE_MAX_JOBS):
            found = call("following the run's Batch jobs", self.batch.describe_jobs,
                         jobs=ids[first:first + DESCRIBE_MAX_JOBS])["jobs"]
            for description in found:
                job = self.jobs[description["jobId"]]
                job.stream = job.stream or description.get("container", {}).get("logStreamName")
                if description["status"] in ENDED:
                    job.ended = description

    def _due_for_reading(self) -> list[_Job]:
        now = time.monotonic()
        self.reads = min(float(LOG_READS_PER_SECOND), self.reads + (now - self.reads_at) * LOG_READS_PER_SECOND)
        self.reads_at = now
        due = sorted((j for j in self.jobs.values() if j.stream and j.ended is None and now - j.read_at >= LOG_SECONDS),
                     key=lambda j: j.read_at)
        chosen = due[:int(self.reads)]
        self.reads -= len(chosen)
        return chosen

    def _read(self, job: _Job, to_the_end: bool = False) -> list[Event]:
        """The job's log lines not passed on yet (all of them at its end) as the task's output: one page per
        poll while it runs, keeping within CloudWatch's GetLogEvents quota."""
        if not job.stream:
            return []
        job.read_at = time.monotonic()
        messages, job.token = read_events(self.logs, job.stream, job.token, max_pages=None if to_the_end else 1)
        return [Output(job.attempt, "stdout", message.encode()) for message in messages]

    @staticmethod
    def _exited(job: _Job) -> Exited:
        description = job.ended or {}
        if description.get("status") == "SUCCEEDED":
            return Exited(job.attempt, 0)
        code = description.get("container", {}).get("exitCode")
        return Exited(job.attempt, code if isinstance(code, int) and code else 1,
                      f"Batch job {job.id}: {description.get('statusReason') or 'failed'}")

    def _terminate(self, job: _Job, reason: str) -> None:
        """TerminateJob also cancels a job not started yet. One that cannot be stopped is named in a warning."""
        del self.jobs[job.id]
        try:
            self.batch.terminate_job(jobId=job.id, reason=reason)
        except Exception as exc:  # noqa: BLE001 - stopping is best effort; the caller is ending anyway
            print(f"Warning: Batch job {job.id} could not be stopped: {translate('stopping it', exc)}", flush=True)
            return
        self.watch("finished", job.id)
