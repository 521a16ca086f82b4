"""What a step's decorators make of its AWS Batch job definition, and what AWS Batch would refuse of it, said
before any call (issue 18): whole vCPUs on EC2 and Fargate as a platform a step or deployment can choose,
shared_memory, retries above Batch's 10 attempts, and minutes_between_retries honoured by the state machine."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from conftest import make_spec, step, write_flow_script

from metaflow_r.aws.settings import DeploySettings
from metaflow_r.aws.step_functions.plan import Plan, plan_deployment
from metaflow_r.core.errors import AwsRuleError, ConfigurationError, DecoratorError, UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec
from metaflow_r.core.with_decorators import parse_with

VERSIONS = {"R": "R version 4.2.2", "metaflow": "0.1.0"}
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/ecs-execution"


def decorated(tmp_path, *decorators: tuple[str, dict[str, Any]], body: list[dict] | None = None) -> dict:
    steps = body or [step("start", "end", decorators=[{"name": n, "attributes": a} for n, a in decorators]),
                     step("end")]
    return make_spec("SizedFlow", steps, script=write_flow_script(tmp_path))


def plan(spec: dict, with_retry: int | None = None, with_batch: dict | None = None, **options) -> Plan:
    graph = FlowGraph(parse_spec(copy.deepcopy(spec)))
    return plan_deployment(graph, copy.deepcopy(spec), DeploySettings.from_environment(False), max_workers=100,
                           with_retry=with_retry, versions=VERSIONS, with_batch=with_batch, **options)


def start_job(planned: Plan) -> dict[str, Any]:
    return planned.job_definitions[planned.jobs.by_step["start"]]


def start_state(planned: Plan) -> dict[str, Any]:
    return planned.definition["States"]["start"]


@pytest.fixture
def fargate_env(sfn_env, monkeypatch):
    monkeypatch.setenv("METAFLOW_ECS_FARGATE_EXECUTION_ROLE", EXECUTION_ROLE)


# -- vCPUs: EC2 or Fargate -------------------------------------------------------------------------

def test_half_a_vcpu_on_ec2_is_refused_before_any_call_naming_the_step_and_fargate(sfn_env, tmp_path):
    with pytest.raises(AwsRuleError) as caught:
        plan(decorated(tmp_path, ("batch", {"cpu": 0.5})))
    text = str(caught.value)
    assert "Step 'start'" in text and "On EC2, AWS Batch reserves whole vCPUs" in text
    assert 'platform = "fargate"' in text and caught.value.exit_code == 2


def test_a_step_on_fargate_gets_a_fargate_job_definition(fargate_env, tmp_path):
    job = start_job(plan(decorated(tmp_path, ("batch", {"cpu": 0.5, "platform": "fargate"}))))
    assert job["platformCapabilities"] == ["FARGATE"]
    assert job["containerProperties"]["executionRoleArn"] == EXECUTION_ROLE
    assert job["containerProperties"]["resourceRequirements"] == [{"type": "VCPU", "value": "0.5"},
                                                                  {"type": "MEMORY", "value": "4096"}]


def test_a_deployment_can_put_every_step_on_fargate(fargate_env, tmp_path):
    with_batch = parse_with(["batch:platform=fargate,cpu=0.25,memory=2048"]).batch
    planned = plan(decorated(tmp_path), with_batch=with_batch)
    assert {tuple(j["platformCapabilities"]) for j in planned.job_definitions.values()} == {("FARGATE",)}


def test_a_fargate_size_aws_does_not_pair_is_refused_with_the_sizes_it_does(fargate_env, tmp_path):
    with pytest.raises(AwsRuleError) as caught:
        plan(decorated(tmp_path, ("batch", {"cpu": 0.25, "platform": "fargate"})))  # default memory 4096
    assert "On Fargate a 0.25 vCPU job has 512, 1024, 2048 MiB" in str(caught.value)


def test_fargate_without_its_execution_role_names_the_missing_setting(sfn_env, tmp_path):
    with pytest.raises(ConfigurationError) as caught:
        plan(decorated(tmp_path, ("batch", {"platform": "fargate"})))
    assert "METAFLOW_ECS_FARGATE_EXECUTION_ROLE" in caught.value.message and caught.value.exit_code == 5


def test_ec2_job_definitions_name_no_platform(sfn_env, tmp_path):
    """A step without platform keeps the job definition it had (the same content, so the same name)."""
    job = start_job(plan(decorated(tmp_path, ("resources", {"cpu": 2}))))
    assert "platformCapabilities" not in job and "executionRoleArn" not in job["containerProperties"]


@pytest.mark.parametrize("value", ["lambda", "", 2])
def test_an_unknown_platform_is_refused_where_the_decorator_is_read(sfn_env, tmp_path, value):
    with pytest.raises(DecoratorError, match="must be \"ec2\" or \"fargate\""):
        plan(decorated(tmp_path, ("batch", {"platform": value})))
    with pytest.raises(UsageError):
        parse_with([f"batch:platform={value}"])


# -- shared memory ---------------------------------------------------------------------------------

@pytest.mark.parametrize("decorator", ["batch", "resources"])
def test_shared_memory_sizes_dev_shm(sfn_env, tmp_path, decorator):
    job = start_job(plan(decorated(tmp_path, (decorator, {"shared_memory": 2048}))))
    assert job["containerProperties"]["linuxParameters"] == {"sharedMemorySize": 2048}


def test_shared_memory_on_fargate_is_refused(fargate_env, tmp_path):
    with pytest.raises(AwsRuleError, match="Step 'start'") as caught:
        plan(decorated(tmp_path, ("batch", {"shared_memory": 64, "platform": "fargate"})))
    assert "Fargate jobs cannot size /dev/shm" in str(caught.value)


def test_a_fraction_of_a_mib_of_shared_memory_is_refused(sfn_env, tmp_path):
    with pytest.raises(AwsRuleError, match="whole number of MiB"):
        plan(decorated(tmp_path, ("batch", {"shared_memory": 2.5})))


# -- retries ---------------------------------------------------------------------------------------

def test_retries_above_what_batch_runs_are_refused_not_cut_to_ten(sfn_env, tmp_path):
    with pytest.raises(AwsRuleError) as caught:
        plan(decorated(tmp_path, ("retry", {"times": 20})))
    assert "1 to 10 times" in str(caught.value) and 'times = 9' in str(caught.value)
    assert start_job(plan(decorated(tmp_path, ("retry", {"times": 9}))))["retryStrategy"]["attempts"] == 10


def test_minutes_between_retries_is_waited_by_the_state_machine(sfn_env, tmp_path):
    planned = plan(decorated(tmp_path, ("retry", {"times": 2, "minutes_between_retries": 1.5})))
    job = start_job(planned)
    assert job["retryStrategy"] == {"attempts": 1}  # Batch would retry at once: it does not retry at all
    assert {"name": "METAFLOW_BATCH_ATTEMPTS", "value": "3"} in job["containerProperties"]["environment"]
    retriers = start_state(planned)["Retry"]
    assert retriers[-1] == {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 90, "MaxAttempts": 2,
                            "BackoffRate": 1.0}
    assert {"Name": "METAFLOW_RETRY_COUNT", "Value.$": "States.Format('{}', $$.State.RetryCount)"} in \
        start_state(planned)["Parameters"]["ContainerOverrides"]["Environment"]
    # The end step does not wait: Batch retries it, as before.
    assert all(r["ErrorEquals"] != ["States.TaskFailed"] for r in planned.definition["States"]["end"]["Retry"])


def test_a_foreach_body_that_waits_between_retries_never_runs_as_array_jobs(sfn_env, tmp_path):
    waits = [{"name": "retry", "attributes": {"times": 1, "minutes_between_retries": 1}}]
    spec = decorated(tmp_path, body=[step("start", "body", foreach="items"), step("body", "join", decorators=waits),
                                     step("join", "end", join=True), step("end")])
    assert plan(spec, max_num_splits=("5000",)).definition["States"]["start-foreach"]["ItemProcessor"][
        "ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    with pytest.raises(UsageError, match="Batch retries an array's children at once"):
        plan(spec, foreach_mode=("start=array",))
