"""Deploying a flow to AWS Step Functions: the only module that calls AWS to change anything.

``plan_deployment`` is pure: it packages the code, names the job definitions by content hash, compiles
the state machine and checks every AWS limit, so a bad flow fails before any call. ``Deployer.apply``
then makes each resource match the plan, creating or updating only what differs; an unchanged flow
makes no mutating call, and a deploy interrupted half-way is repaired by running it again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from metaflow_r.aws.step_functions.compile import BATCH_RESOURCE, DEFAULT_MAX_NUM_SPLITS, CompileSettings, compile_state_machine
from metaflow_r.core.config import current_user, setting
from metaflow_r.core.errors import AwsError, ConfigurationError, MetaflowRError, UsageError
from metaflow_r.aws.step_functions.foreach_modes import AUTO, choose, foreach_steps, one_step_body, parse_mode, parse_width, per_step
from metaflow_r.core.graph import FlowGraph
from metaflow_r.aws.code_package import CodePackage, build_package
from metaflow_r.aws.step_functions.quota import Budget, check, estimate, notes
from metaflow_r.aws.step_functions.schedule import schedule_expression
from metaflow_r.aws.step_functions.task_identity import NOT_RETRYABLE_EXIT

MAX_STATE_MACHINE_NAME = 80
MAX_STATE_NAME = 80
MAX_RULE_NAME = 64
MAX_BATCH_NAME = 128
DEFAULT_CPU = 1
DEFAULT_MEMORY_MB = 4096
TASK_COMMAND = ["metaflow-r", "batch-task"]
BATCH_TIMEOUT_MARGIN = 120  # seconds

REQUIRED_SETTINGS = {
    "s3_root": "DATASTORE_SYSROOT_S3",
    "job_queue": "BATCH_JOB_QUEUE",
    "batch_role": "ECS_S3_ACCESS_IAM_ROLE",
    "sfn_role": "SFN_IAM_ROLE",
    "dynamo_table": "SFN_DYNAMO_DB_TABLE",
    "image": "BATCH_CONTAINER_IMAGE",
}
# What `run --with batch` needs: no state machine, so neither its role nor its DynamoDB table.
STEP_FUNCTIONS_ONLY = ("sfn_role", "dynamo_table")
EVENTS_ROLE = "EVENTS_SFN_ACCESS_IAM_ROLE"


@dataclass(frozen=True)
class DeploySettings:
    s3_root: str
    job_queue: str
    batch_role: str
    sfn_role: str | None
    dynamo_table: str | None
    image: str
    events_role: str | None = None
    region: str | None = None  # given to jobs, whose boto3 clients need one

    @classmethod
    def from_environment(cls, need_events_role: bool, placeholders: bool = False) -> "DeploySettings":
        """Every missing setting is named in one error (or, for --only-json, shown as a placeholder)."""
        return cls._read(REQUIRED_SETTINGS, need_events_role, placeholders, "Step Functions needs")

    @classmethod
    def for_batch_runs(cls) -> "DeploySettings":
        """What a local run whose steps run on AWS Batch (--with batch) needs, every missing one named."""
        required = {k: v for k, v in REQUIRED_SETTINGS.items() if k not in STEP_FUNCTIONS_ONLY}
        return cls._read(required, False, False, "Running steps on AWS Batch (--with batch) needs")

    @classmethod
    def _read(cls, required: dict[str, str], need_events_role: bool, placeholders: bool,
              who: str) -> "DeploySettings":
        values: dict[str, str | None] = {field_name: setting(name) for field_name, name in REQUIRED_SETTINGS.items()}
        values["events_role"] = setting(EVENTS_ROLE)
        missing = [f"METAFLOW_{name}" for field_name, name in required.items() if not values[field_name]]
        if need_events_role and not values["events_role"]:
            missing.append(f"METAFLOW_{EVENTS_ROLE}")
        if missing and not placeholders:
            raise ConfigurationError(
                f"{who} settings that are missing: {', '.join(missing)}.",
                [("i", "Set them as environment variables or in ~/.metaflowconfig/config.json."),
                 ("i", "Offline, `metaflow-r emulator` writes all of them to an env file.")])
        if placeholders:
            for field_name, name in [*REQUIRED_SETTINGS.items(), ("events_role", EVENTS_ROLE)]:
                values[field_name] = values[field_name] or f"<METAFLOW_{name}>"
        values["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return cls(**values)


@dataclass
class BatchJobs:
    """What every Batch job of a flow needs: the code package, and each step's job definition and queue."""

    package: CodePackage
    package_key: str
    code_url: str
    job_definitions: dict[str, dict[str, Any]]  # name -> register_job_definition arguments
    by_step: dict[str, str]  # step -> job definition name
    queues: dict[str, str]  # step -> job queue
    settings: DeploySettings


@dataclass
class Plan:
    """Everything a deployment will create, computed without AWS."""

    name: str
    definition: dict[str, Any]
    definition_json: str
    jobs: BatchJobs
    schedule: str | None
    settings: DeploySettings
    tags: dict[str, str] = field(default_factory=dict)
    budget: Budget | None = None  # the quota model's worst case (quota.py)
    notes: list[str] = field(default_factory=list)  # what the chosen foreach constructs mean for the user

    @property
    def package(self) -> CodePackage:
        return self.jobs.package

    @property
    def job_definitions(self) -> dict[str, dict[str, Any]]:
        return self.jobs.job_definitions


def check_name(kind: str, name: str, limit: int, pattern: str, allowed: str) -> None:
    if len(name) > limit or not re.fullmatch(pattern, name):
        raise UsageError(f"The {kind} name {name!r} is not valid for AWS ({len(name)} characters).",
                         [("i", f"{kind.capitalize()} names have at most {limit} characters: {allowed}."),
                          ("i", "Rename the flow in metaflow(\"...\").")])


def batch_override(graph: FlowGraph, step: str, name: str, with_batch: dict[str, Any] | None = None) -> str | None:
    """A step's decorator("batch", image =, queue =, iam_role =) value, which wins over --with batch's, which
    wins over the settings."""
    decorator = graph[step].spec.decorator("batch")
    value = decorator.attributes.get(name) if decorator is not None else None
    value = value or (with_batch or {}).get(name)
    return str(value) if value else None


def _resources(graph: FlowGraph, step: str, with_batch: dict[str, Any] | None) -> tuple[str, str, str | None]:
    """The Batch job's size: --with batch's, then the step's resources and batch decorators, attribute by
    attribute; the graph checked each value's kind (rules.json: cpu and memory > 0)."""
    node = graph[step]
    base = with_batch or {}
    cpu, memory, gpu = base.get("cpu", DEFAULT_CPU), base.get("memory", DEFAULT_MEMORY_MB), base.get("gpu")
    for name in ("resources", "batch"):
        decorator = node.spec.decorator(name)
        if decorator is not None:
            a = decorator.attributes
            cpu = a.get("cpu", cpu)
            memory = a.get("memory", memory)
            gpu = a.get("gpu", gpu)
    return f"{cpu:g}", f"{int(memory)}", (f"{int(gpu)}" if gpu else None)


def retry_attempts(graph: FlowGraph, step: str, with_retry: int | None) -> int:
    """Batch attempts for a step: retry decorator times + 1, or --with retry's; times = 0 means 1."""
    return max(1, min(10, graph[step].spec.retries(with_retry) + 1))


def batch_retry_strategy(attempts: int) -> dict[str, Any]:
    """Batch retries a failed job up to ``attempts`` in all, except a failure no retry can help."""
    if attempts == 1:
        return {"attempts": 1}
    return {"attempts": attempts, "evaluateOnExit": [{"onExitCode": str(NOT_RETRYABLE_EXIT), "action": "EXIT"}]}


def _job_definition(graph: FlowGraph, step: str, settings: DeploySettings, attempts: int,
                    with_batch: dict[str, Any] | None) -> dict[str, Any]:
    cpu, memory, gpu = _resources(graph, step, with_batch)
    requirements = [{"type": "VCPU", "value": cpu}, {"type": "MEMORY", "value": memory}]
    if gpu:
        requirements.append({"type": "GPU", "value": gpu})
    body: dict[str, Any] = {
        "type": "container",
        "containerProperties": {
            "image": batch_override(graph, step, "image", with_batch) or settings.image,
            "command": TASK_COMMAND,
            "jobRoleArn": batch_override(graph, step, "iam_role", with_batch) or settings.batch_role,
            "resourceRequirements": requirements,
            "environment": [
                {"name": "METAFLOW_FLOW_NAME", "value": graph.spec.name},
                {"name": "METAFLOW_DEFAULT_DATASTORE", "value": "s3"},
                {"name": "METAFLOW_DATASTORE_SYSROOT_S3", "value": settings.s3_root},
                *([{"name": "METAFLOW_SFN_DYNAMO_DB_TABLE", "value": settings.dynamo_table}]
                  if settings.dynamo_table else []),
                {"name": "METAFLOW_BATCH_ATTEMPTS", "value": str(attempts)},
                *([{"name": "AWS_DEFAULT_REGION", "value": settings.region}] if settings.region else []),
            ],
        },
        "retryStrategy": batch_retry_strategy(attempts),
    }
    seconds = graph[step].spec.timeout_seconds()
    if seconds is not None:
        # The task enforces the timeout itself (so decorator("catch") can still run); Batch's own limit,
        # a little later, only stops a job that hangs outside the task.
        body["timeout"] = {"attemptDurationSeconds": max(60, int(seconds) + BATCH_TIMEOUT_MARGIN)}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    name = f"metaflow-{graph.spec.name}-{digest}"[:MAX_BATCH_NAME]
    return {"jobDefinitionName": name, **body}


def plan_batch_jobs(graph: FlowGraph, raw_spec: dict[str, Any], settings: DeploySettings, *,
                    versions: dict[str, str], package_suffixes: tuple[str, ...] = (), with_retry: int | None = None,
                    with_batch: dict[str, Any] | None = None, batch_retries: bool = True) -> BatchJobs:
    """The code package and job definitions, computed without AWS. ``batch_retries``: Batch's retryStrategy
    retries a failed task (Step Functions); without it each job is one attempt and its caller decides."""
    spec = graph.spec
    if not spec.script:
        raise UsageError("The flow's script is unknown: it is deployed with the flow.",
                         [("i", "Save the flow in a file, then source() it in R, or run Rscript flow.R "
                                "step-functions create.")])
    # run(package_suffixes =) arrives in the spec, --package-suffixes on the command line: both count.
    suffixes = (*(raw_spec.get("package_suffixes") or ()), *package_suffixes)
    package = build_package(spec.script, raw_spec, versions, suffixes)
    package_key = f"{spec.name}/_code/{package.sha}.tgz"
    job_definitions: dict[str, dict[str, Any]] = {}
    by_step: dict[str, str] = {}
    for node in graph:
        attempts = retry_attempts(graph, node.name, with_retry) if batch_retries else 1
        definition = _job_definition(graph, node.name, settings, attempts, with_batch)
        job_definitions[definition["jobDefinitionName"]] = definition
        by_step[node.name] = definition["jobDefinitionName"]
    queues = {n.name: batch_override(graph, n.name, "queue", with_batch) or settings.job_queue for n in graph}
    return BatchJobs(package, package_key, f"{settings.s3_root.rstrip('/')}/{package_key}", job_definitions,
                     by_step, queues, settings)


def plan_deployment(graph: FlowGraph, raw_spec: dict[str, Any], settings: DeploySettings, *, max_workers: int,
                    with_retry: int | None, versions: dict[str, str], workflow_timeout: int | None = None,
                    tags: dict[str, str] | None = None, package_suffixes: tuple[str, ...] = (),
                    with_batch: dict[str, Any] | None = None, foreach_mode: tuple[str, ...] = (),
                    max_num_splits: tuple[str, ...] = ()) -> Plan:
    """``foreach_mode`` and ``max_num_splits`` are create's options as typed: VALUE or STEP=VALUE."""
    spec = graph.spec
    name = spec.name
    check_name("state machine", name, MAX_STATE_MACHINE_NAME, r"[A-Za-z0-9_-]+", "letters, digits, - and _")
    schedule = schedule_expression(spec)
    if schedule:
        check_name("EventBridge rule", name, MAX_RULE_NAME, r"[.\-_A-Za-z0-9]+", "letters, digits, ., - and _")
    jobs = plan_batch_jobs(graph, raw_spec, settings, versions=versions, package_suffixes=package_suffixes,
                           with_retry=with_retry, with_batch=with_batch)
    widths = per_step(max_num_splits, "--max-num-splits", parse_width, DEFAULT_MAX_NUM_SPLITS, graph)
    depths = {n.name: sum(graph[s].is_foreach for s in n.split_parents) for n in foreach_steps(graph)}
    root = settings.s3_root if settings.s3_root.startswith("s3://") else f"s3://{settings.s3_root}"  # --only-json

    def compiled_with(modes: dict[str, str]) -> dict[str, Any]:
        return compile_state_machine(graph, CompileSettings(
            job_queue=settings.job_queue, job_definitions=jobs.by_step,
            step_queues={step: q for step, q in jobs.queues.items() if q != settings.job_queue},
            code_url=jobs.code_url, code_sha=jobs.package.sha, dynamo_table=settings.dynamo_table or "",
            max_workers=max_workers, workflow_timeout=workflow_timeout, foreach_modes=modes,
            max_num_splits=widths, datastore_root=root))

    requested = per_step(foreach_mode, "--foreach-mode", parse_mode, AUTO, graph)
    modes = choose(graph, requested, widths, max_workers,
                   lambda m: estimate(compiled_with(m), widths, m, max_workers, split_depths=depths))
    compiled = compiled_with(modes)
    _check_state_names(compiled["States"])
    # Sent compact: whitespace would count against the 1 MB limit (the console re-indents it anyway).
    definition_json = json.dumps(compiled, separators=(",", ":"))
    budget = estimate(compiled, widths, modes, max_workers, definition_json, depths)
    check(budget)
    bodies = {n.name: one_step_body(graph, n) or "" for n in foreach_steps(graph)}
    return Plan(name, compiled, definition_json, jobs, schedule, settings, dict(tags or {}), budget,
                notes(budget, bodies))


def _check_state_names(states: dict[str, Any]) -> None:
    """AWS state names have at most 80 characters; a step's states are named after the step."""
    for name, state in states.items():
        if len(name) > MAX_STATE_NAME:
            step = name if state.get("Resource") == BATCH_RESOURCE else name.rsplit("-", 1)[0]
            raise UsageError(f"Step {step!r} is too long a name for Step Functions: its state {name!r} has "
                             f"{len(name)} characters, AWS allows {MAX_STATE_NAME}.",
                             [("i", "Give the step a shorter name.")])
        for branch in state.get("Branches", []):
            _check_state_names(branch["States"])
        if "ItemProcessor" in state:
            _check_state_names(state["ItemProcessor"]["States"])


def aws_session():
    """A boto3 session in METAFLOW_AWS_REGION, else in boto3's own region (AWS_REGION, AWS_DEFAULT_REGION)."""
    import boto3

    return boto3.session.Session(region_name=setting("AWS_REGION") or None)


MUTATING_PREFIXES = ("Create", "Update", "Put", "Register", "Delete", "Remove", "Start", "Tag", "Untag")


class Deployer:
    """Makes AWS match a Plan. Every boto3 call goes through ``call`` so AWS errors read well."""

    def __init__(self, session, echo: Callable[[str], None] = print) -> None:
        self.s3 = session.client("s3")
        self.batch = session.client("batch")
        self.sfn = session.client("stepfunctions")
        self.events = session.client("events")
        self.echo = echo

    # -- the steps of a deployment -------------------------------------------------------------

    def apply(self, plan: Plan, authorize: str | None, generate_new_token: bool) -> dict[str, Any]:
        bucket, prefix = _split_s3(plan.settings.s3_root)
        deployment = self._claim(plan, bucket, prefix, authorize, generate_new_token)
        self.prepare_batch_jobs(plan.jobs)
        arn = self._state_machine(plan, deployment)
        self._schedule(plan, arn)
        return {"state_machine_arn": arn, **deployment}

    def _claim(self, plan: Plan, bucket: str, prefix: str, authorize: str | None,
               generate_new_token: bool) -> dict[str, Any]:
        """The production token: the first deploy makes one; another user needs it to deploy over it."""
        key = _join(prefix, f"{plan.name}/_deployment.json")
        existing = self._read_json(bucket, key)
        user = current_user()
        if existing is not None:
            allowed = existing["owner"] == user or authorize == existing["token"]
            if not allowed:
                raise UsageError(
                    f"Flow {plan.name} is deployed by {existing['owner']}; you ({user}) may not replace it.",
                    [("i", "Ask the owner for the production token and pass --authorize TOKEN, or rename the flow "
                           "(e.g. ParameterFlowStaging) to deploy your own copy.")])
            if not generate_new_token:
                if existing["owner"] != user:
                    existing = {**existing, "owner": user}
                    self._write_json(bucket, key, existing)
                return existing
        token = f"{plan.name.lower()}-0-{secrets.token_hex(4)}"
        record = {"token": token, "owner": user, "created_at": time.time(), "namespace": f"production:{token}"}
        self._write_json(bucket, key, record)
        self.echo(f"A new production token was generated; runs are in namespace {record['namespace']}.")
        return record

    def prepare_batch_jobs(self, jobs: BatchJobs) -> None:
        """Upload the code package and register the job definitions, each only if it is not there yet."""
        bucket, prefix = _split_s3(jobs.settings.s3_root)
        key = _join(prefix, jobs.package_key)
        if not self._exists(bucket, key):
            self.call("uploading the code package", self.s3.put_object, Bucket=bucket, Key=key,
                      Body=jobs.package.data)
            self.echo(f"Code package uploaded: {len(jobs.package.files)} file(s), sha {jobs.package.sha[:12]}.")
        for name, body in jobs.job_definitions.items():
            found = self.call("looking up Batch job definitions", self.batch.describe_job_definitions,
                               jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
            if not found:
                self.call(f"registering Batch job definition {name}", self.batch.register_job_definition, **body)
                self.echo(f"Batch job definition {name} registered.")

    def _state_machine(self, plan: Plan, deployment: dict[str, Any]) -> str:
        arn = self.find_state_machine(plan.name)
        tags = {**plan.tags, "metaflow:namespace": deployment["namespace"]}
        if arn is None:
            created = self.call("creating the state machine", self.sfn.create_state_machine, name=plan.name,
                                 definition=plan.definition_json, roleArn=plan.settings.sfn_role,
                                 tags=[{"key": k, "value": v} for k, v in sorted(tags.items())])
            self.echo(f"State machine {plan.name} created.")
            return created["stateMachineArn"]
        current = self.call("reading the state machine", self.sfn.describe_state_machine, stateMachineArn=arn)
        if json.loads(current["definition"]) != plan.definition or current["roleArn"] != plan.settings.sfn_role:
            self.call("updating the state machine", self.sfn.update_state_machine, stateMachineArn=arn,
                       definition=plan.definition_json, roleArn=plan.settings.sfn_role)
            self.echo(f"State machine {plan.name} updated.")
        else:
            self.echo(f"State machine {plan.name} is up to date.")
        listed = self.call("reading the state machine's tags", self.sfn.list_tags_for_resource, resourceArn=arn)
        current_tags = {t["key"]: t["value"] for t in listed["tags"]}
        if any(current_tags.get(k) != v for k, v in tags.items()):
            self.call("tagging the state machine", self.sfn.tag_resource, resourceArn=arn,
                       tags=[{"key": k, "value": v} for k, v in sorted(tags.items())])
        return arn

    def _schedule(self, plan: Plan, arn: str) -> None:
        rule = self._describe_rule(plan.name)
        if plan.schedule is None:
            if rule is not None:
                self._delete_rule(plan.name)
                self.echo(f"Schedule removed (rule {plan.name} deleted).")
            return
        if rule is None or rule.get("ScheduleExpression") != plan.schedule or rule.get("State") != "ENABLED":
            self.call("creating the schedule rule", self.events.put_rule, Name=plan.name,
                       ScheduleExpression=plan.schedule, State="ENABLED",
                       Description=f"Runs flow {plan.name} on Step Functions.")
        target = {"Id": "metaflow-state-machine", "Arn": arn, "RoleArn": plan.settings.events_role,
                  "Input": json.dumps({"Parameters": "{}"})}
        targets = self.call("reading the schedule's targets", self.events.list_targets_by_rule, Rule=plan.name)
        if targets.get("Targets") != [target]:
            self.call("pointing the schedule at the state machine", self.events.put_targets, Rule=plan.name,
                       Targets=[target])
        self.echo(f"Scheduled: {plan.schedule} (UTC).")

    # -- lookups ---------------------------------------------------------------------------------

    def find_state_machine(self, name: str) -> str | None:
        paginator = self.sfn.get_paginator("list_state_machines")
        try:
            for page in paginator.paginate():
                for machine in page["stateMachines"]:
                    if machine["name"] == name:
                        return machine["stateMachineArn"]
        except Exception as exc:  # noqa: BLE001 - turned into an AwsError below
            raise aws_error("listing state machines", exc) from None
        return None

    def namespace(self, name: str) -> str | None:
        """The production namespace of a deployed flow (from its deployment record), None if not deployed."""
        bucket, prefix = _split_s3(self.settings_root())
        record = self._read_json(bucket, _join(prefix, f"{name}/_deployment.json"))
        return record["namespace"] if record else None

    @staticmethod
    def settings_root() -> str:
        root = setting("DATASTORE_SYSROOT_S3")
        if not root:
            raise ConfigurationError("No S3 datastore is configured.",
                                     [("i", "Set METAFLOW_DATASTORE_SYSROOT_S3 to s3://bucket/prefix.")])
        return root

    def running_executions(self, arn: str) -> list[str]:
        pages = self.call("listing the running runs", lambda: list(
            self.sfn.get_paginator("list_executions").paginate(stateMachineArn=arn, statusFilter="RUNNING")))
        return [e["name"] for page in pages for e in page["executions"]]

    def stop_execution(self, arn: str, cause: str) -> None:
        self.call("stopping a run", self.sfn.stop_execution, executionArn=arn, error="MetaflowR.FlowDeleted",
                  cause=cause)

    def delete(self, name: str) -> bool:
        arn = self.find_state_machine(name)
        if self._describe_rule(name) is not None:
            self._delete_rule(name)
        if arn is None:
            return False
        self.call("deleting the state machine", self.sfn.delete_state_machine, stateMachineArn=arn)
        return True

    def _describe_rule(self, name: str) -> dict[str, Any] | None:
        try:
            return self.events.describe_rule(Name=name)
        except self.events.exceptions.ResourceNotFoundException:
            return None
        except Exception as exc:  # noqa: BLE001
            raise aws_error("reading the schedule rule", exc) from None

    def _delete_rule(self, name: str) -> None:
        targets = self.call("reading the schedule's targets", self.events.list_targets_by_rule, Rule=name)
        ids = [t["Id"] for t in targets.get("Targets", [])]
        if ids:
            self.call("removing the schedule's targets", self.events.remove_targets, Rule=name, Ids=ids)
        self.call("deleting the schedule rule", self.events.delete_rule, Name=name)

    def _exists(self, bucket: str, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise aws_error(f"reading s3://{bucket}/{key}", exc) from None

    def _read_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        if not self._exists(bucket, key):
            return None
        body = self.call(f"reading s3://{bucket}/{key}", self.s3.get_object, Bucket=bucket, Key=key)["Body"]
        return json.loads(body.read())

    def _write_json(self, bucket: str, key: str, value: dict[str, Any]) -> None:
        self.call(f"writing s3://{bucket}/{key}", self.s3.put_object, Bucket=bucket, Key=key,
                   Body=json.dumps(value).encode())

    @staticmethod
    def call(what: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(what, exc) from None


def aws_error(what: str, exc: Exception) -> AwsError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        hints = {
            "AccessDenied": "Your AWS identity lacks a permission: docs/iam.md lists what each role needs.",
            "AccessDeniedException": "Your AWS identity lacks a permission: docs/iam.md lists what each role needs.",
            "ThrottlingException": "AWS is throttling requests: wait a minute and run the same command again.",
            "TooManyRequestsException": "AWS is throttling requests: wait a minute and run the same command again.",
        }
        return AwsError(f"AWS refused {what}: {code}: {error.get('Message', '')}".rstrip(": "),
                        [("i", hints.get(code, "Fix the cause, then run the same command again; it resumes "
                                               "where it stopped."))])
    if isinstance(exc, NoCredentialsError):
        return AwsError(f"No AWS credentials for {what}.", [("i", "Configure credentials (aws configure, or "
                                                                  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).")])
    if isinstance(exc, EndpointConnectionError):
        return AwsError(f"AWS could not be reached for {what}: {exc}.", [("i", "Check AWS_ENDPOINT_URL and the "
                                                                               "network, then run it again.")])
    if isinstance(exc, MetaflowRError):
        return AwsError(str(exc))
    return AwsError(f"{what} failed: {type(exc).__name__}: {exc}")


def _split_s3(root: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", root)
    if not match:
        raise ConfigurationError(f"METAFLOW_DATASTORE_SYSROOT_S3 is {root!r}, not an s3:// URL.",
                                 [("i", "Set it to s3://bucket/prefix.")])
    return match.group(1), match.group(2).strip("/")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key
