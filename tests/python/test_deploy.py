"""Deploying to Step Functions against moto (in-process): settings, limits, what apply creates, idempotency,
the production token, AWS errors, and repairing a deploy that stopped half-way."""
from __future__ import annotations

import copy
import json

import boto3
import pytest
from botocore.stub import Stubber
from conftest import SFN_BUCKET, SFN_SETTINGS, make_spec, step, write_flow_script

from metaflow_r.aws.settings import DeploySettings
from metaflow_r.aws.step_functions.deployer import Deployer
from metaflow_r.aws.step_functions.plan import plan_deployment
from metaflow_r.aws.step_functions.schedule import schedule_expression
from metaflow_r.core.errors import AwsError, ConfigurationError, ForeachTooWide, UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec

VERSIONS = {"R": "R version 4.2.2", "metaflow": "0.1.0"}
MUTATING = ("Create", "Update", "Put", "Register", "Delete", "Remove", "Tag", "Untag", "Start")
HOURLY = [{"name": "schedule", "attributes": {"hourly": True}}]


def resources(cpu, memory):
    return {"name": "resources", "attributes": {"cpu": cpu, "memory": memory}}


def retry(times):
    return {"name": "retry", "attributes": {"times": times}}


@pytest.fixture
def flow(tmp_path):
    """A four-step flow whose steps need two distinct job definitions (start is bigger)."""
    return make_spec("DeployFlow", [
        step("start", "a", decorators=[resources(2, 8192)]),
        step("a", "b"),
        step("b", "end", decorators=[retry(0)]),
        step("end"),
    ], script=write_flow_script(tmp_path))


def plan_for(spec, with_retry=None, max_workers=100):
    graph = FlowGraph(parse_spec(copy.deepcopy(spec)))
    settings = DeploySettings.from_environment(schedule_expression(graph.spec) is not None)
    return plan_deployment(graph, copy.deepcopy(spec), settings, max_workers=max_workers, with_retry=with_retry,
                           versions=VERSIONS)


def deployer():
    return Deployer(boto3.session.Session(region_name="us-east-1"), echo=lambda _: None)


def recorded(target: Deployer) -> list[str]:
    """The names of the AWS operations ``target`` calls from now on."""
    calls: list[str] = []
    for client in (target.s3, target.batch, target.sfn, target.events):
        client.meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
    return calls


def mutating(calls):
    return [c for c in calls if c.startswith(MUTATING)]


def aws():
    return {name: boto3.client(name, region_name="us-east-1") for name in ("s3", "batch", "stepfunctions", "events")}


def job_definitions():
    return aws()["batch"].describe_job_definitions(status="ACTIVE")["jobDefinitions"]


def rule_exists(name):
    try:
        aws()["events"].describe_rule(Name=name)
        return True
    except aws()["events"].exceptions.ResourceNotFoundException:
        return False


# -- settings --------------------------------------------------------------------------------------


def test_every_missing_setting_is_named_in_one_error(no_metaflow_settings, monkeypatch):
    monkeypatch.setenv("METAFLOW_BATCH_JOB_QUEUE", SFN_SETTINGS["METAFLOW_BATCH_JOB_QUEUE"])
    monkeypatch.setenv("METAFLOW_SFN_IAM_ROLE", SFN_SETTINGS["METAFLOW_SFN_IAM_ROLE"])
    with pytest.raises(ConfigurationError) as caught:
        DeploySettings.from_environment(need_events_role=False)
    message = caught.value.message
    for name in ("METAFLOW_DATASTORE_SYSROOT_S3", "METAFLOW_ECS_S3_ACCESS_IAM_ROLE", "METAFLOW_SFN_DYNAMO_DB_TABLE",
                 "METAFLOW_BATCH_CONTAINER_IMAGE"):
        assert name in message
    for name in ("METAFLOW_BATCH_JOB_QUEUE", "METAFLOW_SFN_IAM_ROLE", "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE"):
        assert name not in message
    assert caught.value.exit_code == 5


def test_events_role_is_required_only_for_a_schedule(sfn_env, monkeypatch):
    monkeypatch.delenv("METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE")
    settings = DeploySettings.from_environment(need_events_role=False)
    assert settings.sfn_role == SFN_SETTINGS["METAFLOW_SFN_IAM_ROLE"]
    with pytest.raises(ConfigurationError) as caught:
        DeploySettings.from_environment(need_events_role=True)
    assert caught.value.message.count("METAFLOW_") == 1
    assert "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE" in caught.value.message


def test_settings_come_from_the_metaflow_config_file(no_metaflow_settings, monkeypatch, tmp_path):
    from metaflow_r.core import config

    home = tmp_path / "home-config"
    home.mkdir()
    (home / "config.json").write_text(json.dumps(SFN_SETTINGS))
    monkeypatch.setenv("METAFLOW_HOME", str(home))
    config._config_file.cache_clear()
    monkeypatch.setenv("METAFLOW_BATCH_JOB_QUEUE", "from-the-environment")  # the environment wins
    settings = DeploySettings.from_environment(need_events_role=True)
    assert settings.image == SFN_SETTINGS["METAFLOW_BATCH_CONTAINER_IMAGE"]
    assert settings.events_role == SFN_SETTINGS["METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE"]
    assert settings.job_queue == "from-the-environment"


# -- limits checked before any AWS call ------------------------------------------------------------


def test_state_machine_name_over_80_characters_is_refused(sfn_env, tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)  # any AWS call would fail differently
    script = write_flow_script(tmp_path)
    plan_for(make_spec("F" * 80, [step("start", "end"), step("end")], script=script))
    with pytest.raises(UsageError, match="state machine name") as caught:
        plan_for(make_spec("F" * 81, [step("start", "end"), step("end")], script=script))
    assert "81 characters" in caught.value.message and "80" in str(caught.value)


def test_rule_name_over_64_characters_is_refused_only_with_a_schedule(sfn_env, tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    script = write_flow_script(tmp_path)
    plan_for(make_spec("F" * 65, [step("start", "end"), step("end")], script=script))
    plan_for(make_spec("F" * 64, [step("start", "end"), step("end")], script=script, decorators=HOURLY))
    with pytest.raises(UsageError, match="EventBridge rule name") as caught:
        plan_for(make_spec("F" * 65, [step("start", "end"), step("end")], script=script, decorators=HOURLY))
    assert "64" in str(caught.value)


# -- what apply creates ----------------------------------------------------------------------------


def test_apply_uploads_the_code_package(moto_aws, flow):
    plan = plan_for(flow)
    deployer().apply(plan, None, False)
    key = f"metaflow/DeployFlow/_code/{plan.package.sha}.tgz"
    body = aws()["s3"].get_object(Bucket=SFN_BUCKET, Key=key)["Body"].read()
    assert body == plan.package.data
    # The state machine tells each job where the package is and which hash to expect.
    env = {e["Name"]: e.get("Value") for e in
           plan.definition["States"]["start"]["Parameters"]["ContainerOverrides"]["Environment"]}
    assert env["METAFLOW_CODE_URL"] == f"s3://{SFN_BUCKET}/{key}"
    assert env["METAFLOW_CODE_SHA"] == plan.package.sha


def _by_step(definition):
    return {name: state["Parameters"]["JobDefinition"] for name, state in definition["States"].items()
            if state.get("Resource", "").startswith("arn:aws:states:::batch")}


def _requirements(job):
    return {r["type"]: r["value"] for r in job["containerProperties"]["resourceRequirements"]}


def test_one_job_definition_per_distinct_resources_and_retry(moto_aws, flow):
    plan = plan_for(flow)
    deployer().apply(plan, None, False)
    jobs = {j["jobDefinitionName"]: j for j in job_definitions()}
    assert len(jobs) == 2
    by_step = _by_step(plan.definition)
    assert by_step["a"] == by_step["b"] == by_step["end"] != by_step["start"]
    start, other = jobs[by_step["start"]], jobs[by_step["a"]]
    assert _requirements(start) == {"VCPU": "2", "MEMORY": "8192"}
    assert _requirements(other) == {"VCPU": "1", "MEMORY": "4096"}
    for job in (start, other):
        assert job["containerProperties"]["image"] == SFN_SETTINGS["METAFLOW_BATCH_CONTAINER_IMAGE"]
        assert job["containerProperties"]["jobRoleArn"] == SFN_SETTINGS["METAFLOW_ECS_S3_ACCESS_IAM_ROLE"]
        assert job["retryStrategy"]["attempts"] == 1  # no retry decorator, and times = 0: one attempt
        assert job["containerProperties"]["command"] == ["metaflow-r", "batch-task"]


def test_with_retry_gives_four_attempts_but_times_0_keeps_one(moto_aws, flow):
    plan = plan_for(flow, with_retry=3)  # what --with retry passes
    deployer().apply(plan, None, False)
    jobs = {j["jobDefinitionName"]: j for j in job_definitions()}
    by_step = _by_step(plan.definition)
    attempts = {name: jobs[job]["retryStrategy"]["attempts"] for name, job in by_step.items()}
    assert attempts == {"start": 4, "a": 4, "b": 1, "end": 4}
    assert len(jobs) == 3


def test_retry_decorator_times_sets_attempts(moto_aws, tmp_path):
    spec = make_spec("RetryFlow", [step("start", "end", decorators=[retry(2)]), step("end")],
                     script=write_flow_script(tmp_path))
    plan = plan_for(spec)
    deployer().apply(plan, None, False)
    jobs = {j["jobDefinitionName"]: j for j in job_definitions()}
    by_step = _by_step(plan.definition)
    assert jobs[by_step["start"]]["retryStrategy"]["attempts"] == 3
    assert jobs[by_step["end"]]["retryStrategy"]["attempts"] == 1
    # A too-wide foreach would fail every retry the same way: its exit status ends the job at once.
    (rule,) = jobs[by_step["start"]]["retryStrategy"]["evaluateOnExit"]
    assert (rule["onExitCode"], rule["action"].upper()) == (str(ForeachTooWide.exit_code), "EXIT")  # moto says "exit"


def test_apply_creates_the_state_machine_with_the_compiled_definition(moto_aws, flow):
    plan = plan_for(flow)
    result = deployer().apply(plan, None, False)
    sfn = aws()["stepfunctions"]
    machine = sfn.describe_state_machine(stateMachineArn=result["state_machine_arn"])
    assert machine["name"] == "DeployFlow"
    assert json.loads(machine["definition"]) == plan.definition
    assert machine["roleArn"] == SFN_SETTINGS["METAFLOW_SFN_IAM_ROLE"]
    tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=machine["stateMachineArn"])["tags"]}
    assert tags["metaflow:namespace"] == result["namespace"] and result["namespace"].startswith("production:")
    assert not rule_exists("DeployFlow")


def test_apply_creates_the_schedule_rule_targeting_the_state_machine(moto_aws, flow):
    flow["decorators"] = HOURLY
    result = deployer().apply(plan_for(flow), None, False)
    events = aws()["events"]
    rule = events.describe_rule(Name="DeployFlow")
    assert rule["ScheduleExpression"] == "cron(0 * * * ? *)"
    assert rule["State"] == "ENABLED"
    targets = events.list_targets_by_rule(Rule="DeployFlow")["Targets"]
    assert len(targets) == 1
    assert targets[0]["Arn"] == result["state_machine_arn"]
    assert targets[0]["RoleArn"] == SFN_SETTINGS["METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE"]
    assert json.loads(targets[0]["Input"]) == {"Parameters": "{}"}


# -- idempotency and updates -----------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [None, HOURLY])
def test_a_second_apply_of_an_unchanged_flow_changes_nothing(moto_aws, flow, schedule):
    flow["decorators"] = schedule or []
    first = deployer().apply(plan_for(flow, with_retry=3), None, False)
    again = deployer()
    calls = recorded(again)
    second = again.apply(plan_for(flow, with_retry=3), None, False)
    assert calls, "the recorder saw no call at all"
    assert mutating(calls) == []
    assert second["state_machine_arn"] == first["state_machine_arn"]
    assert second["namespace"] == first["namespace"]


def test_changing_the_flow_updates_the_state_machine(moto_aws, flow):
    first = deployer().apply(plan_for(flow), None, False)
    flow["steps"][2]["next"] = ["extra"]
    flow["steps"].insert(3, step("extra", "end"))
    changed = plan_for(flow)
    again = deployer()
    calls = recorded(again)
    second = again.apply(changed, None, False)
    assert "UpdateStateMachine" in calls and "CreateStateMachine" not in calls
    assert "PutObject" in calls  # the new code package
    assert second["state_machine_arn"] == first["state_machine_arn"]
    machine = aws()["stepfunctions"].describe_state_machine(stateMachineArn=first["state_machine_arn"])
    assert json.loads(machine["definition"]) == changed.definition
    assert "extra" in json.loads(machine["definition"])["States"]


def test_a_new_sfn_role_updates_the_state_machine(moto_aws, flow, monkeypatch):
    first = deployer().apply(plan_for(flow), None, False)
    monkeypatch.setenv("METAFLOW_SFN_IAM_ROLE", "arn:aws:iam::123456789012:role/other-sfn-role")
    deployer().apply(plan_for(flow), None, False)
    machine = aws()["stepfunctions"].describe_state_machine(stateMachineArn=first["state_machine_arn"])
    assert machine["roleArn"] == "arn:aws:iam::123456789012:role/other-sfn-role"


def test_changing_the_schedule_updates_the_rule(moto_aws, flow):
    flow["decorators"] = HOURLY
    deployer().apply(plan_for(flow), None, False)
    flow["decorators"] = [{"name": "schedule", "attributes": {"cron": "0 10 * * ? *"}}]
    deployer().apply(plan_for(flow), None, False)
    assert aws()["events"].describe_rule(Name="DeployFlow")["ScheduleExpression"] == "cron(0 10 * * ? *)"
    assert len(aws()["events"].list_targets_by_rule(Rule="DeployFlow")["Targets"]) == 1


def test_removing_the_schedule_decorator_deletes_the_rule(moto_aws, flow):
    flow["decorators"] = HOURLY
    result = deployer().apply(plan_for(flow), None, False)
    assert rule_exists("DeployFlow")
    flow["decorators"] = []
    deployer().apply(plan_for(flow), None, False)
    assert not rule_exists("DeployFlow")
    # The state machine itself stays.
    aws()["stepfunctions"].describe_state_machine(stateMachineArn=result["state_machine_arn"])


# -- the production token --------------------------------------------------------------------------


def test_another_user_needs_the_production_token(moto_aws, flow, monkeypatch):
    first = deployer().apply(plan_for(flow), None, False)
    flow["steps"][1]["decorators"] = [resources(4, 4096)]  # bob's change
    monkeypatch.setenv("METAFLOW_USER", "bob")
    refused = deployer()
    calls = recorded(refused)
    with pytest.raises(UsageError) as caught:
        refused.apply(plan_for(flow), None, False)
    assert "--authorize" in str(caught.value) and "alice" in caught.value.message
    assert mutating(calls) == []
    with pytest.raises(UsageError, match="alice"):
        deployer().apply(plan_for(flow), "not-the-token", False)
    second = deployer().apply(plan_for(flow), first["token"], False)
    assert second["namespace"] == first["namespace"]
    machine = aws()["stepfunctions"].describe_state_machine(stateMachineArn=first["state_machine_arn"])
    assert json.loads(machine["definition"]) == plan_for(flow).definition


def test_generate_new_token_changes_the_namespace(moto_aws, flow):
    first = deployer().apply(plan_for(flow), None, False)
    second = deployer().apply(plan_for(flow), None, True)
    assert second["token"] != first["token"]
    assert second["namespace"] != first["namespace"] and second["namespace"].startswith("production:")
    sfn = aws()["stepfunctions"]
    tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=second["state_machine_arn"])["tags"]}
    assert tags["metaflow:namespace"] == second["namespace"]
    # Batch tasks read the namespace of their run from here.
    record = json.loads(aws()["s3"].get_object(Bucket=SFN_BUCKET, Key="metaflow/DeployFlow/_deployment.json")
                        ["Body"].read())
    assert record["namespace"] == second["namespace"]
    # And it stays the new one.
    assert deployer().apply(plan_for(flow), None, False)["namespace"] == second["namespace"]


# -- AWS errors and half-way deploys ---------------------------------------------------------------


def test_a_missing_bucket_is_an_aws_error_naming_the_call(moto_aws, flow):
    aws()["s3"].delete_bucket(Bucket=SFN_BUCKET)
    with pytest.raises(AwsError) as caught:
        deployer().apply(plan_for(flow), None, False)
    assert caught.value.exit_code == 6
    # The first call to fail is the one that names the deployment record (moto refuses its HEAD already,
    # AWS its PUT): either way the message says which object.
    assert f"s3://{SFN_BUCKET}/metaflow/DeployFlow/_deployment.json" in caught.value.message
    assert "NoSuchBucket" in caught.value.message
    assert aws()["stepfunctions"].list_state_machines()["stateMachines"] == []


def test_a_refused_batch_call_is_an_aws_error_naming_the_call(moto_aws, flow):
    plan = plan_for(flow)
    target = deployer()
    with Stubber(target.batch) as stub:
        stub.add_response("describe_job_definitions", {"jobDefinitions": []})
        stub.add_client_error("register_job_definition", service_error_code="AccessDeniedException",
                              service_message="not allowed to batch:RegisterJobDefinition", http_status_code=403)
        with pytest.raises(AwsError) as caught:
            target.apply(plan, None, False)
    assert caught.value.message.startswith("AWS refused registering Batch job definition metaflow-DeployFlow-")
    assert "AccessDeniedException" in caught.value.message
    assert "permission" in str(caught.value)
    assert caught.value.exit_code == 6


def test_a_deploy_stopped_after_the_state_machine_is_repaired_by_running_it_again(moto_aws, flow):
    flow["decorators"] = HOURLY
    plan = plan_for(flow)
    broken = deployer()
    with Stubber(broken.events) as stub:
        stub.add_client_error("describe_rule", service_error_code="ResourceNotFoundException", http_status_code=400)
        stub.add_client_error("put_rule", service_error_code="ThrottlingException", service_message="Rate exceeded",
                              http_status_code=400)
        with pytest.raises(AwsError, match="creating the schedule rule") as caught:
            broken.apply(plan, None, False)
    assert "run the same command again" in str(caught.value)
    machines = aws()["stepfunctions"].list_state_machines()["stateMachines"]
    assert [m["name"] for m in machines] == ["DeployFlow"]
    assert not rule_exists("DeployFlow")

    repair = deployer()
    calls = recorded(repair)
    result = repair.apply(plan_for(flow), None, False)
    assert sorted(mutating(calls)) == ["PutRule", "PutTargets"]
    targets = aws()["events"].list_targets_by_rule(Rule="DeployFlow")["Targets"]
    assert [t["Arn"] for t in targets] == [result["state_machine_arn"]] == [machines[0]["stateMachineArn"]]


def test_a_deploy_stopped_before_the_state_machine_resumes_where_it_stopped(moto_aws, flow):
    plan = plan_for(flow)
    broken = deployer()
    with Stubber(broken.sfn) as stub:
        stub.add_response("list_state_machines", {"stateMachines": []})
        stub.add_client_error("create_state_machine", service_error_code="ServiceUnavailable", http_status_code=503)
        with pytest.raises(AwsError, match="creating the state machine"):
            broken.apply(plan, None, False)
    assert len(job_definitions()) == 2
    repair = deployer()
    calls = recorded(repair)
    result = repair.apply(plan_for(flow), None, False)
    # The package and job definitions are already there: only the state machine is made.
    assert mutating(calls) == ["CreateStateMachine"]
    assert result["state_machine_arn"].endswith(":stateMachine:DeployFlow")


def test_delete_removes_the_state_machine_and_its_rule(moto_aws, flow):
    flow["decorators"] = HOURLY
    deployer().apply(plan_for(flow), None, False)
    assert deployer().delete("DeployFlow") is True
    assert aws()["stepfunctions"].list_state_machines()["stateMachines"] == []
    assert not rule_exists("DeployFlow")
    assert deployer().delete("DeployFlow") is False


def test_batch_decorator_overrides_image_role_and_queue_for_its_step(moto_aws, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    gpu_step = {"name": "batch", "attributes": {"image": "my/gpu-r:1", "iam_role": "arn:aws:iam::1:role/gpu",
                                                "queue": "gpu-queue"}}
    spec = make_spec("BatchFlow", [step("start", "end", decorators=[gpu_step]), step("end")],
                     script=write_flow_script(tmp_path))
    plan = plan_for(spec)
    by_step = _by_step(plan.definition)
    start, end = plan.job_definitions[by_step["start"]], plan.job_definitions[by_step["end"]]
    assert start["containerProperties"]["image"] == "my/gpu-r:1"
    assert start["containerProperties"]["jobRoleArn"] == "arn:aws:iam::1:role/gpu"
    assert end["containerProperties"]["image"] == SFN_SETTINGS["METAFLOW_BATCH_CONTAINER_IMAGE"]
    queues = {name: state["Parameters"]["JobQueue"] for name, state in plan.definition["States"].items()
              if state["Type"] == "Task" and "JobQueue" in state.get("Parameters", {})}
    assert queues == {"start": "gpu-queue", "end": SFN_SETTINGS["METAFLOW_BATCH_JOB_QUEUE"]}
    environment = {e["name"]: e["value"] for e in end["containerProperties"]["environment"]}
    assert environment["AWS_DEFAULT_REGION"] == "eu-west-1"
