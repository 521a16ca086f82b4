"""A Step Functions task's log: the CloudWatch stream of the Batch job that ran it."""
from __future__ import annotations

from typing import Any

import click

from metaflow_r.datastore.flow import FlowDatastore, storage_for
from metaflow_r.core.errors import UsageError

LOG_GROUP = "/aws/batch/job"


def print_task_logs(invocation: Any, session: Any, pathspec: str) -> None:
    parts = pathspec.strip("/").split("/")
    if len(parts) not in (2, 3):
        raise UsageError(f"{pathspec!r} is not RUN_ID/STEP or RUN_ID/STEP/TASK_ID.",
                         [("i", "For example: step-functions logs sfn-1234/start")])
    name = invocation.graph().spec.name
    ds = FlowDatastore(storage_for("s3"), name)
    run_id, step = parts[0], parts[1]
    task_ids = [parts[2]] if len(parts) == 3 else ds.task_ids(run_id, step)
    if not task_ids:
        raise UsageError(f"Run {name}/{run_id} has no task of step {step!r}.",
                         [("i", "List runs with: step-functions list-runs")])
    batch = session.client("batch")
    logs = session.client("logs")
    for task_id in task_ids:
        for record in reversed(list(ds.attempts(run_id, step, task_id))):
            job_id = record.get("batch_job_id")
            click.echo(f"--- {name}/{run_id}/{step}/{task_id}, attempt {record['attempt'] + 1} (job {job_id}) ---")
            if not job_id:
                continue
            jobs = batch.describe_jobs(jobs=[job_id])["jobs"]
            stream = jobs[0].get("container", {}).get("logStreamName") if jobs else None
            if not stream:
                click.echo("(no log stream)")
                continue
            for event in logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream,
                                             startFromHead=True)["events"]:
                click.echo(event["message"])
