"""The strict checks (aws/requests/): each rule, with an input its AWS page documents as refused, and a request
the backend really sends that passes. The same checks run in `create` before any call (plan.py) and in the
emulator on every matching request (emulator/strict.py): test_strict_emulator.py."""
from __future__ import annotations

import copy
import json

import pytest

from metaflow_r.aws.requests.batch import check_job_definition, check_submit_job
from metaflow_r.aws.requests.check import check_request
from metaflow_r.aws.requests.schedules import check_put_rule
from metaflow_r.aws.requests.states import check_create_state_machine, check_definition, check_start_execution
from metaflow_r.core.errors import AwsRuleError

JOB_DEFINITION = {
    "jobDefinitionName": "metaflow-ParameterFlow-0123456789abcdef", "type": "container",
    "containerProperties": {"image": "metaflow-r:latest", "command": ["metaflow-r", "batch-task"],
                            "jobRoleArn": "arn:aws:iam::123456789012:role/batch",
                            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "4096"}],
                            "environment": [{"name": "METAFLOW_FLOW_NAME", "value": "ParameterFlow"}]},
    "retryStrategy": {"attempts": 4, "evaluateOnExit": [{"onExitCode": "86", "action": "EXIT"}]},
    "timeout": {"attemptDurationSeconds": 180},
}
FARGATE = {**JOB_DEFINITION, "platformCapabilities": ["FARGATE"],
           "containerProperties": {**JOB_DEFINITION["containerProperties"],
                                   "executionRoleArn": "arn:aws:iam::123456789012:role/ecs-execution",
                                   "resourceRequirements": [{"type": "VCPU", "value": "0.5"},
                                                            {"type": "MEMORY", "value": "2048"}]}}
SUBMIT_JOB = {"jobName": "ParameterFlow-start", "jobQueue": "queue", "jobDefinition": "metaflow-ParameterFlow-0123",
              "containerOverrides": {"environment": [{"name": "METAFLOW_STEP", "value": "start"}]}}


def changed(request: dict, path: str, value) -> dict:
    """``request`` with the member at dotted ``path`` set to ``value`` (deleted when value is ...)."""
    copied = copy.deepcopy(request)
    *parents, last = path.split(".")
    target = copied
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is ...:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return copied


def refusal(check, request) -> str:
    with pytest.raises(AwsRuleError) as caught:
        check(request)
    assert caught.value.exit_code == 2 and caught.value.bullets[-1][0] == "i"  # and it says what to do
    return str(caught.value)


# -- RegisterJobDefinition ---------------------------------------------------------------------------

def test_the_job_definitions_the_backend_registers_pass():
    check_job_definition(JOB_DEFINITION)
    check_job_definition(FARGATE)
    check_job_definition(changed(JOB_DEFINITION, "containerProperties.linuxParameters", {"sharedMemorySize": 2048}))


@pytest.mark.parametrize("path, value, says", [
    # API_ResourceRequirement: "For Amazon EC2 resources, you must specify at least one vCPU" (issue 18: cpu = 0.5).
    ("containerProperties.resourceRequirements.0.value", "0.5", "On EC2, AWS Batch reserves whole vCPUs"),
    ("containerProperties.resourceRequirements.0.value", "1.0", "whole vCPUs"),
    ("containerProperties.resourceRequirements.1.value", "2", "at least 4"),
    ("containerProperties.resourceRequirements", [{"type": "MEMORY", "value": "4096"}], "numeric VCPU"),
    ("containerProperties.resourceRequirements.0.type", "CPU", "not GPU, MEMORY or VCPU"),
    # API_RetryStrategy: "You can specify between 1 and 10 attempts" (issue 18: times = 20).
    ("retryStrategy.attempts", 21, "1 to 10 times"),
    ("retryStrategy.attempts", 0, "1 to 10 times"),
    ("retryStrategy.evaluateOnExit.0.onExitCode", "8x", "not digits"),
    ("retryStrategy.evaluateOnExit.0.action", "RESTART", "RETRY or EXIT"),
    ("retryStrategy.evaluateOnExit", [{"onExitCode": str(i), "action": "EXIT"} for i in range(6)], "up to 5"),
    # API_JobTimeout: "The minimum value for the timeout is 60 seconds."
    ("timeout.attemptDurationSeconds", 59, "at least 60 seconds"),
    # API_RegisterJobDefinition: up to 128 letters, numbers, hyphens and underscores.
    ("jobDefinitionName", "metaflow-Flow." + "x", "not valid"),
    ("jobDefinitionName", "m" * 129, "not valid"),
    # API_ContainerProperties: "Environment variables cannot start with AWS_BATCH."
    ("containerProperties.environment.0.name", "AWS_BATCH_JOB_ID", "reserved"),
    # networkConfiguration: "Jobs that are running on Amazon EC2 resources must not specify this parameter."
    ("containerProperties.networkConfiguration", {"assignPublicIp": "ENABLED"}, "must not have networkConfiguration"),
    ("platformCapabilities", ["EC2", "FARGATE"], "not one of"),
    ("containerProperties.image", "", "needs an image"),
])
def test_a_job_definition_aws_refuses_is_refused(path, value, says):
    assert says in refusal(check_job_definition, changed(JOB_DEFINITION, path, value))


@pytest.mark.parametrize("path, value, says", [
    # Fargate: VCPU one of 0.25 ... 32, and MEMORY one of the values for that VCPU (API_ResourceRequirement).
    ("containerProperties.resourceRequirements.0.value", "3", "Fargate runs jobs of 0.25, 0.5, 1, 2, 4, 8, 16, 32"),
    ("containerProperties.resourceRequirements.1.value", "8192", "0.5 vCPU job has 1024, 2048, 3072, 4096 MiB"),
    # "GPUs aren't available for jobs that are running on Fargate resources."
    ("containerProperties.resourceRequirements.2", {"type": "GPU", "value": "1"}, "GPUs aren't available on Fargate"),
    # ContainerProperties.executionRoleArn: "For jobs that run on Fargate resources, you must provide an execution role."
    ("containerProperties.executionRoleArn", ..., "needs an execution role"),
    # LinuxParameters.sharedMemorySize: "This parameter isn't applicable to jobs that are running on Fargate."
    ("containerProperties.linuxParameters", {"sharedMemorySize": 64}, "cannot size /dev/shm"),
])
def test_a_fargate_job_definition_aws_refuses_is_refused(path, value, says):
    if path.endswith(".2"):
        request = copy.deepcopy(FARGATE)
        request["containerProperties"]["resourceRequirements"].append(value)
    else:
        request = changed(FARGATE, path, value)
    assert says in refusal(check_job_definition, request)


def test_a_job_definition_over_24_kib_is_refused():
    big = changed(JOB_DEFINITION, "containerProperties.environment", [{"name": f"V{i}", "value": "x" * 100}
                                                                      for i in range(250)])
    assert "at most 24 KiB" in refusal(check_job_definition, big)


# -- SubmitJob ---------------------------------------------------------------------------------------

def test_a_job_the_backend_submits_passes():
    check_submit_job(SUBMIT_JOB)
    check_submit_job({**SUBMIT_JOB, "arrayProperties": {"size": 10_000}})


@pytest.mark.parametrize("path, value, says", [
    ("jobName", "_start", "starting with a letter or digit"),  # API_SubmitJob: "The first character must be alphanumeric"
    ("jobName", "Flow-" + "s" * 124, "not valid"),
    ("arrayProperties", {"size": 1}, "2 to 10,000 children"),  # ArrayProperties: between 2 and 10,000
    ("arrayProperties", {"size": 10_001}, "2 to 10,000 children"),
    ("containerOverrides.environment.0.name", "AWS_BATCH_JQ_NAME", "reserved"),
    ("jobQueue", "", "needs a jobQueue"),
    ("retryStrategy", {"attempts": 11}, "1 to 10 times"),
])
def test_a_submission_aws_refuses_is_refused(path, value, says):
    assert says in refusal(check_submit_job, changed(SUBMIT_JOB, path, value))


def test_a_submission_over_30_kib_is_refused():
    big = changed(SUBMIT_JOB, "containerOverrides.environment", [{"name": "P", "value": "x" * 31_000}])
    assert "at most 30 KiB" in refusal(check_submit_job, big)


# -- PutRule -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("expression", ["cron(0 10 * * ? *)", "cron(0 10 ? * 3#1 *)", "cron(0/5 8-17 ? * MON-FRI *)",
                                        "rate(1 minute)", "rate(5 minutes)", "rate(1 day)", "rate(12 hours)"])
def test_schedules_eventbridge_takes_pass(expression):
    check_put_rule({"Name": "ParameterFlow", "ScheduleExpression": expression})


@pytest.mark.parametrize("expression, says", [
    # "If you use a '#' character, you can define only one expression in the day-of-week field" (issue 18).
    ("cron(0 10 ? * 3#1,6#3 *)", "more than one expression beside a '#'"),
    ("cron(0 10 ? * 2#1,MON *)", "more than one expression beside a '#'"),
    # Day-of-week takes , - * ? L #: no increments.
    ("cron(0 10 ? * MON/2 *)", "invalid day-of-week field"),
    ("cron(0 10 * * * *)", "exactly one of day-of-month and day-of-week"),
    ("cron(0 10 * * ?)", "5 fields, not 6"),
    ("cron(0 10  * * ? *)", "single spaces"),
    # Rate: "If the value is equal to 1, then the unit must be singular ... greater than 1, ... plural."
    ("rate(1 hours)", "singular for 1"),
    ("rate(5 hour)", "singular for 1"),
    ("rate(0 minutes)", "positive whole number"),
    ("rate(1.5 hours)", "positive whole number"),
    ("rate(2 weeks)", "minutes, hours or days"),
    ("every day", "neither cron(...) nor rate(...)"),
    ("cron(" + "0," * 130 + "0 10 * * ? *)", "at most 256 characters"),
])
def test_schedules_eventbridge_refuses_are_refused(expression, says):
    with pytest.raises(AwsRuleError) as caught:
        check_put_rule({"Name": "ParameterFlow", "ScheduleExpression": expression})
    assert says in caught.value.message


@pytest.mark.parametrize("name", ["", "a" * 65, "Flow:1", "Flow/1"])
def test_rule_names_eventbridge_refuses_are_refused(name):
    assert "rule name" in refusal(check_put_rule, {"Name": name, "ScheduleExpression": "rate(1 day)"})


# -- CreateStateMachine, StartExecution --------------------------------------------------------------

def machine(**task) -> str:
    state = {"Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync", "End": True,
             "Parameters": {"JobName": "Flow-start", "JobDefinition": "d", "JobQueue": "q",
                            "ContainerOverrides": {"Environment": [{"Name": "RUN", "Value.$": "$$.Execution.Name"}]}},
             **task}
    return json.dumps({"StartAt": "start", "States": {"start": state}})


def test_a_state_machine_the_backend_could_send_passes():
    check_create_state_machine({"name": "ParameterFlow", "definition": machine(), "roleArn": "arn"})


@pytest.mark.parametrize("task, says", [
    ({"Parameters": {"JobName.$": "States.Frobnicate($.x)", "JobDefinition": "d", "JobQueue": "q"}},
     "not an intrinsic function"),
    ({"Parameters": {"JobName.$": "start", "JobDefinition": "d", "JobQueue": "q"}}, "not a path"),
    # connect-batch: SubmitJob's supported parameters, in PascalCase.
    ({"Parameters": {"JobName": "n", "JobDefinition": "d", "JobQueue": "q", "SchedulingPriority": 1}},
     "does not take ['SchedulingPriority']"),
    ({"Parameters": {"JobName": "n", "JobDefinition": "d", "JobQueue": "q", "ContainerOverrides": {"Vcpu": 2}}},
     "not members of ContainerOverrides"),
    ({"Parameters": {"JobName": "n", "JobQueue": "q"}}, "required ['JobDefinition']"),
    ({"Parameters": {"JobName": "n", "JobDefinition": "d", "JobQueue": 3}}, "must be a string"),
    # The retrier's fields (developer guide, "Handling errors").
    ({"Retry": [{"ErrorEquals": ["X"], "MaxAttempts": 1.5}]}, "MaxAttempts is a whole number"),
    ({"Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]}, "BackoffRate"),
    ({"Retry": [{"ErrorEquals": ["X"], "IntervalSeconds": 0}]}, "IntervalSeconds"),
    ({"Retry": [{"ErrorEquals": ["X"], "MaxDelaySeconds": 31_622_401}]}, "MaxDelaySeconds"),
    ({"Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "HALF"}]}, "FULL or NONE"),
    ({"Retry": [{"ErrorEquals": []}]}, "needs ErrorEquals"),
    ({"Resource": "arn:aws:states:::aws-sdk:s3:putThing"}, "not an API action"),
    ({"Resource": "arn:aws:states:::lambda:invoke"}, "not an integration"),
])
def test_a_state_machine_aws_refuses_is_refused(task, says):
    assert says in refusal(check_definition, machine(**task))


def test_s3_put_object_members_step_functions_does_not_document_are_refused():
    """Issue 18: whether the SDK integration takes S3's 2024 conditional writes is not documented."""
    put = {"Resource": "arn:aws:states:::aws-sdk:s3:putObject",
           "Parameters": {"Bucket": "b", "Key": "k", "Body": "{}", "IfNoneMatch": "*"}}
    assert "does not document these newer members" in refusal(check_definition, machine(**put))
    put["Parameters"].pop("IfNoneMatch")
    check_definition(machine(**put))
    put["Parameters"].pop("Key")
    assert "required ['Key']" in refusal(check_definition, machine(**put))


def test_an_item_reader_takes_no_intrinsic_function():
    reader = {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
              "Parameters": {"Bucket": "b", "Key.$": "States.Format('{}/items.json', $.run_id)"}}
    processor = {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "p",
                 "States": {"p": {"Type": "Pass", "End": True}}}
    definition = {"StartAt": "m", "States": {"m": {"Type": "Map", "ItemReader": reader, "ItemProcessor": processor,
                                                   "End": True}}}
    assert "ItemReader's Key.$ calls an intrinsic function" in refusal(check_definition, json.dumps(definition))
    reader["Parameters"]["Key.$"] = "$.splits.key"
    check_definition(json.dumps(definition))
    # Only Parameters, ItemSelector, ResultSelector and Credentials take them: not a ResultWriter either.
    definition["States"]["m"]["ResultWriter"] = {"Resource": "arn:aws:states:::s3:putObject",
                                                 "Parameters": {"Bucket": "b", "Prefix.$": "States.UUID()"}}
    assert "ResultWriter's Prefix.$ calls an intrinsic function" in refusal(check_definition, json.dumps(definition))


@pytest.mark.parametrize("name", ["", "x" * 81, "my flow", "Flow#1", "Flow/1", "a\x01"])
def test_names_step_functions_refuses_are_refused(name):
    assert "is not valid" in refusal(check_create_state_machine, {"name": name, "definition": machine()})
    assert "is not valid" in refusal(check_start_execution, {"name": name, "input": "{}"})


def test_a_definition_over_1_mb_and_an_input_over_256_kib_are_refused():
    big = json.dumps({"StartAt": "s", "States": {"s": {"Type": "Pass", "Result": "x" * 1_048_576, "End": True}}})
    assert "1,048,576 characters" in refusal(check_definition, big)
    assert "262,144 bytes" in refusal(check_start_execution, {"name": "r", "input": json.dumps({"P": "é" * 131_072})})


def test_a_state_name_over_80_characters_is_refused():
    long = json.dumps({"StartAt": "s" * 81, "States": {"s" * 81: {"Type": "Pass", "End": True}}})
    assert "has 81 characters" in refusal(check_definition, long)


def test_the_table_routes_each_operation_to_its_check():
    with pytest.raises(AwsRuleError):
        check_request("batch", "RegisterJobDefinition", changed(JOB_DEFINITION, "retryStrategy.attempts", 20))
    with pytest.raises(AwsRuleError):
        check_request("events", "PutRule", {"Name": "F", "ScheduleExpression": "cron(0 10 ? * 3#1,6#3 *)"})
    check_request("s3", "PutObject", {"Bucket": "b", "Key": "k"})  # no rules: nothing to refuse
