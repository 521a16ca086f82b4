"""No secret of the deployer's environment reaches what a deployment leaves in AWS or prints.

With distinctive fake AWS credentials, a session token, a production token and another secret in the
environment, a whole deployment (create, trigger, list-runs, status, an AWS failure) runs against moto; none of
the values may appear in the state machine definition, its tags, the job definitions, the schedule, the code
package (unpacked), any other object written to S3, the execution input, or anything the CLI printed or logged.
What the code package leaves out by directory and size is tested in test_package.py.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import tarfile

import boto3
import pytest
from conftest import SFN_BUCKET, make_spec, param, step, write_flow_script

from metaflow_r.cli.entry import main

VERSIONS = {"R": "R version 4.2.2", "metaflow": "0.1.0"}
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAZZLEAKCHECK4KEY7",
    "AWS_SECRET_ACCESS_KEY": "leakcheck/SECRET+accessKEY/0123456789abcdefXYZ",
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjLEAKCHECKsessionTOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQD",
    "METAFLOW_PRODUCTION_TOKEN": "leakcheckflow-0-c0ffee",
    "DATABASE_PASSWORD": "hunter2-leakcheck-db-password",
}


@pytest.fixture
def secret_env(moto_aws, monkeypatch):
    """The deployer's shell, full of secrets (moto accepts any credentials)."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


@pytest.fixture
def flow(launch_dir):
    return make_spec("SecretFlow", [
        step("start", "body", foreach="items"), step("body", "join"), step("join", "end", join=True), step("end"),
    ], parameters=[param("alpha", default=0.1, type="float")],
        script=write_flow_script(launch_dir, "secret_flow.R"),
        decorators=[{"name": "schedule", "attributes": {"daily": True}}])


def cli(capsys, argv, spec, launch_dir):
    code = main(argv, json.dumps(spec), {"launch_dir": str(launch_dir), "rscript": "Rscript", "versions": VERSIONS})
    out, err = capsys.readouterr()
    return code, out + err


def client(name):
    return boto3.client(name, region_name="us-east-1")


def unpacked(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def leaks(where: str, text: str | bytes, secrets=SECRETS) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return [f"{name} in {where}" for name, value in secrets.items() if value in text]


def everything_deployed() -> dict[str, str | bytes]:
    """Every place a deployment writes to, read back raw: name -> content."""
    found: dict[str, str | bytes] = {}
    sfn = client("stepfunctions")
    for machine in sfn.list_state_machines()["stateMachines"]:
        arn = machine["stateMachineArn"]
        found[f"definition of {machine['name']}"] = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
        found[f"tags of {machine['name']}"] = json.dumps(sfn.list_tags_for_resource(resourceArn=arn))
        for execution in sfn.list_executions(stateMachineArn=arn)["executions"]:
            found[f"input of {execution['name']}"] = sfn.describe_execution(
                executionArn=execution["executionArn"])["input"]
    for job in client("batch").describe_job_definitions()["jobDefinitions"]:
        found[f"job definition {job['jobDefinitionName']}"] = json.dumps(job, default=str)
    events = client("events")
    for rule in events.list_rules()["Rules"]:
        found[f"rule {rule['Name']}"] = json.dumps(rule, default=str)
        found[f"targets of {rule['Name']}"] = json.dumps(events.list_targets_by_rule(Rule=rule["Name"]))
    s3 = client("s3")
    for entry in s3.list_objects_v2(Bucket=SFN_BUCKET).get("Contents", []):
        body = s3.get_object(Bucket=SFN_BUCKET, Key=entry["Key"])["Body"].read()
        found[f"s3://{SFN_BUCKET}/{entry['Key']}"] = body
        if entry["Key"].endswith(".tgz"):
            for member, content in unpacked(body).items():
                found[f"{entry['Key']}:{member}"] = content
    return found


def test_no_secret_reaches_aws_or_the_output(capsys, caplog, secret_env, flow, launch_dir):
    caplog.set_level(logging.INFO)
    printed = []
    for argv in (["--with", "retry", "step-functions", "create", "--tag", "team:ml"],
                 ["step-functions", "create"],
                 ["step-functions", "trigger", "--alpha", "0.5", "--run-id", "r1"],
                 ["step-functions", "list-runs"],
                 ["step-functions", "status", "r1"],
                 ["step-functions", "create", "--only-json"]):
        code, out = cli(capsys, argv, flow, launch_dir)
        assert code == 0, out
        printed.append(out)
    deployed = everything_deployed()
    assert any(":metaflow.json" in where for where in deployed), "the code package was not found"
    assert any(where.startswith("definition of") for where in deployed)
    assert any(where.startswith("job definition") for where in deployed)
    found = [leak for where, content in deployed.items() for leak in leaks(where, content)]
    found += leaks("the CLI's output", "\n".join(printed))
    found += leaks("the log records", "\n".join(r.getMessage() for r in caplog.records))
    assert found == []


def test_the_production_token_stays_out_of_the_definition_jobs_and_code(capsys, secret_env, flow, launch_dir):
    """The deployment's own token is, by design (as in Metaflow), part of its namespace, which the first create
    prints and the state machine's tag holds; it is not in what runs the flow."""
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    record = json.loads(client("s3").get_object(Bucket=SFN_BUCKET, Key="metaflow/SecretFlow/_deployment.json")
                        ["Body"].read())
    token = {"token": record["token"]}
    assert record["token"] != SECRETS["METAFLOW_PRODUCTION_TOKEN"]  # the environment's token is never taken up
    for where, content in everything_deployed().items():
        if where.startswith(("definition of", "job definition")) or ".tgz:" in where:
            assert leaks(where, content, token) == []


def test_the_job_definitions_carry_only_metaflow_settings(secret_env, capsys, flow, launch_dir):
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    for job in client("batch").describe_job_definitions(status="ACTIVE")["jobDefinitions"]:
        names = {e["name"] for e in job["containerProperties"]["environment"]}
        assert names <= {"METAFLOW_FLOW_NAME", "METAFLOW_DEFAULT_DATASTORE", "METAFLOW_DATASTORE_SYSROOT_S3",
                         "METAFLOW_SFN_DYNAMO_DB_TABLE", "METAFLOW_BATCH_ATTEMPTS", "AWS_DEFAULT_REGION"}
        # Credentials come from the job role, never from the deployer.
        assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def test_an_aws_failure_prints_no_secret(capsys, secret_env, flow, launch_dir):
    client("s3").delete_bucket(Bucket=SFN_BUCKET)
    code, out = cli(capsys, ["step-functions", "create"], flow, launch_dir)
    assert code == 6 and "AWS refused" in out
    assert leaks("the error", out) == []


def test_secret_files_beside_the_flow_are_not_packaged(capsys, secret_env, flow, launch_dir):
    """Files a project keeps its secrets in: only *.R files (and the script) are packaged, hidden directories
    never (test_package.py covers .metaflow, .venv, .git and the size limit)."""
    secret = "leakcheck-file-secret-value"
    (launch_dir / ".Renviron").write_text(f"API_KEY={secret}\n")
    (launch_dir / ".env").write_text(f"API_KEY={secret}\n")
    (launch_dir / "secrets.yaml").write_text(f"api_key: {secret}\n")
    (launch_dir / "id_rsa").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n")
    (launch_dir / ".aws").mkdir()
    (launch_dir / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {secret}\n")
    (launch_dir / ".secrets").mkdir()
    (launch_dir / ".secrets" / "keys.R").write_text(f"key <- '{secret}'\n")
    assert cli(capsys, ["step-functions", "create"], flow, launch_dir)[0] == 0
    packages = {where: content for where, content in everything_deployed().items() if ".tgz:" in where}
    assert sorted(where.rsplit(":", 1)[1] for where in packages) == ["metaflow.json", "secret_flow.R"]
    assert [where for where, content in packages.items() if secret.encode() in content] == []
