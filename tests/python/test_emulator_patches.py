"""The emulator's workarounds for moto (moto_patches.py, moto_scale.py): applied only to the moto versions that need
them, and each one necessary (the defect shows without it) and sufficient (the execution works with it)."""
from __future__ import annotations

import json
import subprocess
import sys

import moto
import pytest

from metaflow_r.emulator.moto_patches import moto_needs_patches

# A Step Functions execution of one Batch task in moto, in a fresh interpreter so patches do not leak.
SCENARIO = r"""
import json, os, sys, time
os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
import boto3
from moto import mock_aws
if sys.argv[1] == "patched":
    from metaflow_r.emulator.moto_patches import patch_moto
    patch_moto()
config = {"stepfunctions": {"execute_state_machine": True}, "batch": {"use_docker": False}}
with mock_aws(config=config):
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = boto3.client("batch")
    env = batch.create_compute_environment(computeEnvironmentName="env-1", type="UNMANAGED", serviceRole=role)
    batch.create_job_queue(jobQueueName="queue-1", priority=1, state="ENABLED",
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "env-1"}])
    batch.register_job_definition(jobDefinitionName="def-1", type="container",
                                  containerProperties={"image": "i", "command": ["true"], "vcpus": 1, "memory": 128})
    definition = {"StartAt": "t", "States": {"t": {"Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync",
                  "Parameters": {"JobName": "j", "JobDefinition": "def-1", "JobQueue": "queue-1"}, "End": True}}}
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="machine", definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
    started = sfn.start_execution(stateMachineArn=arn)  # no name, on purpose
    for _ in range(100):
        described = sfn.describe_execution(executionArn=started["executionArn"])
        if described["status"] != "RUNNING":
            break
        time.sleep(0.1)
    print(json.dumps({"status": described["status"], "name": described.get("name"),
                      "cause": described.get("cause", "")}))
"""


def run_scenario(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCENARIO, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_patches_are_applied_only_to_the_moto_versions_known_to_need_them():
    assert moto_needs_patches() == moto.__version__.startswith("5.2.")


@pytest.mark.skipif(not moto_needs_patches(), reason=f"moto {moto.__version__} needs no workaround")
def test_without_the_workaround_moto_fails_batch_tasks_and_names_nothing():
    outcome = run_scenario("plain")
    # If this starts passing, moto fixed its defects: drop the workaround and this test.
    assert outcome["status"] == "FAILED" and "JobName" in outcome["cause"]
    assert outcome["name"] in (None, "None")


def test_with_the_workaround_the_batch_task_succeeds_and_the_execution_has_a_name():
    outcome = run_scenario("patched")
    assert outcome["status"] == "SUCCEEDED", outcome
    assert outcome["name"] not in (None, "None", "")


# -- wide foreaches (moto_scale.py): each scenario runs with the other workarounds ("base") and with all ("scaled").

SCALE_PRELUDE = r"""
import json, os, sys, threading, time
os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
import boto3
from moto import mock_aws
from metaflow_r.emulator import moto_patches as emulator
if sys.argv[1] == "base":
    emulator.apply_scale_patches = lambda: None
emulator.patch_moto()
crashed = []
threading.excepthook = lambda hook: crashed.append(hook.exc_type.__name__)
config = {"stepfunctions": {"execute_state_machine": True}, "batch": {"use_docker": False}}

def batch_queue(command):  # queue-1, and job definition def-1 running command
    batch = boto3.client("batch")
    role = boto3.client("iam").create_role(RoleName="b", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch.create_compute_environment(computeEnvironmentName="env-1", type="UNMANAGED", serviceRole=role)
    batch.create_job_queue(jobQueueName="queue-1", priority=1, state="ENABLED",
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "env-1"}])
    batch.register_job_definition(jobDefinitionName="def-1", type="container", containerProperties={
        "image": "i", "command": command, "vcpus": 1, "memory": 128})
    return batch

def execute(definition, execution_input, seconds=60):
    sfn = boto3.client("stepfunctions")
    role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    arn = sfn.create_state_machine(name="m", definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
    started = sfn.start_execution(stateMachineArn=arn, name="r1", input=json.dumps(execution_input))["executionArn"]
    deadline = time.time() + seconds
    while time.time() < deadline and not crashed:
        described = sfn.describe_execution(executionArn=started)
        if described["status"] != "RUNNING":
            return {"status": described["status"], "error": described.get("error"), "crashed": crashed}
        time.sleep(0.1)
    return {"status": "RUNNING", "error": None, "crashed": crashed}
"""

WIDE_INLINE_MAP = SCALE_PRELUDE + r"""
# A worker that gets more items than the recursion limit allows frames; Python's default limit (1,000) is
# lowered to 200 so that 300 items show it in a second rather than 1,100 items in twenty.
sys.setrecursionlimit(200)
with mock_aws(config=config):
    definition = {"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 1, "ItemsPath": "$.items",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "P",
                          "States": {"P": {"Type": "Pass", "End": True}}}, "ResultPath": None, "End": True}}}
    print(json.dumps(execute(definition, {"items": list(range(300))})))
"""

FAILING_CHILD = SCALE_PRELUDE + r"""
with mock_aws(config=config):
    boto3.client("s3").create_bucket(Bucket="items-bucket")
    boto3.client("s3").put_object(Bucket="items-bucket", Key="items.json", Body=json.dumps(list(range(4))))
    definition = {"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 2,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                       "Parameters": {"Bucket": "items-bucket", "Key": "items.json"}},
        "ToleratedFailureCount": int(sys.argv[2]),
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "C",
            "States": {"C": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "F"}],
                             "Default": "P"},
                       "F": {"Type": "Fail", "Error": "Boom"}, "P": {"Type": "Pass", "End": True}}},
        "ResultPath": None, "End": True}}}
    print(json.dumps(execute(definition, {})))
"""

ARRAY_JOB = SCALE_PRELUDE + r"""
with mock_aws(config=config):
    # Each child waits for the gate (at most 5 s, so that children run inside SubmitJob end too), says its
    # index and fails if it is the one named on the command line.
    gate = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gate-{os.getpid()}")
    script = ('for i in $(seq 50); do [ -e "$1" ] && break; sleep 0.1; done; echo "index=$AWS_BATCH_JOB_ARRAY_INDEX"; '
              'test "$AWS_BATCH_JOB_ARRAY_INDEX" != "$0"')
    batch = batch_queue(["sh", "-c", script, sys.argv[2], gate])
    submitted = batch.submit_job(jobName="j", jobDefinition="def-1", jobQueue="queue-1", arrayProperties={"size": 3})
    # What the children said by the time SubmitJob returned: nothing, unless they ran inside it.
    said_at_return = [e["message"] for s in boto3.client("logs").describe_log_streams(
        logGroupName="/aws/batch/job").get("logStreams", []) for e in boto3.client("logs").get_log_events(
        logGroupName="/aws/batch/job", logStreamName=s["logStreamName"])["events"]]
    open(gate, "w").close()
    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync",
        "Parameters": {"JobName": "j", "JobDefinition": "def-1", "JobQueue": "queue-1", "ArrayProperties": {"Size": 3}},
        "ResultPath": None, "End": True}}}
    outcome = execute(definition, {})
    for _ in range(100):  # the first array, submitted directly, ends too
        first = batch.describe_jobs(jobs=[submitted["jobId"]])["jobs"][0]
        if first["status"] in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(0.1)
    logs = boto3.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/batch/job")["logStreams"]
    said = sorted(e["message"] for s in streams for e in logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=s["logStreamName"])["events"])
    os.remove(gate)
    print(json.dumps({**outcome, "said_at_return": said_at_return, "first_array": first["status"], "said": said}))
"""


def run_scale_scenario(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not moto_needs_patches(), reason=f"moto {moto.__version__} needs no workaround")
def test_without_the_patch_a_wide_inline_map_never_ends():
    outcome = run_scale_scenario(WIDE_INLINE_MAP, "base")
    assert outcome["status"] == "RUNNING" and "RecursionError" in outcome["crashed"]


def test_a_map_worker_gets_any_number_of_items():
    assert run_scale_scenario(WIDE_INLINE_MAP, "scaled") == {"status": "SUCCEEDED", "error": None, "crashed": []}


@pytest.mark.skipif(not moto_needs_patches(), reason=f"moto {moto.__version__} needs no workaround")
def test_without_the_patch_a_failed_child_execution_goes_unnoticed():
    assert run_scale_scenario(FAILING_CHILD, "base", "0")["status"] == "SUCCEEDED"


def test_a_failed_child_execution_fails_the_distributed_map_unless_tolerated():
    failed = run_scale_scenario(FAILING_CHILD, "scaled", "0")
    assert (failed["status"], failed["error"]) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    assert run_scale_scenario(FAILING_CHILD, "scaled", "1")["status"] == "SUCCEEDED"


@pytest.mark.skipif(not moto_needs_patches(), reason=f"moto {moto.__version__} needs no workaround")
def test_without_the_patch_array_children_block_the_submission_know_no_index_and_cannot_fail_it():
    outcome = run_scale_scenario(ARRAY_JOB, "base", "1")
    assert len(outcome["said_at_return"]) == 3  # the three children ran inside SubmitJob, one after another
    assert outcome["said"] == ["index="] * 6
    assert outcome["first_array"] == "SUCCEEDED" and outcome["status"] == "SUCCEEDED"


def test_array_children_run_in_the_background_with_their_index_and_a_failed_child_fails_the_array():
    outcome = run_scale_scenario(ARRAY_JOB, "scaled", "1")
    assert outcome["said_at_return"] == []  # SubmitJob returned before any child ran to its end
    assert outcome["said"] == ["index=0", "index=0", "index=1", "index=1", "index=2", "index=2"]
    assert outcome["first_array"] == "FAILED"
    assert (outcome["status"], outcome["error"]) == ("FAILED", "States.TaskFailed")
    succeeded = run_scale_scenario(ARRAY_JOB, "scaled", "none")
    assert succeeded["first_array"] == "SUCCEEDED" and succeeded["status"] == "SUCCEEDED"


CONCURRENT_DESCRIBES = SCALE_PRELUDE + r"""
# What a wide foreach does to Batch: tasks are submitted while Step Functions describes the ones running.
with mock_aws(config=config):
    batch = batch_queue(["true"])
    first = batch.submit_job(jobName="j", jobDefinition="def-1", jobQueue="queue-1")["jobId"]
    errors, done = [], threading.Event()

    def submit():
        for _ in range(int(sys.argv[2])):
            if errors:
                break
            batch.submit_job(jobName="j", jobDefinition="def-1", jobQueue="queue-1")
        done.set()

    def describe():
        while not done.is_set():
            try:
                batch.describe_jobs(jobs=[first])
            except Exception as exc:  # the error moto raises, whatever it is
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=submit)] + [threading.Thread(target=describe) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps({"errors": errors[:1]}))
"""


@pytest.mark.skipif(not moto_needs_patches(), reason=f"moto {moto.__version__} needs no workaround")
def test_without_the_patch_describing_jobs_while_others_are_submitted_fails():
    # A race: it shows within a few hundred submissions (the scenario stops at the first error).
    errors = run_scale_scenario(CONCURRENT_DESCRIBES, "base", "3000")["errors"]
    assert errors and "dictionary changed size during iteration" in errors[0]


def test_jobs_can_be_described_while_others_are_submitted():
    assert run_scale_scenario(CONCURRENT_DESCRIBES, "scaled", "200")["errors"] == []


CLIENTS_PER_TASK = SCALE_PRELUDE + r"""
with mock_aws(config=config):
    batch = batch_queue(["true"])
    made = []
    original = boto3.client
    boto3.client = lambda *args, **kwargs: made.append(kwargs.get("service_name")) or original(*args, **kwargs)
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "MaxConcurrency": int(sys.argv[2]), "ItemsPath": "$.items",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync", "ResultPath": None, "End": True,
            "Parameters": {"JobName": "j", "JobDefinition": "def-1", "JobQueue": "queue-1"}}}},
        "ResultPath": None, "End": True}}}
    outcome = execute(definition, {"items": list(range(20))})
    print(json.dumps({**outcome, "clients": len([m for m in made if m == "batch"])}))
"""


@pytest.mark.skipif(not moto_needs_patches(), reason=f"moto {moto.__version__} needs no workaround")
def test_without_the_patch_every_task_makes_new_clients():
    # One task at a time: unpatched, concurrent tasks may also hit the describe-while-submit race above.
    outcome = run_scale_scenario(CLIENTS_PER_TASK, "base", "1")
    assert outcome["status"] == "SUCCEEDED" and outcome["clients"] >= 40  # submit and follow: two a task


def test_tasks_share_their_clients():
    outcome = run_scale_scenario(CLIENTS_PER_TASK, "scaled", "4")
    assert outcome["status"] == "SUCCEEDED" and outcome["clients"] == 1
