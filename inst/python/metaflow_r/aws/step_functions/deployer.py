"""Making AWS match a deployment's plan (plan.py), and the deployed flow's lifecycle: start, list, delete.

``apply`` creates or updates only what differs from the plan, in an order that a deploy stopped half-way
is repaired by running it again: the production token, the code package and job definitions, the state
machine, then the schedule. An unchanged flow makes no mutating call. Every call goes through
aws/errors.py, so a refusal names what was being done.
"""
from __future__ import annotations

import json
import secrets
import time
from typing import Any, Callable, Iterator

from metaflow_r.aws.batch.job_definitions import prepare_batch_jobs
from metaflow_r.aws.errors import call, error_code, is_missing, pages
from metaflow_r.aws.session import client
from metaflow_r.aws.step_functions.executions import execution_arn
from metaflow_r.aws.step_functions.plan import Plan
from metaflow_r.core.config import current_user
from metaflow_r.core.errors import NotDeployed, UsageError
from metaflow_r.datastore.flow import FlowDatastore, s3_root
from metaflow_r.datastore.s3 import S3Storage

SCHEDULE_TARGET_ID = "metaflow-state-machine"


class Deployer:
    def __init__(self, session: Any = None, echo: Callable[[str], None] = print) -> None:
        self.s3 = client("s3", session_=session)
        self.batch = client("batch", session_=session)
        self.sfn = client("stepfunctions", session_=session)
        self.events = client("events", session_=session)
        self.echo = echo

    def datastore(self, flow: str, root: str | None = None) -> FlowDatastore:
        """The flow's S3 datastore (``root``, else METAFLOW_DATASTORE_SYSROOT_S3), through this deployer's client."""
        return FlowDatastore(S3Storage(s3_root(root), client=self.s3), flow)

    # -- the steps of a deployment -------------------------------------------------------------

    def apply(self, plan: Plan, authorize: str | None, generate_new_token: bool) -> dict[str, Any]:
        ds = self.datastore(plan.name, plan.settings.s3_root)
        deployment = self._claim(ds, authorize, generate_new_token)
        prepare_batch_jobs(plan.jobs, ds.storage, self.batch, self.echo)
        arn = self._state_machine(plan, deployment)
        self._schedule(plan, arn)
        return {"state_machine_arn": arn, **deployment}

    def _claim(self, ds: FlowDatastore, authorize: str | None, generate_new_token: bool) -> dict[str, Any]:
        """The production token: the first deploy makes one; another user needs it to deploy over it."""
        existing = ds.deployment()
        user = current_user()
        if existing is not None:
            if existing["owner"] != user and authorize != existing["token"]:
                raise UsageError(
                    f"Flow {ds.flow} is deployed by {existing['owner']}; you ({user}) may not replace it.",
                    [("i", "Ask the owner for the production token and pass --authorize TOKEN, or rename the flow "
                           "(e.g. ParameterFlowStaging) to deploy your own copy.")])
            if not generate_new_token:
                if existing["owner"] != user:
                    existing = {**existing, "owner": user}
                    ds.write_deployment(existing)
                return existing
        token = f"{ds.flow.lower()}-0-{secrets.token_hex(4)}"
        record = {"token": token, "owner": user, "created_at": time.time(), "namespace": f"production:{token}"}
        ds.write_deployment(record)
        self.echo(f"A new production token was generated; runs are in namespace {record['namespace']}.")
        return record

    def _state_machine(self, plan: Plan, deployment: dict[str, Any]) -> str:
        arn = self.find_state_machine(plan.name)
        tags = [{"key": k, "value": v}
                for k, v in sorted({**plan.tags, "metaflow:namespace": deployment["namespace"]}.items())]
        if arn is None:
            created = call("creating the state machine", self.sfn.create_state_machine, name=plan.name,
                           definition=plan.definition_json, roleArn=plan.settings.sfn_role, tags=tags)
            self.echo(f"State machine {plan.name} created.")
            return created["stateMachineArn"]
        current = call("reading the state machine", self.sfn.describe_state_machine, stateMachineArn=arn)
        if json.loads(current["definition"]) != plan.definition or current["roleArn"] != plan.settings.sfn_role:
            call("updating the state machine", self.sfn.update_state_machine, stateMachineArn=arn,
                 definition=plan.definition_json, roleArn=plan.settings.sfn_role)
            self.echo(f"State machine {plan.name} updated.")
        else:
            self.echo(f"State machine {plan.name} is up to date.")
        listed = call("reading the state machine's tags", self.sfn.list_tags_for_resource, resourceArn=arn)
        if any(tag not in listed["tags"] for tag in tags):
            call("tagging the state machine", self.sfn.tag_resource, resourceArn=arn, tags=tags)
        return arn

    def _schedule(self, plan: Plan, arn: str) -> None:
        rule = self._describe_rule(plan.name)
        if plan.schedule is None:
            if rule is not None:
                self._delete_rule(plan.name)
                self.echo(f"Schedule removed (rule {plan.name} deleted).")
            return
        if rule is None or rule.get("ScheduleExpression") != plan.schedule or rule.get("State") != "ENABLED":
            call("creating the schedule rule", self.events.put_rule, Name=plan.name,
                 ScheduleExpression=plan.schedule, State="ENABLED",
                 Description=f"Runs flow {plan.name} on Step Functions.")
        target = {"Id": SCHEDULE_TARGET_ID, "Arn": arn, "RoleArn": plan.settings.events_role,
                  "Input": json.dumps({"Parameters": "{}"})}
        targets = call("reading the schedule's targets", self.events.list_targets_by_rule, Rule=plan.name)
        if targets.get("Targets") != [target]:
            call("pointing the schedule at the state machine", self.events.put_targets, Rule=plan.name,
                 Targets=[target])
        self.echo(f"Scheduled: {plan.schedule} (UTC).")

    # -- the deployed flow -----------------------------------------------------------------------

    def find_state_machine(self, name: str) -> str | None:
        for page in pages("listing state machines", self.sfn, "list_state_machines"):
            for machine in page["stateMachines"]:
                if machine["name"] == name:
                    return machine["stateMachineArn"]
        return None

    def deployed(self, name: str, hint: str) -> str:
        """The state machine of flow ``name``; NotDeployed (saying ``hint``, how to deploy it) when there is none."""
        arn = self.find_state_machine(name)
        if arn is None:
            raise NotDeployed(f"Flow {name} is not deployed.", [("i", f"Deploy it with: {hint}")])
        return arn

    def namespace(self, name: str) -> str | None:
        """The production namespace of a deployed flow (from its deployment record), None if not deployed."""
        record = self.datastore(name).deployment()
        return record["namespace"] if record else None

    def start_execution(self, arn: str, name: str, execution_input: str) -> str | None:
        """Start run ``name``; None when it started, or the status of the run that already has that name
        (a retried trigger names one run, never two)."""
        try:
            call("starting the execution", self.sfn.start_execution, stateMachineArn=arn, name=name,
                 input=execution_input)
            return None
        except Exception as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise
        existing = self.describe_execution(execution_arn(arn, name))
        if existing.get("input") is not None and json.loads(existing["input"]) != json.loads(execution_input):
            raise UsageError(f"Run id {name!r} was already used with other parameters.",
                             [("i", "Choose a new --run-id, or leave it out to get one.")])
        return existing["status"]

    def describe_execution(self, arn: str) -> dict[str, Any]:
        return call(f"reading run {arn.rsplit(':', 1)[-1]}", self.sfn.describe_execution, executionArn=arn)

    def executions(self, arn: str, status: str | None = None) -> Iterator[dict[str, Any]]:
        """The state machine's executions, newest first (``status``: RUNNING, SUCCEEDED, FAILED...)."""
        for page in pages("listing the runs", self.sfn, "list_executions", stateMachineArn=arn,
                          **({"statusFilter": status} if status else {})):
            yield from page["executions"]

    def stop_execution(self, arn: str, cause: str) -> None:
        call("stopping a run", self.sfn.stop_execution, executionArn=arn, error="MetaflowR.FlowDeleted", cause=cause)

    def delete(self, name: str) -> bool:
        arn = self.find_state_machine(name)
        if self._describe_rule(name) is not None:
            self._delete_rule(name)
        if arn is None:
            return False
        call("deleting the state machine", self.sfn.delete_state_machine, stateMachineArn=arn)
        return True

    def _describe_rule(self, name: str) -> dict[str, Any] | None:
        try:
            return call("reading the schedule rule", self.events.describe_rule, Name=name)
        except Exception as exc:
            if is_missing(exc):
                return None
            raise

    def _delete_rule(self, name: str) -> None:
        targets = call("reading the schedule's targets", self.events.list_targets_by_rule, Rule=name)
        ids = [t["Id"] for t in targets.get("Targets", [])]
        if ids:
            call("removing the schedule's targets", self.events.remove_targets, Rule=name, Ids=ids)
        call("deleting the schedule rule", self.events.delete_rule, Name=name)
