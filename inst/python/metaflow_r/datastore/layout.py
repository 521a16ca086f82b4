"""The datastore's layout: every key the backend, its Batch jobs and its state machines read or write,
relative to the storage root (a local directory, or ``s3://bucket/prefix``).

Names below a flow or a run that begin with ``_`` are never runs, steps or tasks: listings skip them.
"""
from __future__ import annotations

import re

from metaflow_r.core.errors import ConfigurationError

DATASTORE_DIR = ".metaflow"  # the local datastore's directory, beside the script (or in a parent)

BLOB_KEY = "{flow}/data/{sha2}/{sha}"  # an artifact, by content (sha2: the sha's first two characters)
RUN_KEY = "{flow}/{run_id}"  # claimed as a directory (local) or a marker object (S3) when a run starts
RUN_RECORD_KEY = "{flow}/{run_id}/_run.json"  # user, tags, parameters, start time, the flow's spec
# Where a run's end is recorded, by its runtime or its last task; the first outcome written stands.
RUN_STATUS_KEY = "{flow}/{run_id}/_status.json"
# The identity of a local run's reaper (runtime/reaper.py), which records the run's end if its runtime dies.
RUN_REAPER_KEY = "{flow}/{run_id}/_reaper.json"
# Where a failed Step Functions execution records the run's end (compile.py), unconditionally: readers
# consult it only for a run whose tasks recorded none in RUN_STATUS_KEY, so a task's own reason wins.
EXECUTION_STATUS_KEY = "{flow}/{run_id}/_execution_status.json"
RESUME_CLAIM_KEY = "{flow}/{run_id}/_resumed_by.json"  # the one resume of this run in progress
REPORT_KEY = "{flow}/{run_id}/_report.html"  # a local run's report
ATTEMPT_PREFIX = "{flow}/{run_id}/{step}/{task_id}/{attempt}"  # DONE.json, stdout.log, stderr.log
DEPLOYMENT_KEY = "{flow}/_deployment.json"  # production token, owner, namespace (step-functions create)
CODE_PACKAGE_KEY = "{flow}/_code/{sha}.tgz"  # what Batch jobs run
# The items a DISTRIBUTED Map reads (the foreach task writes them), and where the Map writes its results.
FOREACH_ITEMS_KEY = "{flow}/{run_id}/_foreach/{step}/{task_id}.json"
MAP_RESULTS_PREFIX = "{flow}/_map_results"

# What a key holds, in words for a message about it: the first suffix (or, for "/data/", part) that matches.
_DESCRIPTIONS = (("/_run.json", "the run's record"), ("/_status.json", "the run's status"),
                 ("/_reaper.json", "the run's reaper record"), ("/_resumed_by.json", "the run's resume claim"),
                 ("/_report.html", "the run's report"), ("/DONE.json", "a task's attempt record"),
                 (".log", "a task's log"), ("/_deployment.json", "the flow's deployment record"),
                 ("/data/", "an artifact"))


def describe(key: str) -> str:
    """What ``key`` holds, for a message: "the run's record", "an artifact", ..."""
    for part, words in _DESCRIPTIONS:
        if key.endswith(part) or (part == "/data/" and part in key):
            return words
    return "the run's directory" if key.count("/") == 1 else "a file"


def split_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix without slashes at either end) of ``s3://bucket/prefix``."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", url or "")
    if not match:
        raise ConfigurationError(f"{url!r} is not an S3 location.",
                                 [("i", "Set METAFLOW_DATASTORE_SYSROOT_S3 to s3://bucket/prefix.")])
    return match.group(1), match.group(2).strip("/")
