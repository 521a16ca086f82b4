"""The emulator's workarounds for moto: applied only to the moto versions that need them, and each
one necessary (the defect shows without it) and sufficient (the execution works with it)."""
from __future__ import annotations

import json
import subprocess
import sys

import moto
import pytest

from metaflow_r.emulator import moto_needs_patches

# A Step Functions execution of one Batch task in moto, in a fresh interpreter so patches do not leak.
SCENARIO = r"""
import json, os, sys, time
os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
import boto3
from moto import mock_aws
if sys.argv[1] == "patched":
    from metaflow_r.emulator import patch_moto
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
