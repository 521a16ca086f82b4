"""The least IAM policies of tests/python/iam_policies.json (mirrored in docs/iam.md) are enough, and no more.

Every AWS call the deployer's commands make (create, trigger, list-runs, status, logs, delete, through
``metaflow_r.cli.entry.main`` against moto in-process), every call of a local run whose steps are Batch jobs
(``run --with batch`` and ``resume --with batch``, its jobs run in-process) and every call a Batch task makes
(``run_batch_task`` with a stand-in for Rscript) is recorded from botocore's own events, turned into the IAM action(s) and resource ARN
AWS authorises it against, and checked against the role's policy with a small evaluator (Allow, Deny,
wildcards, StringEquals/StringLike conditions). The state machine's and the schedule's roles are checked
against what the compiled definition and the schedule target need. Each policy must also use every action it
allows, so it stays least.
"""
from __future__ import annotations

import contextlib
import copy
import fnmatch
import json
import os
import re
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import boto3
import botocore.session
import pytest
from conftest import SFN_BUCKET, SFN_SETTINGS, make_spec, param, step, write_flow_script

from metaflow_r.aws.step_functions.compile import (
    BATCH_RESOURCE,
    DYNAMODB_GET_ITEM,
    S3_GET_OBJECT,
    S3_PUT_OBJECT,
    S3_SDK_PUT_OBJECT,
)
from metaflow_r.cli.entry import main

HERE = Path(__file__).parent
POLICY_FILE = HERE / "iam_policies.json"
DOC_FILE = HERE.parent.parent / "docs" / "iam.md"
REGION, ACCOUNT = "us-east-1", "123456789012"
VERSIONS = {"R": "R version 4.2.2", "metaflow": "0.1.0"}
# The placeholders of iam_policies.json, filled with conftest's settings.
VALUES = {
    "{{Region}}": REGION,
    "{{Account}}": ACCOUNT,
    "{{Bucket}}": SFN_BUCKET,
    "{{S3Root}}": SFN_SETTINGS["METAFLOW_DATASTORE_SYSROOT_S3"][len("s3://"):].rstrip("/"),
    "{{JobQueue}}": SFN_SETTINGS["METAFLOW_BATCH_JOB_QUEUE"].rsplit("/", 1)[-1],
    "{{Table}}": SFN_SETTINGS["METAFLOW_SFN_DYNAMO_DB_TABLE"],
    "{{SfnRole}}": SFN_SETTINGS["METAFLOW_SFN_IAM_ROLE"],
    "{{BatchJobRole}}": SFN_SETTINGS["METAFLOW_ECS_S3_ACCESS_IAM_ROLE"],
    "{{EventsRole}}": SFN_SETTINGS["METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE"],
}
# botocore's service name -> the IAM service prefix.
IAM_PREFIX = {"s3": "s3", "batch": "batch", "stepfunctions": "states", "events": "events", "logs": "logs",
              "dynamodb": "dynamodb", "iam": "iam"}


# -- recording every AWS call ------------------------------------------------------------------------


@dataclass
class Call:
    service: str  # botocore's name, e.g. stepfunctions
    operation: str  # e.g. CreateStateMachine
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.service}.{self.operation}"


@contextlib.contextmanager
def recording() -> Iterator[list[Call]]:
    """Records every AWS request sent by any boto3/botocore client created inside the block.

    Clients come from botocore sessions (boto3.client, boto3.session.Session().client, s3transfer's use of
    a client...), so patching ``botocore.session.Session.create_client`` catches every one. ``before-call``
    fires once per request actually sent (after parameter validation); ``before-parameter-build`` hands
    over the API-level parameters, which are passed on through the shared request context.
    """
    calls: list[Call] = []
    original = botocore.session.Session.create_client

    def create_client(self, *args, **kwargs):
        client = original(self, *args, **kwargs)
        service = client.meta.service_model.service_name

        def keep_params(params, context, **_):
            context["iam-test-params"] = copy.deepcopy({k: v for k, v in params.items() if k != "Body"})

        def record(model, context, **_):
            calls.append(Call(service, model.name, context.get("iam-test-params", {})))

        client.meta.events.register("before-parameter-build", keep_params)
        client.meta.events.register("before-call", record)
        return client

    with mock.patch.object(botocore.session.Session, "create_client", create_client):
        yield calls


# -- what IAM authorises each call against -------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


def _s3_object(p):
    return f"arn:aws:s3:::{p['Bucket']}/{p['Key']}"


def _state_machine(name):
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"


def _rule(name):
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"


def _pass_role(arn, service=None):
    return Need("iam:PassRole", arn, (("iam:PassedToService", service),) if service else ())


def needs(call: Call) -> list[Need]:
    """The (action, resource) pairs AWS checks for ``call``; an unknown call fails the test."""
    p, op = call.params, call.operation
    prefix = IAM_PREFIX[call.service]
    if call.service == "s3":
        if op in ("GetObject", "HeadObject"):
            return [Need("s3:GetObject", _s3_object(p))]
        if op in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
            return [Need("s3:PutObject", _s3_object(p))]
        if op == "AbortMultipartUpload":
            return [Need("s3:AbortMultipartUpload", _s3_object(p))]
        if op == "DeleteObject":
            return [Need("s3:DeleteObject", _s3_object(p))]
        if op in ("ListObjectsV2", "ListObjects"):
            return [Need("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", (("s3:prefix", p.get("Prefix", "")),))]
    if call.service == "stepfunctions":
        if op == "ListStateMachines":
            return [Need("states:ListStateMachines", "*")]
        if op == "CreateStateMachine":
            arn = _state_machine(p["name"])
            found = [Need("states:CreateStateMachine", arn), _pass_role(p["roleArn"], "states.amazonaws.com")]
            return found + ([Need("states:TagResource", arn)] if p.get("tags") else [])
        if op == "UpdateStateMachine":
            found = [Need("states:UpdateStateMachine", p["stateMachineArn"])]
            return found + ([_pass_role(p["roleArn"], "states.amazonaws.com")] if p.get("roleArn") else [])
        if op in ("DescribeStateMachine", "DeleteStateMachine", "StartExecution", "ListExecutions"):
            return [Need(f"states:{op}", p["stateMachineArn"])]
        if op in ("ListTagsForResource", "TagResource"):
            return [Need(f"states:{op}", p["resourceArn"])]
        if op in ("DescribeExecution", "GetExecutionHistory", "StopExecution"):
            return [Need(f"states:{op}", p["executionArn"])]
    if call.service == "events":
        if op in ("DescribeRule", "PutRule", "DeleteRule"):
            return [Need(f"events:{op}", _rule(p["Name"]))]
        if op in ("ListTargetsByRule", "RemoveTargets"):
            return [Need(f"events:{op}", _rule(p["Rule"]))]
        if op == "PutTargets":
            return [Need("events:PutTargets", _rule(p["Rule"]))] + [
                _pass_role(t["RoleArn"], "events.amazonaws.com") for t in p["Targets"] if t.get("RoleArn")]
    if call.service == "batch":
        if op in ("DescribeJobDefinitions", "DescribeJobs"):
            return [Need(f"batch:{op}", "*")]
        if op == "SubmitJob":
            queue = p["jobQueue"] if p["jobQueue"].startswith("arn:") else \
                f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{p['jobQueue']}"
            return [Need("batch:SubmitJob", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{p['jobDefinition']}"),
                    Need("batch:SubmitJob", queue)]
        if op == "TerminateJob":
            return [Need("batch:TerminateJob", f"arn:aws:batch:{REGION}:{ACCOUNT}:job/{p['jobId']}")]
        if op == "RegisterJobDefinition":
            found = [Need("batch:RegisterJobDefinition",
                          f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{p['jobDefinitionName']}")]
            role = p.get("containerProperties", {}).get("jobRoleArn")
            return found + ([_pass_role(role)] if role else [])
    if call.service == "logs" and op == "GetLogEvents":
        return [Need("logs:GetLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{p['logGroupName']}"
                                          f":log-stream:{p['logStreamName']}")]
    if call.service == "dynamodb" and op in ("GetItem", "PutItem"):
        return [Need(f"dynamodb:{op}", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{p['TableName']}")]
    raise AssertionError(f"test_iam.py does not know which IAM action {prefix}:{op} ({call}) needs: add it to "
                         "needs() and, if the code really needs it, to iam_policies.json and docs/iam.md")


# -- a small IAM policy evaluator ----------------------------------------------------------------------


def _listed(value):
    return value if isinstance(value, list) else [value]


def _statement_matches(statement, need: Need) -> bool:
    if not any(fnmatch.fnmatchcase(need.action.lower(), a.lower()) for a in _listed(statement["Action"])):
        return False
    if not any(fnmatch.fnmatchcase(need.resource, r) for r in _listed(statement["Resource"])):
        return False
    context = dict(need.context)
    for operator, conditions in statement.get("Condition", {}).items():
        for key, expected in conditions.items():
            if key not in context:
                return False  # IAM: a condition on a key the request lacks does not match
            if operator == "StringEquals":
                matched = context[key] in _listed(expected)
            elif operator == "StringLike":
                matched = any(fnmatch.fnmatchcase(context[key], e) for e in _listed(expected))
            else:
                raise AssertionError(f"the evaluator does not know condition operator {operator}")
            if not matched:
                return False
    return True


def allows(policy, need: Need) -> bool:
    statements = policy["Statement"]
    if any(s["Effect"] == "Deny" and _statement_matches(s, need) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _statement_matches(s, need) for s in statements)


def load_policies(values=VALUES) -> dict[str, Any]:
    text = json.dumps(json.loads(POLICY_FILE.read_text())["roles"])
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    leftover = set(re.findall(r"\{\{\w+\}\}", text))
    assert not leftover, f"placeholders without a value: {leftover}"
    return json.loads(text)


def policy(role: str):
    """A role's policy; "a+b" is the policies of roles a and b attached together."""
    roles = load_policies()
    return {"Statement": [s for name in role.split("+") for s in roles[name]["policy"]["Statement"]]}


def allowed_actions(role: str) -> set[str]:
    return {a for s in policy(role)["Statement"] if s["Effect"] == "Allow" for a in _listed(s["Action"])}


def refused(role: str, calls: list[Call]) -> list[str]:
    return [f"{call} needs {n.action} on {n.resource} {dict(n.context) or ''}".rstrip()
            for call in calls for n in needs(call) if not allows(policy(role), n)]


def check_least(role: str, calls: list[Call]) -> None:
    used = {n.action for call in calls for n in needs(call)}
    unused = allowed_actions(role) - used - set(load_policies()[role]["not_exercised"])
    assert not unused, f"the {role} policy allows actions nothing used: {sorted(unused)}"


# -- the flows --------------------------------------------------------------------------------------


@pytest.fixture
def launch_dir(tmp_path, monkeypatch):
    directory = tmp_path / "project"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


@pytest.fixture
def flow(launch_dir):
    """A scheduled flow with a foreach, so every resource kind appears: job definitions, Map, DynamoDB, rule."""
    return make_spec("IamFlow", [
        step("start", "body", foreach="items"), step("body", "join"), step("join", "end", join=True), step("end"),
    ], parameters=[param("alpha", help="learning rate", default=0.1, type="float")],
        script=write_flow_script(launch_dir, "iam_flow.R"),
        decorators=[{"name": "schedule", "attributes": {"hourly": True}}])


def cli(capsys, argv, spec, launch_dir):
    code = main(argv, json.dumps(spec), {"launch_dir": str(launch_dir), "rscript": "Rscript", "versions": VERSIONS})
    out, err = capsys.readouterr()
    return code, out + err


FAKE_RSCRIPT = """#!{python}
# Stands in for `Rscript flow.R task --context FILE`: leaves one artifact (the foreach's list, for a foreach)
# and outputs.json, as the R side does.
import json, os, sys
context = json.load(open(sys.argv[sys.argv.index("--context") + 1]))
foreach = context["step"] == "start"  # the flow's one foreach, over "items"
name = "items" if foreach else context["step"] + "_value"
with open(os.path.join(context["output_dir"], name + ".rds"), "wb") as handle:
    handle.write(("artifact of " + context["task_id"]).encode())
with open(os.path.join(context["output_dir"], "outputs.json"), "w") as handle:
    json.dump({{"artifacts": {{name: {{"file": name + ".rds", "type": "character", "preview": "chr"}}}},
               "num_splits": 2 if foreach else None}}, handle)
print("stand-in R task", context["step"], context["task_id"])
"""


def fake_rscript(directory: Path) -> str:
    path = directory / "fake-rscript"
    path.write_text(FAKE_RSCRIPT.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def provision_queue():
    """The Batch queue an administrator set up; returns a Batch client."""
    iam = boto3.client("iam", region_name=REGION)
    iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")
    batch = boto3.client("batch", region_name=REGION)
    batch.create_compute_environment(computeEnvironmentName="iam-test", type="UNMANAGED", state="ENABLED",
                                     serviceRole=f"arn:aws:iam::{ACCOUNT}:role/batch-service")
    batch.create_job_queue(jobQueueName=VALUES["{{JobQueue}}"], state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "iam-test"}])
    return batch


def provision_batch_and_logs() -> tuple[str, str]:
    """What an administrator set up (outside the policies under test): the DynamoDB table, a Batch queue,
    one finished job and its CloudWatch log stream, so `logs` has something to read."""
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=SFN_SETTINGS["METAFLOW_SFN_DYNAMO_DB_TABLE"], BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pathspec", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pathspec", "KeyType": "HASH"}])
    batch = provision_queue()
    definition = batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"][0]["jobDefinitionName"]
    job = batch.submit_job(jobName="iam-test", jobQueue=VALUES["{{JobQueue}}"], jobDefinition=definition)["jobId"]
    stream = batch.describe_jobs(jobs=[job])["jobs"][0]["container"]["logStreamName"]
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName="/aws/batch/job")
    logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=stream)
    logs.put_log_events(logGroupName="/aws/batch/job", logStreamName=stream,
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "hello from the job"}])
    return job, stream


def task_environment(monkeypatch, run_id: str, job_id: str) -> None:
    """What the state machine and the job definition give each Batch job, read from the deployed definition."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "IamFlow"][0]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"])
    env = {e["Name"]: e["Value"] for e in
           definition["States"]["start"]["Parameters"]["ContainerOverrides"]["Environment"] if "Value" in e}
    monkeypatch.setenv("METAFLOW_CODE_URL", env["METAFLOW_CODE_URL"])
    monkeypatch.setenv("METAFLOW_CODE_SHA", env["METAFLOW_CODE_SHA"])
    monkeypatch.setenv("METAFLOW_RUN_ID", run_id)
    monkeypatch.setenv("METAFLOW_PARAMETERS", json.dumps({"alpha": 0.5}))
    monkeypatch.setenv("AWS_BATCH_JOB_ID", job_id)
    monkeypatch.setenv("AWS_BATCH_JOB_ATTEMPT", "1")


def run_tasks(monkeypatch, rscript: str) -> None:
    """The run's six tasks, as their Batch jobs would: start (a foreach of 2), body-0, body-1, join, extra, end."""
    from metaflow_r.aws.batch.task import run_batch_task

    for name, split_path in (("start", ""), ("body", "0"), ("body", "1"), ("join", ""), ("extra", ""), ("end", "")):
        monkeypatch.setenv("METAFLOW_STEP", name)
        monkeypatch.setenv("METAFLOW_SPLIT_PATH", split_path)
        assert run_batch_task(rscript=rscript) == 0, f"task {name} {split_path} failed"


def test_the_least_policies_allow_every_call_of_a_whole_deployment(capsys, flow, launch_dir, moto_aws, monkeypatch,
                                                                 tmp_path):
    ok = lambda argv, spec=flow: cli(capsys, argv, spec, launch_dir)  # noqa: E731
    with recording() as deployer:
        assert ok(["step-functions", "create", "--tag", "team:ml"])[0] == 0
        assert ok(["step-functions", "create", "--tag", "team:ml"])[0] == 0  # unchanged: reads only
    job_id, stream = provision_batch_and_logs()
    changed = copy.deepcopy(flow)
    changed["decorators"] = []  # the schedule goes, a step comes
    changed["steps"][2]["next"] = ["extra"]
    changed["steps"].insert(3, step("extra", "end"))
    with recording() as more:
        code, out = ok(["step-functions", "create", "--tag", "team:ml", "--tag", "cost:42"], changed)
        assert code == 0, out
        assert "Schedule removed" in out and "updated" in out
        assert ok(["step-functions", "trigger", "--run-id", "r1", "--alpha", "0.5"], changed)[0] == 0
        assert ok(["step-functions", "trigger", "--run-id", "r1", "--alpha", "0.7"], changed)[0] == 2  # reused id
        assert ok(["step-functions", "list-runs"], changed)[0] == 0
        assert "RUNNING" in ok(["step-functions", "status", "r1"], changed)[1]
    deployer += more
    boto3.client("stepfunctions", region_name=REGION).stop_execution(
        executionArn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:IamFlow:r1")
    rscript = fake_rscript(tmp_path)
    task_environment(monkeypatch, "r1", job_id)
    with recording() as job:
        run_tasks(monkeypatch, rscript)
    with recording() as more:
        code, out = ok(["step-functions", "status", "r1", "--wait"], changed)
        assert code == 0 and "ABORTED" in out, out
        code, out = ok(["step-functions", "logs", "r1/body"], changed)
        assert code == 0 and out.count("hello from the job") == 2, out
        assert ok(["step-functions", "logs", "r1/start/start"], changed)[0] == 0
        assert ok(["step-functions", "trigger", "--run-id", "r2"], changed)[0] == 0
        assert ok(["step-functions", "delete"], changed)[0] == 0  # stops r2, which is still running
    deployer += more

    operations = {c.operation for c in deployer}
    for expected in ("HeadObject", "GetObject", "PutObject", "ListObjectsV2", "RegisterJobDefinition",
                     "CreateStateMachine", "UpdateStateMachine", "TagResource", "PutRule", "PutTargets",
                     "RemoveTargets", "DeleteRule", "StartExecution", "DescribeExecution", "GetExecutionHistory",
                     "ListExecutions", "DescribeJobs", "GetLogEvents", "DeleteStateMachine", "StopExecution"):
        assert expected in operations, f"the flows never called {expected}: the test lost coverage"
    assert refused("deployer", deployer) == []
    check_least("deployer", deployer)

    assert {c.operation for c in job} >= {"GetObject", "HeadObject", "PutObject", "ListObjectsV2", "PutItem"}
    assert {c.service for c in job} == {"s3", "dynamodb"}
    assert refused("batch_job", job) == []
    check_least("batch_job", job)

    # The schedule's role starts exactly the state machines the rules target.
    targets = [t for c in deployer if c.operation == "PutTargets" for t in c.params["Targets"]]
    assert targets
    for target in targets:
        assert allows(policy("events"), Need("states:StartExecution", target["Arn"]))
    check_least("events", [Call("stepfunctions", "StartExecution", {"stateMachineArn": t["Arn"]}) for t in targets])


def jobs_run_in_process(monkeypatch, rscript: str, calls: list[Call], job_calls: list[Call],
                        behaviour: dict[tuple[str, str], str]) -> None:
    """Each submitted Batch job runs at once, in this process, as ``metaflow-r batch-task`` would in the image,
    its AWS calls moved from ``calls`` to ``job_calls``; it writes one CloudWatch line. ``behaviour`` makes
    the job of (step, split index) "fail" without running, or "hang" (stay RUNNING, for TerminateJob)."""
    from moto.batch_simple.models import BatchSimpleBackend

    from metaflow_r.aws.batch.task import run_batch_task

    def finish(self, include_start_attempt, job):
        self.backend._jobs[job.job_id] = job
        job.log_stream_name = job._stream_name
        env = {e["name"]: e["value"] for e in job._get_container_property("environment", [])}
        self.logs_backend.ensure_log_group(job._log_group)
        self.logs_backend.ensure_log_stream(job._log_group, job._stream_name)
        self.logs_backend.put_log_events(job._log_group, job._stream_name,
                                         [{"timestamp": int(time.time() * 1000), "message": "from the job"}])
        job._start_attempt()
        how = behaviour.get((env["METAFLOW_STEP"], env["METAFLOW_SPLIT_INDEX"]))
        if how == "hang":
            job.status = "RUNNING"
            return
        code = 1
        if how != "fail":
            before = len(calls)
            with monkeypatch.context() as patch:
                for name, value in env.items():
                    patch.setenv(name, value)
                code = run_batch_task(rscript=rscript)
            job_calls.extend(calls[before:])
            del calls[before:]
        job.exit_code = code
        job._mark_stopped(success=code == 0)

    monkeypatch.setattr(BatchSimpleBackend, "_mark_job_as_finished", finish)


def test_a_run_with_batch_needs_the_deployer_and_batch_runner_policies_and_its_jobs_the_job_role(
        capsys, flow, launch_dir, moto_aws, monkeypatch, tmp_path):
    from metaflow_r.aws.batch import launcher as batch_launcher

    monkeypatch.setattr(batch_launcher, "DESCRIBE_SECONDS", 0.05)
    provision_queue()
    runner = "deployer+batch_runner"
    job: list[Call] = []
    behaviour: dict[tuple[str, str], str] = {}
    ok = lambda argv: cli(capsys, argv, flow, launch_dir)  # noqa: E731
    with recording() as local:
        jobs_run_in_process(monkeypatch, fake_rscript(tmp_path), local, job, behaviour)
        code, out = ok(["run", "--with", "batch", "--max-workers", "2"])
        assert code == 0 and "Done!" in out and "from the job" in out, out
        behaviour.update({("body", "0"): "hang", ("body", "1"): "fail"})  # a failure stops the other job
        code, out = ok(["run", "--with", "batch", "--max-workers", "2"])
        assert code == 1 and "its Batch job ended without recording the attempt" in out, out
        behaviour.clear()
        code, out = ok(["resume", "--with", "batch"])  # clones start, runs the rest
        assert code == 0 and "Cloned from run" in out, out
    operations = {c.operation for c in local}
    for expected in ("SubmitJob", "DescribeJobs", "GetLogEvents", "TerminateJob", "RegisterJobDefinition",
                     "PutObject", "DeleteObject", "ListObjectsV2"):
        assert expected in operations, f"the runs never called {expected}: the test lost coverage"
    assert refused(runner, local) == []
    check_least("batch_runner", local)
    assert refused("deployer", local) != []  # the deployer's policy alone does not run steps on Batch
    assert {c.service for c in job} == {"s3"} and refused("batch_job", job) == []


def test_every_client_is_recorded_whoever_creates_it(aws_env):
    """The recorder sees boto3.client, a Session's clients and s3transfer's calls alike."""
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="rec")
        with recording() as calls:
            boto3.client("s3", region_name=REGION).put_object(Bucket="rec", Key="a", Body=b"1")
            boto3.session.Session(region_name=REGION).client("s3").head_object(Bucket="rec", Key="a")
            boto3.client("s3", region_name=REGION).download_file("rec", "a", os.devnull)
        assert [str(c) for c in calls][:2] == ["s3.PutObject", "s3.HeadObject"]
        assert "s3.GetObject" in [str(c) for c in calls[2:]]
        assert calls[0].params == {"Bucket": "rec", "Key": "a"}


def test_a_large_artifact_upload_stays_within_the_job_role(aws_env, tmp_path):
    """Artifacts over 16 MB go up in parts (CreateMultipartUpload, UploadPart, CompleteMultipartUpload)."""
    from moto import mock_aws

    from metaflow_r.datastore.s3 import S3Storage

    big = tmp_path / "big.rds"
    with open(big, "wb") as handle:
        handle.write(os.urandom(17 * 1024 * 1024))
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=SFN_BUCKET)
        with recording() as calls:
            storage = S3Storage(SFN_SETTINGS["METAFLOW_DATASTORE_SYSROOT_S3"], cache_dir=str(tmp_path / "cache"))
            storage.write_file("IamFlow/data/ab/abcdef", str(big))
            assert storage.exists("IamFlow/data/ab/abcdef")
            assert not storage.exists("IamFlow/data/ab/missing")
    assert "CreateMultipartUpload" in [c.operation for c in calls]
    assert refused("batch_job", calls) == []


# -- the state machine's role, from the compiled definition ----------------------------------------------


def _states(states):
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"]["States"])


def _formatted(expression: str) -> str:
    """A States.Format(...) key with every {} filled as an execution would (run r1, task ids of index 0)."""
    template = re.match(r"States\.Format\('((?:[^'\\]|\\.)*)'", expression).group(1)
    values = iter(["r1", "start-0", "start-0"])
    return re.sub(r"\\(.)", r"\1", re.sub(r"(?<!\\)\{\}", lambda _: next(values), template))


def state_machine_needs(definition, flow: str) -> list[Need]:
    """What Step Functions does with the state machine's role, for each integration the definition uses."""
    found = []
    states = dict(_states(definition["States"]))
    for name, state in states.items():
        if state["Type"] == "Map" and state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED":
            # AWS's Step Functions guide, "IAM policies for using Distributed Map states": each item is a child
            # execution of the same state machine, which Step Functions starts, follows and stops with this role.
            found += [Need("states:StartExecution", _state_machine(flow))]
            found += [Need(f"states:{a}", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{flow}/{name}:child-0")
                      for a in ("DescribeExecution", "StopExecution")]
            reader = state["ItemReader"]
            assert reader["Resource"] == S3_GET_OBJECT
            # The key is a path to what the Pass state before the Map computed (ItemReader takes no intrinsic).
            before = next(s for s in states.values() if s.get("Next") == name and s["Type"] == "Pass")
            assert reader["Parameters"]["Key.$"] == f"{before['ResultPath']}.key"
            key = _formatted(before["Parameters"]["key.$"])
            found.append(Need("s3:GetObject", f"arn:aws:s3:::{reader['Parameters']['Bucket']}/{key}"))
            writer = state["ResultWriter"]
            assert writer["Resource"] == S3_PUT_OBJECT
            result = f"arn:aws:s3:::{writer['Parameters']['Bucket']}/{writer['Parameters']['Prefix']}/run/manifest.json"
            # What a ResultWriter needs, as the AWS CDK grants it (ResultWriter.providePolicyStatements): results
            # go up in parts, and Step Functions reads them back to write the manifest.
            found += [Need(f"s3:{a}", result) for a in ("PutObject", "GetObject", "ListMultipartUploadParts",
                                                         "AbortMultipartUpload")]
        if state["Type"] != "Task":
            continue
        p = state["Parameters"]
        if state["Resource"] == BATCH_RESOURCE:
            queue = p["JobQueue"] if p["JobQueue"].startswith("arn:") else \
                f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{p['JobQueue']}"
            found += [Need("batch:SubmitJob", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{p['JobDefinition']}"),
                      Need("batch:SubmitJob", queue),
                      # .sync: Step Functions follows the job, stops it when the execution stops, and keeps a
                      # managed EventBridge rule for Batch's job events (AWS's Step Functions guide, "IAM
                      # policies for AWS Batch").
                      Need("batch:DescribeJobs", "*"), Need("batch:TerminateJob", "*")]
            found += [Need(f"events:{a}", _rule("StepFunctionsGetEventsForBatchJobsRule"))
                      for a in ("PutTargets", "PutRule", "DescribeRule")]
        elif state["Resource"] == DYNAMODB_GET_ITEM:
            found.append(Need("dynamodb:GetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{p['TableName']}"))
        elif state["Resource"] == S3_SDK_PUT_OBJECT:  # a failed run's status
            found.append(Need("s3:PutObject", f"arn:aws:s3:::{p['Bucket']}/{_formatted(p['Key.$'])}"))
        else:
            raise AssertionError(f"state {name} uses {state['Resource']}: add what it needs to the sfn policy")
    return found


# Every shape, each foreach construct: the policy allows all they need, and each action it allows is needed.
SHAPES = [("linear", ()), ("branch", ()), ("foreach", ("inline",)), ("foreach", ("array",)),
          ("foreach", ("distributed",)), ("nested_foreach", ()), ("nested_foreach", ("start=inline",))]


def _plan(request, tmp_path, shape: str, modes: tuple[str, ...]):
    from metaflow_r.aws.settings import DeploySettings
    from metaflow_r.aws.step_functions.plan import plan_deployment
    from metaflow_r.core.graph import FlowGraph
    from metaflow_r.core.spec import parse_spec

    spec = request.getfixturevalue(f"{shape}_spec")
    spec["script"] = write_flow_script(tmp_path)
    plan = plan_deployment(FlowGraph(parse_spec(spec)), spec, DeploySettings.from_environment(False), max_workers=10,
                           with_retry=None, versions=VERSIONS, foreach_mode=modes, max_num_splits=("100",))
    return plan, spec["name"]


@pytest.mark.parametrize("shape, modes", SHAPES)
def test_the_state_machine_role_allows_what_its_definition_does(shape, modes, sfn_env, tmp_path, request):
    plan, flow = _plan(request, tmp_path, shape, modes)
    found = state_machine_needs(plan.definition, flow)
    assert [n for n in found if not allows(policy("sfn"), n)] == []


def test_every_action_the_state_machine_role_allows_is_needed(sfn_env, tmp_path, request):
    used = set()
    for shape, modes in SHAPES:
        plan, flow = _plan(request, tmp_path, shape, modes)
        used |= {n.action for n in state_machine_needs(plan.definition, flow)}
    assert used == allowed_actions("sfn")


def test_a_queue_given_by_name_is_covered_too(sfn_env, tmp_path, monkeypatch, linear_spec):
    """The emulator (and many users) set METAFLOW_BATCH_JOB_QUEUE to the queue's name, not its ARN."""
    from metaflow_r.aws.settings import DeploySettings
    from metaflow_r.aws.step_functions.plan import plan_deployment
    from metaflow_r.core.graph import FlowGraph
    from metaflow_r.core.spec import parse_spec

    monkeypatch.setenv("METAFLOW_BATCH_JOB_QUEUE", VALUES["{{JobQueue}}"])
    linear_spec["script"] = write_flow_script(tmp_path)
    plan = plan_deployment(FlowGraph(parse_spec(linear_spec)), linear_spec, DeploySettings.from_environment(False),
                           max_workers=10, with_retry=None, versions=VERSIONS)
    assert [n for n in state_machine_needs(plan.definition, linear_spec["name"]) if not allows(policy("sfn"), n)] == []


# -- the evaluator and the policies are not vacuous ------------------------------------------------------


@pytest.mark.parametrize("role, need", [
    # The deployer writes code packages and deployment records, never artifacts or run records.
    ("deployer", Need("s3:PutObject", f"arn:aws:s3:::{VALUES['{{S3Root}}']}/IamFlow/data/ab/abcdef")),
    ("deployer", Need("s3:PutObject", f"arn:aws:s3:::{VALUES['{{S3Root}}']}/IamFlow/r1/_run.json")),
    ("deployer", Need("s3:GetObject", f"arn:aws:s3:::{SFN_BUCKET}/other-team/secret.csv")),
    # It leaves Step Functions' own rule alone, and passes each role only to its service.
    ("deployer", Need("events:PutTargets", _rule("StepFunctionsGetEventsForBatchJobsRule"))),
    ("deployer", _pass_role(VALUES["{{SfnRole}}"], "ec2.amazonaws.com")),
    ("deployer", _pass_role("arn:aws:iam::123456789012:role/admin", "states.amazonaws.com")),
    ("deployer", Need("batch:RegisterJobDefinition", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/other")),
    # A task cannot replace the code it runs from, nor the production token's record.
    ("batch_job", Need("s3:PutObject", f"arn:aws:s3:::{VALUES['{{S3Root}}']}/IamFlow/_code/abc.tgz")),
    ("batch_job", Need("s3:PutObject", f"arn:aws:s3:::{VALUES['{{S3Root}}']}/IamFlow/_deployment.json")),
    ("batch_job", Need("dynamodb:GetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/other")),
    ("sfn", Need("batch:SubmitJob", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/someone-elses-queue")),
    ("sfn", Need("events:PutRule", _rule("IamFlow"))),
    # Running steps on Batch adds what a run writes, not the code or the production token's record.
    ("batch_runner", Need("s3:DeleteObject", f"arn:aws:s3:::{VALUES['{{S3Root}}']}/IamFlow/r1/_run.json")),
    ("batch_runner", Need("batch:SubmitJob", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/someone-elses-queue")),
    ("events", Need("states:StopExecution", _state_machine("IamFlow"))),
])
def test_the_policies_refuse_what_no_role_needs(role, need):
    assert not allows(policy(role), need)


def test_the_deployer_may_write_a_task_record_only_as_the_job_role():
    record = Need("s3:PutObject", f"arn:aws:s3:::{VALUES['{{S3Root}}']}/IamFlow/r1/start/start/0/DONE.json")
    assert allows(policy("batch_job"), record) and not allows(policy("deployer"), record)


def test_a_datastore_at_the_bucket_root_works_with_the_same_policies():
    values = {**VALUES, "{{S3Root}}": SFN_BUCKET}
    roles = load_policies(values)
    assert allows(roles["batch_job"]["policy"], Need("s3:PutObject", f"arn:aws:s3:::{SFN_BUCKET}/F/data/ab/abc"))
    assert not allows(roles["batch_job"]["policy"], Need("s3:PutObject", f"arn:aws:s3:::{SFN_BUCKET}/F/_code/a.tgz"))
    assert allows(roles["deployer"]["policy"], Need("s3:PutObject", f"arn:aws:s3:::{SFN_BUCKET}/F/_code/a.tgz"))


# -- the doc mirrors the file --------------------------------------------------------------------------


def doc_blocks() -> dict[tuple[str, str], Any]:
    """docs/iam.md's JSON blocks, each announced by <!-- iam_policies.json: ROLE KIND --> (KIND policy or trust)."""
    text = DOC_FILE.read_text()
    found = {}
    for role, kind, body in re.findall(r"<!-- iam_policies\.json: (\w+) (policy|trust) -->\s*```json\n(.*?)```",
                                       text, flags=re.S):
        found[(role, kind)] = json.loads(body)
    return found


def test_docs_iam_md_shows_exactly_the_policies_of_iam_policies_json():
    roles = json.loads(POLICY_FILE.read_text())["roles"]
    expected = {(role, kind): entry[kind] for role, entry in roles.items() for kind in ("policy", "trust")
                if entry[kind] is not None}
    assert doc_blocks() == expected
