"""A Batch job's log: its CloudWatch stream, read page after page.

CloudWatch returns at most 1 MB or 10,000 events per GetLogEvents call, so a log is read by following
``nextForwardToken`` until it comes back unchanged (the API reference's end-of-stream signal). Both
``step-functions logs`` (a whole log) and ``run --with batch`` (a running job's new lines, a page at a time)
read through ``read_events``.
"""
from __future__ import annotations

from typing import Any, Iterator

from metaflow_r.aws.errors import call, is_missing
from metaflow_r.datastore.flow import FlowDatastore

LOG_GROUP = "/aws/batch/job"


def read_events(logs: Any, stream: str, token: str | None = None,
                max_pages: int | None = None) -> tuple[list[str], str | None]:
    """The messages of ``stream`` after ``token`` (from its head without one), up to ``max_pages`` pages
    (None: to the end), and the token to read on from. A stream not created yet has no message."""
    messages: list[str] = []
    read = 0
    while max_pages is None or read < max_pages:
        kwargs = {"nextToken": token} if token else {}
        try:
            page = call(f"reading log stream {stream}", logs.get_log_events, logGroupName=LOG_GROUP,
                        logStreamName=stream, startFromHead=True, **kwargs)
        except Exception as exc:
            if is_missing(exc):
                break  # its container has not written a line yet
            raise
        read += 1
        messages += [event["message"] for event in page["events"]]
        following = page.get("nextForwardToken")
        if following in (None, token):
            break
        token = following
    return messages, token


def job_stream(batch: Any, job_id: str) -> str | None:
    """The CloudWatch stream of Batch job ``job_id``, once Batch has named it."""
    jobs = call(f"reading Batch job {job_id}", batch.describe_jobs, jobs=[job_id])["jobs"]
    return jobs[0].get("container", {}).get("logStreamName") if jobs else None


def task_log_lines(ds: FlowDatastore, batch: Any, logs: Any, run_id: str, step: str,
                   task_ids: list[str]) -> Iterator[str]:
    """Each attempt of each task, oldest first: a heading naming its job, then its whole log."""
    for task_id in task_ids:
        for record in reversed(list(ds.attempts(run_id, step, task_id))):
            job_id = record.get("batch_job_id")
            yield f"--- {ds.flow}/{run_id}/{step}/{task_id}, attempt {record['attempt'] + 1} (job {job_id}) ---"
            if not job_id:
                continue
            stream = job_stream(batch, job_id)
            if not stream:
                yield "(no log stream)"
                continue
            yield from read_events(logs, stream)[0]
