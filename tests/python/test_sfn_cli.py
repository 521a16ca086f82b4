"""``step-functions`` commands through ``main(argv, spec_json, info)``, in-process, against moto."""
from __future__ import annotations

import json

import boto3
import pytest
from conftest import SFN_BUCKET, make_spec, param, step, write_flow_script

from metaflow_r.cli.entry import main

VERSIONS = {"R": "R version 4.2.2", "metaflow": "0.1.0"}


@pytest.fixture
def flow(launch_dir):
    """examples/parameter_flow.R's spec, plus a foreach so the DynamoDB table and Map appear."""
    return make_spec("ParameterFlow", [
        step("start", "body", foreach="items"), step("body", "join"), step("join", "end", join=True), step("end"),
    ], parameters=[param("alpha", help="learning rate", default=0.1, type="float"),
                   param("loud", help="Shout.", is_flag=True, type="bool")],
        script=write_flow_script(launch_dir, "parameter_flow.R"))


def cli(capsys, argv, spec, launch_dir):
    code = main(argv, json.dumps(spec), {"launch_dir": str(launch_dir), "rscript": "Rscript", "versions": VERSIONS})
    out, err = capsys.readouterr()
    return code, out, err


def sfn():
    return boto3.client("stepfunctions", region_name="us-east-1")


def machine_arn(name="ParameterFlow"):
    found = [m["stateMachineArn"] for m in sfn().list_state_machines()["stateMachines"] if m["name"] == name]
    return found[0] if found else None


def executions(name="ParameterFlow"):
    return sfn().list_executions(stateMachineArn=machine_arn(name))["executions"]


def rule_names():
    return [r["Name"] for r in boto3.client("events", region_name="us-east-1").list_rules()["Rules"]]


def s3_keys():
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=SFN_BUCKET)
    return [o["Key"] for o in listed.get("Contents", [])]


# -- create --only-json ----------------------------------------------------------------------------


def test_only_json_needs_no_settings_and_no_aws(capsys, flow, launch_dir, no_metaflow_settings, monkeypatch,
                                                tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    # Any AWS call would have no credentials and nowhere to go.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    flow["decorators"] = [{"name": "schedule", "attributes": {"daily": True}}]
    code, out, err = cli(capsys, ["step-functions", "create", "--only-json", "--max-workers", "5",
                                  "--foreach-mode", "distributed"], flow, launch_dir)
    assert code == 0, err
    definition = json.loads(out)
    start = definition["States"]["start"]["Parameters"]
    assert start["JobQueue"] == "<METAFLOW_BATCH_JOB_QUEUE>"
    env = {e["Name"]: e.get("Value") for e in start["ContainerOverrides"]["Environment"]}
    assert env["METAFLOW_CODE_URL"].startswith("<METAFLOW_DATASTORE_SYSROOT_S3>/ParameterFlow/_code/")
    maps = [s for s in definition["States"].values() if s["Type"] == "Map"]
    assert maps[0]["ItemReader"]["Parameters"]["Bucket"] == "<METAFLOW_DATASTORE_SYSROOT_S3>"
    assert [m["MaxConcurrency"] for m in maps] == [5]


def test_only_json_shows_what_create_deploys(capsys, flow, launch_dir, moto_aws):
    code, out, _ = cli(capsys, ["step-functions", "create", "--only-json"], flow, launch_dir)
    assert code == 0
    assert s3_keys() == [] and machine_arn() is None  # --only-json touched nothing
    code, _, err = cli(capsys, ["step-functions", "create"], flow, launch_dir)
    assert code == 0, err
    deployed = sfn().describe_state_machine(stateMachineArn=machine_arn())["definition"]
    assert json.loads(deployed) == json.loads(out)


# -- create ----------------------------------------------------------------------------------------


def test_create_reports_the_deployment(capsys, flow, launch_dir, moto_aws):
    code, out, err = cli(capsys, ["--with", "retry", "step-functions", "create", "--tag", "team:ml"], flow,
                         launch_dir)
    assert code == 0, err
    assert "Flow ParameterFlow is deployed to Step Functions" in out
    assert "namespace production:parameterflow-" in out
    jobs = boto3.client("batch", region_name="us-east-1").describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    assert {j["retryStrategy"]["attempts"] for j in jobs} == {4}
    tags = {t["key"]: t["value"] for t in sfn().list_tags_for_resource(resourceArn=machine_arn())["tags"]}
    assert tags["team"] == "ml"
    # Deploying again is quiet about it.
    code, out, _ = cli(capsys, ["--with", "retry", "step-functions", "create", "--tag", "team:ml"], flow, launch_dir)
    assert code == 0 and "is up to date" in out


def packaged_files() -> list[str]:
    import gzip
    import io
    import tarfile

    (key,) = [k for k in s3_keys() if "/_code/" in k]
    body = boto3.client("s3", region_name="us-east-1").get_object(Bucket=SFN_BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as tar:
        return sorted(tar.getnames())


def test_create_lists_the_package_and_warns_about_what_it_leaves_out(capsys, flow, launch_dir, moto_aws):
    (launch_dir / "data.csv").write_text("n\n1\n")
    (launch_dir / "notes.txt").write_text("not code\n")
    code, out, err = cli(capsys, ["step-functions", "create"], flow, launch_dir)
    assert code == 0, err
    size = (launch_dir / "parameter_flow.R").stat().st_size
    assert f"Code package: 1 file(s), {size:,} bytes: parameter_flow.R." in out
    assert "Warning: left out of the code package" in err and "data.csv, notes.txt" in err
    assert "--package-suffixes=.R,.csv,.txt" in err
    assert packaged_files() == ["metaflow.json", "parameter_flow.R"]


@pytest.mark.parametrize("how", ["option", "spec", "spec as one string"])
def test_package_suffixes_put_data_in_the_package(capsys, flow, launch_dir, moto_aws, how):
    (launch_dir / "data.csv").write_text("n\n1\n")
    argv = ["step-functions", "create"]
    if how == "option":  # Rscript flow.R --package-suffixes=.R,.csv step-functions create
        argv = ["--package-suffixes=.R,.csv", *argv]
    else:  # run(package_suffixes = c(".R", ".csv")) or run(package_suffixes = ".R,.csv")
        flow["package_suffixes"] = [".R", ".csv"] if how == "spec" else [".R,.csv"]
    code, out, err = cli(capsys, argv, flow, launch_dir)
    assert code == 0, err
    assert "Code package: 2 file(s)" in out and "data.csv" in out
    assert "Warning" not in err
    assert packaged_files() == ["data.csv", "metaflow.json", "parameter_flow.R"]


def test_a_package_over_the_size_limit_fails_before_any_aws_call(capsys, flow, launch_dir, moto_aws):
    for name in ("a.csv", "b.csv"):
        with open(launch_dir / name, "wb") as handle:
            handle.truncate(60 * 1024 * 1024)  # sparse: no disk used
    code, _, err = cli(capsys, ["--package-suffixes=.csv", "step-functions", "create"], flow, launch_dir)
    assert code == 2
    assert "The code package would hold" in err and "S3" in err and "Traceback" not in err
    assert s3_keys() == [] and machine_arn() is None


def test_create_without_settings_names_them_and_touches_nothing(capsys, flow, launch_dir, moto_aws, monkeypatch):
    monkeypatch.delenv("METAFLOW_BATCH_CONTAINER_IMAGE")
    monkeypatch.delenv("METAFLOW_SFN_IAM_ROLE")
    code, _, err = cli(capsys, ["step-functions", "create"], flow, launch_dir)
    assert code == 5
    assert "METAFLOW_BATCH_CONTAINER_IMAGE" in err and "METAFLOW_SFN_IAM_ROLE" in err
    assert "Traceback" not in err
    assert s3_keys() == []


@pytest.mark.parametrize("command", [["trigger"], ["create"], ["list-runs"]])
def test_a_missing_region_is_named_like_a_missing_setting(capsys, flow, launch_dir, moto_aws, monkeypatch, tmp_path,
                                                          command):
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION", "METAFLOW_AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    code, _, err = cli(capsys, ["step-functions", *command], flow, launch_dir)
    assert code == 5 and "AWS needs a setting that is missing: AWS_REGION." in err, err
    assert "NoRegionError" not in err and "Traceback" not in err


def test_a_flow_name_too_long_for_aws_fails_before_any_aws_call(capsys, flow, launch_dir, moto_aws):
    flow["name"] = "P" * 81
    code, _, err = cli(capsys, ["step-functions", "create"], flow, launch_dir)
    assert code == 2 and "at most 80 characters" in err
    assert s3_keys() == [] and sfn().list_state_machines()["stateMachines"] == []


def test_explain_prints_the_budget_beside_the_definition(capsys, flow, launch_dir, no_metaflow_settings):
    code, out, err = cli(capsys, ["step-functions", "create", "--only-json", "--explain", "--max-num-splits",
                                  "100000"], flow, launch_dir)
    assert code == 0, err
    assert json.loads(out)["StartAt"] == "metaflow-parameters"  # stdout stays the definition alone
    assert "foreach start: 100,000 items as Batch array jobs" in err
    # Ten array jobs of 10,000: two transitions each, beside the run's seven.
    assert "state transitions: 27 ($0.00068 at $0.025 per 1,000" in err
    assert "Batch: 100,003 tasks, 13 SubmitJob calls" in err
    assert "not --max-workers" in err  # what an array job means for concurrency


def test_create_without_explain_notes_what_the_constructs_mean(capsys, flow, launch_dir, moto_aws):
    code, out, err = cli(capsys, ["step-functions", "create", "--foreach-mode", "inline", "--max-num-splits", "200"],
                         flow, launch_dir)
    assert code == 0, err
    assert "Note: Foreach 'start' is an inline Map: at most 40 of its items run at once, not --max-workers 100." \
        in out


def test_a_plan_over_a_quota_is_refused_before_any_aws_call(capsys, flow, launch_dir, moto_aws):
    code, out, err = cli(capsys, ["step-functions", "create", "--foreach-mode", "inline"], flow, launch_dir)
    assert code == 2
    assert "would record up to 100,033 history events; Step Functions fails an execution at 25,000" in err
    assert "--foreach-mode" in err and "Traceback" not in err
    assert s3_keys() == [] and machine_arn() is None


def test_a_bad_foreach_option_is_one_clear_error(capsys, flow, launch_dir, no_metaflow_settings):
    code, _, err = cli(capsys, ["step-functions", "create", "--only-json", "--foreach-mode", "body=array"], flow,
                       launch_dir)
    assert code == 2 and "'body' is not a foreach step of the flow" in err and "Its foreach steps: start" in err


def test_an_aws_failure_exits_6_naming_the_call(capsys, flow, launch_dir, moto_aws):
    boto3.client("s3", region_name="us-east-1").delete_bucket(Bucket=SFN_BUCKET)
    code, _, err = cli(capsys, ["step-functions", "create"], flow, launch_dir)
    assert code == 6
    assert "AWS refused" in err and f"s3://{SFN_BUCKET}/metaflow/ParameterFlow/_deployment.json" in err
    assert "Traceback" not in err


def test_another_user_is_refused_then_authorized(capsys, flow, launch_dir, moto_aws, monkeypatch):
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    token = json.loads(boto3.client("s3", region_name="us-east-1").get_object(
        Bucket=SFN_BUCKET, Key="metaflow/ParameterFlow/_deployment.json")["Body"].read())["token"]
    monkeypatch.setenv("METAFLOW_USER", "bob")
    code, _, err = cli(capsys, ["step-functions", "create"], flow, launch_dir)
    assert code == 2 and "--authorize" in err
    code, out, err = cli(capsys, ["step-functions", "create", "--authorize", token], flow, launch_dir)
    assert code == 0, err
    code, out, _ = cli(capsys, ["step-functions", "create", "--generate-new-token"], flow, launch_dir)
    assert code == 0 and "A new production token was generated" in out
    assert token not in out


# -- trigger ---------------------------------------------------------------------------------------


def test_trigger_passes_the_parameters_as_a_json_string(capsys, flow, launch_dir, moto_aws):
    assert cli(capsys, ["--with", "retry", "step-functions", "create"], flow, launch_dir)[0] == 0
    code, out, err = cli(capsys, ["step-functions", "trigger", "--alpha", "0.5"], flow, launch_dir)
    assert code == 0, err
    [execution] = executions()
    assert f"(run-id {execution['name']})" in out
    described = sfn().describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"Parameters": "{\"alpha\": 0.5}"}
    assert described["status"] == "RUNNING"  # moto does not execute it


def test_trigger_without_values_leaves_defaults_to_the_start_task(capsys, flow, launch_dir, moto_aws):
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    assert cli(capsys, ["step-functions", "trigger", "--run-id", "defaults"], flow, launch_dir)[0] == 0
    [execution] = executions()
    described = sfn().describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"Parameters": "{}"}
    assert cli(capsys, ["step-functions", "trigger", "--run-id", "flagged", "--loud"], flow, launch_dir)[0] == 0
    flagged = [e for e in executions() if e["name"] == "flagged"][0]
    assert json.loads(sfn().describe_execution(executionArn=flagged["executionArn"])["input"]) == {
        "Parameters": "{\"loud\": true}"}


def test_the_same_run_id_twice_starts_one_execution(capsys, flow, launch_dir, moto_aws, tmp_path):
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    run_id_file = tmp_path / "run-id"
    argv = ["step-functions", "trigger", "--alpha", "0.5", "--run-id", "nightly-2024-01-01",
            "--run-id-file", str(run_id_file)]
    first = cli(capsys, argv, flow, launch_dir)
    # AWS documents StartExecution as idempotent for the same name and input while the execution runs (it
    # answers ExecutionAlreadyExists once it has finished or when the input differs); moto does the same.
    second = cli(capsys, argv, flow, launch_dir)
    assert first[0] == 0 and second[0] == 0, second[2]
    assert run_id_file.read_text() == "nightly-2024-01-01"
    assert [e["name"] for e in executions()] == ["nightly-2024-01-01"]
    # The same name with other parameters is refused as a usage error, and still starts nothing.
    code, _, err = cli(capsys, ["step-functions", "trigger", "--alpha", "0.7", "--run-id", "nightly-2024-01-01"],
                       flow, launch_dir)
    assert code == 2 and "already used with other parameters" in err
    assert len(executions()) == 1


def test_trigger_seed_is_the_runs_seed_in_the_parameters(capsys, flow, launch_dir, moto_aws):
    """trigger --seed N, as run --seed N: the start task reads it from the Parameters (aws/batch/task.py)."""
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    code, _, err = cli(capsys, ["step-functions", "trigger", "--run-id", "seeded", "--seed", "42", "--alpha", "0.5"],
                       flow, launch_dir)
    assert code == 0, err
    [execution] = executions()
    described = sfn().describe_execution(executionArn=execution["executionArn"])
    assert json.loads(json.loads(described["input"])["Parameters"]) == {"alpha": 0.5, "metaflow.seed": 42}
    code, _, err = cli(capsys, ["step-functions", "trigger", "--seed", "0"], flow, launch_dir)
    assert code == 2 and "--seed" in err and len(executions()) == 1


def test_a_flows_own_seed_parameter_keeps_trigger_seed(capsys, launch_dir, moto_aws):
    spec = make_spec("SeedParamFlow", [step("start", "end"), step("end")],
                     parameters=[param("seed", default=1, type="int")],
                     script=write_flow_script(launch_dir, "seed_param.R"))
    assert cli(capsys, ["step-functions", "create"], spec, launch_dir)[0] == 0
    assert cli(capsys, ["step-functions", "trigger", "--seed", "5"], spec, launch_dir)[0] == 0
    [execution] = executions("SeedParamFlow")
    described = sfn().describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"Parameters": "{\"seed\": 5}"}


def test_trigger_with_a_wrong_parameter_type_starts_nothing(capsys, flow, launch_dir, moto_aws):
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    code, _, err = cli(capsys, ["step-functions", "trigger", "--alpha", "fast"], flow, launch_dir)
    assert code == 2 and "alpha" in err
    assert executions() == []


def test_trigger_with_an_invalid_run_id_starts_nothing(capsys, flow, launch_dir, moto_aws):
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    code, _, err = cli(capsys, ["step-functions", "trigger", "--run-id", "has space"], flow, launch_dir)
    assert code == 2 and "not a valid execution name" in err
    assert executions() == []


def test_trigger_of_an_undeployed_flow_says_so(capsys, flow, launch_dir, moto_aws):
    code, _, err = cli(capsys, ["step-functions", "trigger", "--alpha", "0.5"], flow, launch_dir)
    assert code == 2
    assert "Flow ParameterFlow is not deployed" in err and "step-functions create" in err
    assert "Traceback" not in err


# -- list-runs and delete --------------------------------------------------------------------------


def test_list_runs_lists_the_triggered_run(capsys, flow, launch_dir, moto_aws):
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    code, out, _ = cli(capsys, ["step-functions", "list-runs"], flow, launch_dir)
    assert code == 0 and "No runs found." in out
    assert cli(capsys, ["step-functions", "trigger", "--run-id", "run-one"], flow, launch_dir)[0] == 0
    code, out, _ = cli(capsys, ["step-functions", "list-runs"], flow, launch_dir)
    assert code == 0
    assert out.splitlines()[0].startswith("run-one  RUNNING  started ")
    code, out, _ = cli(capsys, ["step-functions", "list-runs", "--succeeded"], flow, launch_dir)
    assert code == 0 and "run-one" not in out


def test_delete_removes_the_state_machine_and_the_rule(capsys, flow, launch_dir, moto_aws):
    flow["decorators"] = [{"name": "schedule", "attributes": {"cron": "0 10 * * ? *"}}]
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    assert machine_arn() is not None and rule_names() == ["ParameterFlow"]
    code, out, _ = cli(capsys, ["step-functions", "delete"], flow, launch_dir)
    assert code == 0 and "deleted" in out
    assert machine_arn() is None and rule_names() == []
    code, out, _ = cli(capsys, ["step-functions", "delete"], flow, launch_dir)
    assert code == 0 and "was not deployed" in out
    code, _, err = cli(capsys, ["step-functions", "list-runs"], flow, launch_dir)
    assert code == 2 and "not deployed" in err


def test_an_aws_error_in_any_command_is_a_clear_message_not_a_traceback(capsys, flow, launch_dir, moto_aws,
                                                                         monkeypatch):
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://no-such-bucket/metaflow")
    code, out, err = cli(capsys, ["step-functions", "logs", "sfn-1/start"], flow, launch_dir)
    assert code == 6
    assert "NoSuchBucket" in err and "Traceback" not in out + err


def test_the_s3_root_may_come_from_the_config_file(tmp_path, monkeypatch):
    from metaflow_r.core import config
    from metaflow_r.datastore.flow import storage_for

    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_S3", raising=False)
    monkeypatch.setenv("METAFLOW_HOME", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"METAFLOW_DATASTORE_SYSROOT_S3": "s3://from-config/mf"}))
    config._config_file.cache_clear()
    try:
        assert storage_for("s3").root == "s3://from-config/mf"
    finally:
        config._config_file.cache_clear()


# -- logs --------------------------------------------------------------------------------------------


def test_logs_print_a_task_log_longer_than_one_cloudwatch_page_whole(capsys, flow, launch_dir, moto_aws):
    """GetLogEvents returns at most 10,000 events a call: a long log is read page after page to its end."""
    import time

    from metaflow_r.datastore.flow import FlowDatastore, storage_for

    batch = boto3.client("batch", region_name="us-east-1")
    role = boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch.create_compute_environment(computeEnvironmentName="env1", type="UNMANAGED", state="ENABLED",
                                     serviceRole=role)
    batch.create_job_queue(jobQueueName="queue", state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "env1"}])
    batch.register_job_definition(jobDefinitionName="job", type="container", containerProperties={
        "image": "r", "command": ["true"],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}]})
    job_id = batch.submit_job(jobName="start", jobQueue="queue", jobDefinition="job")["jobId"]
    stream = batch.describe_jobs(jobs=[job_id])["jobs"][0]["container"]["logStreamName"]
    logs = boto3.client("logs", region_name="us-east-1")
    logs.create_log_group(logGroupName="/aws/batch/job")
    logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=stream)
    now = int(time.time() * 1000)
    for first in range(0, 12_345, 5_000):
        logs.put_log_events(logGroupName="/aws/batch/job", logStreamName=stream, logEvents=[
            {"timestamp": now + i, "message": f"line {i}"} for i in range(first, min(first + 5_000, 12_345))])
    ds = FlowDatastore(storage_for("s3"), "ParameterFlow")
    ds.write_attempt("sfn-1", "start", "start", 0, {"attempt": 0, "successful": True, "batch_job_id": job_id})

    code, out, err = cli(capsys, ["step-functions", "logs", "sfn-1/start"], flow, launch_dir)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("--- ParameterFlow/sfn-1/start/start, attempt 1")
    assert lines[1:] == [f"line {i}" for i in range(12_345)]
