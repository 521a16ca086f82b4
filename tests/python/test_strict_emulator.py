"""The strict emulator: the moto server the tests deploy to refuses, as AWS does, what AWS documents it
refuses (emulator/strict.py runs aws/requests' checks on each request it receives), so "passes on the
emulator" no longer hides what AWS would reject. Each case below was accepted by moto before."""
from __future__ import annotations

import json
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import emulated_env, rscript, write_flow_script

ROLE = "arn:aws:iam::123456789012:role/metaflow-r-sfn"


def client(emulator: dict[str, str], service: str):
    return boto3.client(service, endpoint_url=emulator["AWS_ENDPOINT_URL"], region_name=emulator["AWS_REGION"],
                        aws_access_key_id="emulated", aws_secret_access_key="emulated")


def refused(call, code: str, says: str, **request) -> None:
    with pytest.raises(ClientError) as caught:
        call(**request)
    assert caught.value.response["Error"]["Code"] == code
    assert says in caught.value.response["Error"]["Message"]


def job_definition(cpu: str, attempts: int = 1) -> dict:
    return {"jobDefinitionName": "strict-test", "type": "container", "retryStrategy": {"attempts": attempts},
            "containerProperties": {"image": "metaflow-r:emulated", "command": ["true"],
                                    "resourceRequirements": [{"type": "VCPU", "value": cpu},
                                                             {"type": "MEMORY", "value": "4096"}]}}


def test_job_definitions_batch_refuses_are_refused(emulator):
    batch = client(emulator, "batch")
    refused(batch.register_job_definition, "ClientException", "On EC2, AWS Batch reserves whole vCPUs",
            **job_definition("0.5"))
    refused(batch.register_job_definition, "ClientException", "1 to 10 times", **job_definition("1", attempts=21))
    batch.register_job_definition(**job_definition("1", attempts=10))


def test_a_schedule_eventbridge_refuses_is_refused(emulator):
    refused(client(emulator, "events").put_rule, "ValidationException", "more than one expression beside a '#'",
            Name="StrictFlow", ScheduleExpression="cron(0 10 ? * 3#1,6#3 *)")


@pytest.mark.parametrize("state, says", [
    ({"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:putObject", "End": True,
      "Parameters": {"Bucket": "b", "Key": "k", "Body": "{}", "IfNoneMatch": "*"}}, "does not document"),
    ({"Type": "Map", "End": True, "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                                                 "Parameters": {"Bucket": "b", "Key.$": "States.Format('{}', $.k)"}},
      "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "p",
                        "States": {"p": {"Type": "Pass", "End": True}}}}, "calls an intrinsic function"),
])
def test_state_machines_step_functions_refuses_are_refused(emulator, state, says):
    sfn = client(emulator, "stepfunctions")
    definition = json.dumps({"StartAt": "a", "States": {"a": state}})
    refused(sfn.create_state_machine, "InvalidDefinition", says, name="StrictFlow", definition=definition,
            roleArn=ROLE)
    assert [m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "StrictFlow"] == []


def test_a_job_an_execution_submits_is_checked_too(emulator):
    """Step Functions' Batch integration calls the emulator's Batch: an array job of one child, which AWS Batch
    refuses, fails the execution with Batch's error."""
    batch, sfn = client(emulator, "batch"), client(emulator, "stepfunctions")
    definition = batch.register_job_definition(**job_definition("1"))["jobDefinitionArn"]
    task = {"Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync", "End": True,
            "Parameters": {"JobName": "strict-array", "JobDefinition": definition,
                           "JobQueue": emulator["METAFLOW_BATCH_JOB_QUEUE"], "ArrayProperties": {"Size.$": "$.size"}}}
    arn = sfn.create_state_machine(name="StrictArray", roleArn=ROLE,
                                   definition=json.dumps({"StartAt": "a", "States": {"a": task}}))["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, name="one-child", input=json.dumps({"size": 1}))
    deadline = time.time() + 60
    while (described := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] == "RUNNING":
        assert time.time() < deadline
        time.sleep(0.2)
    assert described["status"] == "FAILED"
    events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
    assert any("2 to 10,000 children" in json.dumps(e, default=str) for e in events)


def test_create_refuses_a_flow_aws_would_refuse_before_any_call(emulator, tmp_path):
    """Issue 18's cases through `step-functions create`: each refused up front, naming the rule and the fix,
    exit status 2, and nothing deployed (no state machine, no job definition, no rule)."""
    env = emulated_env(emulator)
    cases = {
        'step(decorator("batch", cpu = 0.5), step = "start", next_step = "end")': "reserves whole vCPUs",
        'step(decorator("retry", times = 20), step = "start", next_step = "end")': "1 to 10 times",
    }
    for number, (start, says) in enumerate(cases.items()):
        body = (f'library(metaflow)\nmetaflow("StrictFlow{number}") %>%\n  {start} %>%\n'
                '  step(step = "end") %>%\n  run()\n')
        script = tmp_path / f"flow{number}.R"
        script.write_text(body)
        done = rscript(script, ["step-functions", "create"], tmp_path, env)
        assert done.returncode == 2, done.stdout + done.stderr
        assert says in done.stderr and "would refuse its job definition" in done.stderr
        assert not [m for m in client(emulator, "stepfunctions").list_state_machines()["stateMachines"]
                    if m["name"] == f"StrictFlow{number}"]
