"""The emulator's Batch (emulator/batch.py) keeps AWS Batch's books: environment, retries, timeouts, exit
status, CloudWatch lines. Jobs are submitted to moto in a fresh interpreter (the patch is process-wide)
and run as local processes; the container runner differs only in how it starts the command, checked
on its command line here and end to end in test_image_e2e.py."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from metaflow_r.emulator.batch import EXIT_REASON, TIMEOUT_REASON, ContainerJobRunner, JobRun

SCENARIO = r"""
import json, os, sys, time
os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
import boto3
from moto import mock_aws
from metaflow_r.emulator import batch as emulator_batch
from metaflow_r.emulator.moto_patches import patch_moto

emulator_batch.STOP_GRACE_SECONDS = 1
# Batch takes no timeout under 60 s (and the strict emulator neither): a minute here lasts a second.
attempt = emulator_batch.run_attempt
emulator_batch.run_attempt = lambda runner, run, timeout, *args, **kwargs: attempt(
    runner, run, timeout and timeout / 60, *args, **kwargs)
patch_moto()
with mock_aws(config={"batch": {"use_docker": False}}):
    role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = boto3.client("batch")
    batch.create_compute_environment(computeEnvironmentName="env-1", type="UNMANAGED", serviceRole=role)
    batch.create_job_queue(jobQueueName="queue-1", priority=1, state="ENABLED",
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "env-1"}])
    submitted = {}
    for name, (script, attempts, timeout, *rules) in json.loads(sys.argv[1]).items():
        batch.register_job_definition(
            jobDefinitionName=name, type="container",
            retryStrategy={"attempts": attempts, **({"evaluateOnExit": rules[0]} if rules else {})},
            **({"timeout": {"attemptDurationSeconds": timeout}} if timeout else {}),
            containerProperties={"image": "i", "command": ["sh", "-c", script], "vcpus": 1, "memory": 128,
                                 "environment": [{"name": "FROM_DEFINITION", "value": "definition"},
                                                 {"name": "OVERRIDDEN", "value": "definition"}]})
        job_id = batch.submit_job(jobName="j", jobQueue="queue-1", jobDefinition=name, containerOverrides={
            "environment": [{"name": "OVERRIDDEN", "value": "override"}]})["jobId"]
        submitted[name] = (job_id, batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"])
    batch.terminate_job(jobId=submitted["terminated"][0], reason="Stopped by the test.")
    results = {}
    while len(results) < len(submitted):  # SubmitJob returned at once: wait for each job's end
        for name, (job_id, first_status) in submitted.items():
            job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
            if name in results or job["status"] not in ("SUCCEEDED", "FAILED"):
                continue
            events = boto3.client("logs").get_log_events(logGroupName="/aws/batch/job",
                                                         logStreamName=job["container"]["logStreamName"])["events"]
            results[name] = {"status": job["status"], "reason": job.get("statusReason"), "first_status": first_status,
                             "exit_codes": [a["container"].get("exitCode") for a in job["attempts"]],
                             "lines": [e["message"] for e in events]}
        time.sleep(0.1)
    print(json.dumps(results))
"""


# name -> (the job's shell script, retryStrategy.attempts, attemptDurationSeconds or 0[, evaluateOnExit])
JOBS = {
    "environment": ('echo "$FROM_DEFINITION $OVERRIDDEN $AWS_BATCH_JOB_ATTEMPT $AWS_BATCH_JQ_NAME $AWS_BATCH_CE_NAME"; '
                    'test -n "$AWS_BATCH_JOB_ID" && echo "on stderr" >&2', 1, 0),
    "always-fails": ('echo "attempt $AWS_BATCH_JOB_ATTEMPT"; exit 3', 3, 0),
    "second-try": ('test "$AWS_BATCH_JOB_ATTEMPT" -ge 2', 5, 0),
    "too-slow": ("sleep 60", 3, 60),
    "ignores-sigterm": ("trap '' TERM; sleep 60", 3, 60),
    "cannot-start": ("exec /nonexistent/program", 1, 0),
    "terminated": ("echo started; sleep 60", 3, 0),  # TerminateJob right after SubmitJob
    "exits-on-its-code": ("exit 86", 3, 0, [{"onExitCode": "4*", "action": "RETRY"},
                                            {"onExitCode": "8*", "action": "exit"}]),
    "no-rule-matches": ("exit 3", 2, 0, [{"onExitCode": "86", "action": "EXIT"}]),
}


@pytest.fixture(scope="module")
def jobs() -> dict[str, dict]:
    """Every job of JOBS submitted once, in one fresh interpreter with the emulator's Batch."""
    done = subprocess.run([sys.executable, "-c", SCENARIO, json.dumps(JOBS)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_job_sees_definition_overrides_and_batch_variables_and_its_lines_are_logged(jobs):
    job = jobs["environment"]
    assert job["status"] == "SUCCEEDED" and job["exit_codes"] == [0]
    assert job["lines"] == ["definition override 1 queue-1 env-1", "on stderr"]


def test_submit_job_returns_at_once_and_the_job_runs_in_the_background(jobs):
    job = jobs["too-slow"]
    assert job["first_status"] in ("SUBMITTED", "RUNNING")  # SubmitJob returned before the job ended
    assert job["lines"][-1].startswith(TIMEOUT_REASON)  # it ran on after SubmitJob returned, until its timeout


def test_a_terminated_job_is_stopped_fails_with_the_reason_given_and_is_not_retried(jobs):
    job = jobs["terminated"]
    assert job["status"] == "FAILED" and job["reason"] == "Stopped by the test."
    # Stopped (SIGTERM) before or while it ran, not after its 60 s sleep, and not retried.
    assert job["exit_codes"] in ([], [-signal.SIGTERM])


def test_a_failing_job_is_retried_as_its_retry_strategy_says_then_fails_with_its_exit_status(jobs):
    job = jobs["always-fails"]
    assert job["status"] == "FAILED" and job["reason"] == EXIT_REASON
    assert job["exit_codes"] == [3, 3, 3]
    assert job["lines"] == ["attempt 1", "attempt 2", "attempt 3"]


def test_evaluate_on_exit_decides_on_the_first_matching_rule_and_retries_when_none_matches(jobs):
    assert jobs["exits-on-its-code"]["status"] == "FAILED" and jobs["exits-on-its-code"]["exit_codes"] == [86]
    assert jobs["no-rule-matches"]["exit_codes"] == [3, 3]


def test_a_retried_job_stops_at_its_first_success(jobs):
    job = jobs["second-try"]
    assert job["status"] == "SUCCEEDED" and job["exit_codes"] == [1, 0]


@pytest.mark.parametrize("name, signal_ended_it", [("too-slow", signal.SIGTERM), ("ignores-sigterm", signal.SIGKILL)])
def test_a_job_over_its_attempt_duration_is_stopped_and_not_retried(jobs, name, signal_ended_it):
    job = jobs[name]
    # SIGTERM, then SIGKILL after the grace (1 s here) if it ignores SIGTERM: never its 60 s sleep's end.
    assert job["status"] == "FAILED" and job["reason"] == TIMEOUT_REASON
    assert job["exit_codes"] == [-signal_ended_it]
    assert any(TIMEOUT_REASON in line for line in job["lines"])


def test_a_command_that_cannot_start_fails_the_job(jobs):
    job = jobs["cannot-start"]
    assert job["status"] == "FAILED" and job["exit_codes"] == [127]


def test_the_container_runner_passes_the_job_s_environment_by_name_on_host_networking():
    launcher = ContainerJobRunner("podman", {"AWS_ENDPOINT_URL": "http://127.0.0.1:5055", "AWS_ACCESS_KEY_ID": "e",
                                            "AWS_SECRET_ACCESS_KEY": "e", "METAFLOW_USER": "not passed"})
    run = JobRun("metaflow-r-job-1", "metaflow-r:abc", ["metaflow-r", "batch-task"],
                 {"METAFLOW_PARAMETERS": '{"a": "x y\\nz"}', "AWS_ACCESS_KEY_ID": "job's own"})
    argv, env = launcher.argv(run)
    assert argv[:7] == ["podman", "run", "--rm", "--name", "metaflow-r-job-1", "--network", "host"]
    assert argv[-3:] == ["metaflow-r:abc", "metaflow-r", "batch-task"]
    names = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-e"]
    assert names == sorted(["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "METAFLOW_PARAMETERS"])
    assert not any("x y" in arg for arg in argv)  # values travel in the environment, not the command line
    assert env["METAFLOW_PARAMETERS"] == '{"a": "x y\\nz"}' and env["AWS_ACCESS_KEY_ID"] == "job's own"
