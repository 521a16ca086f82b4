"""``python -m metaflow_r.aws.batch.terminate JOB_ID...``: end the Batch jobs of a local run that died.

The local run's reaper (runtime/reaper.py) runs this command, which the run's Batch launcher named, with
the ids of the jobs still going; TerminateJob also cancels a job that has not started yet.
"""
from __future__ import annotations

import sys

from metaflow_r.aws.errors import call
from metaflow_r.aws.session import client

JOB_STOPPED = "Stopped: the process running the local run that submitted it ended (killed, or its terminal closed)."


def terminate(job_ids: list[str]) -> int:
    try:
        batch = client("batch")
        for job_id in job_ids:
            call(f"stopping Batch job {job_id}", batch.terminate_job, jobId=job_id, reason=JOB_STOPPED)
    except Exception as exc:  # noqa: BLE001 - said on stderr; the reaper still marks the run failed
        print(f"metaflow-r reaper: Batch jobs {', '.join(job_ids)} could not be stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(terminate(sys.argv[1:]))
