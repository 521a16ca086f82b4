"""The environment an AWS Batch job of a flow runs with: the one table of its variables.

Four parties set them: the job definition (``step-functions create`` and ``run --with batch`` register
it), the state machine (each Task state's ContainerOverrides), a local run that submits the job itself
(``run --with batch``), and AWS Batch. The job's entry (aws/batch/task.py) reads them. Every producer
names its variables from here, ``tests/python/test_job_environment.py`` checks that each sets only its
own, and inst/container/README.md shows this table.
"""
from __future__ import annotations

JOB_DEFINITION = "job definition"
STATE_MACHINE = "state machine"
LOCAL_RUN = "local run"
AWS_BATCH = "AWS Batch"

FLOW_NAME = "METAFLOW_FLOW_NAME"
DEFAULT_DATASTORE = "METAFLOW_DEFAULT_DATASTORE"
DATASTORE_ROOT = "METAFLOW_DATASTORE_SYSROOT_S3"
DYNAMO_TABLE = "METAFLOW_SFN_DYNAMO_DB_TABLE"
BATCH_ATTEMPTS = "METAFLOW_BATCH_ATTEMPTS"
REGION = "AWS_DEFAULT_REGION"
STEP = "METAFLOW_STEP"
RUN_ID = "METAFLOW_RUN_ID"
SPLIT_PATH = "METAFLOW_SPLIT_PATH"
CODE_URL = "METAFLOW_CODE_URL"
CODE_SHA = "METAFLOW_CODE_SHA"
PARAMETERS = "METAFLOW_PARAMETERS"
FOREACH_MODE = "METAFLOW_FOREACH_MODE"
MAX_NUM_SPLITS = "METAFLOW_MAX_NUM_SPLITS"
FOREACH_ITEMS_KEY = "METAFLOW_FOREACH_ITEMS_KEY"
TASK_ID = "METAFLOW_TASK_ID"
INPUT_PATHS = "METAFLOW_INPUT_PATHS"
SPLIT_INDEX = "METAFLOW_SPLIT_INDEX"
RETRY_COUNT = "METAFLOW_RETRY_COUNT"
CAUGHT = "METAFLOW_CAUGHT"
JOB_ID = "AWS_BATCH_JOB_ID"
JOB_ATTEMPT = "AWS_BATCH_JOB_ATTEMPT"
ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"

# name -> (who sets it, what it holds)
TABLE: dict[str, tuple[tuple[str, ...], str]] = {
    FLOW_NAME: ((JOB_DEFINITION,), "the flow's name"),
    DEFAULT_DATASTORE: ((JOB_DEFINITION,), "`s3`"),
    DATASTORE_ROOT: ((JOB_DEFINITION,), "the deployment's S3 root, where the task's artifacts and records go"),
    DYNAMO_TABLE: ((JOB_DEFINITION,), "the DynamoDB table where a foreach task publishes its width (Step Functions)"),
    BATCH_ATTEMPTS: ((JOB_DEFINITION,), "the step's attempts (retry decorator + 1); the last failed attempt "
                                        "marks the run failed"),
    REGION: ((JOB_DEFINITION,), "the deployment's region, for the job's AWS clients"),
    STEP: ((STATE_MACHINE, LOCAL_RUN), "the step's name"),
    RUN_ID: ((STATE_MACHINE, LOCAL_RUN), "the run id: the execution's name, or the local run's id"),
    SPLIT_PATH: ((STATE_MACHINE,), "foreach indices, e.g. `3` or `3-0` (empty outside a foreach; an array child's "
                                   "last index is `+offset`)"),
    CODE_URL: ((STATE_MACHINE, LOCAL_RUN), "`s3://…/<Flow>/_code/<sha>.tgz`, the code package"),
    CODE_SHA: ((STATE_MACHINE, LOCAL_RUN), "that package's SHA-256"),
    PARAMETERS: ((STATE_MACHINE,), "the execution's `Parameters` JSON (the `start` step only)"),
    FOREACH_MODE: ((STATE_MACHINE,), "how a foreach step's items reach the state machine: `inline`, `array` or "
                                     "`distributed`"),
    MAX_NUM_SPLITS: ((STATE_MACHINE,), "the most items a foreach step may have in this deployment"),
    FOREACH_ITEMS_KEY: ((STATE_MACHINE,), "where a foreach step of a distributed Map writes its items"),
    TASK_ID: ((LOCAL_RUN,), "the task id the local run chose"),
    INPUT_PATHS: ((LOCAL_RUN,), "the parents' task ids, compactly (`body/3-102;other/9`)"),
    SPLIT_INDEX: ((LOCAL_RUN,), "the task's foreach index (empty outside a foreach)"),
    RETRY_COUNT: ((STATE_MACHINE, LOCAL_RUN), "the attempt's number (0 for the first), where the state machine "
                                              "retries a step that waits between retries, or a local run decides"),
    CAUGHT: ((LOCAL_RUN,), "the error the fallback attempt of decorator(\"catch\") records"),
    JOB_ID: ((AWS_BATCH,), "the job's id, recorded with the task"),
    JOB_ATTEMPT: ((AWS_BATCH,), "Batch's attempt number (1 for the first): a Step Functions task's retry count "
                                "unless METAFLOW_RETRY_COUNT is set"),
    ARRAY_INDEX: ((AWS_BATCH,), "an array child's index"),
}


def set_by(party: str) -> frozenset[str]:
    """The variables ``party`` may set."""
    return frozenset(name for name, (parties, _) in TABLE.items() if party in parties)


def overrides(values: dict[str, str]) -> list[dict[str, str]]:
    """``{name: value}`` as Batch's ``environment`` list (SubmitJob's containerOverrides, a job definition)."""
    return [{"name": name, "value": value} for name, value in values.items()]
