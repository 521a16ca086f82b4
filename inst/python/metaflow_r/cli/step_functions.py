"""``step-functions`` commands: create, trigger, list-runs, status, logs, delete."""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import click

from metaflow_r.aws.step_functions.compile import DEFAULT_MAX_NUM_SPLITS
from metaflow_r.datastore.flow import FlowDatastore, storage_for
from metaflow_r.aws.step_functions.deploy import DeploySettings, Deployer, aws_error, aws_session, plan_deployment
from metaflow_r.core.errors import RunFailed, UsageError
from metaflow_r.aws.step_functions.executions import execution_arn, follow, report, wait_for
from metaflow_r.aws.code_package import CodePackage
from metaflow_r.core.params import parameter_options, values_from_json
from metaflow_r.aws.step_functions.quota import MAX_PARAMETERS_BYTES
from metaflow_r.aws.step_functions.quota import explain as explain_budget
from metaflow_r.core.spec import FlowSpec

EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS = 128, 256, 50


def step_functions_group(spec: FlowSpec | None, invocation_of) -> click.Group:
    @click.group("step-functions", help="Deploy and run the flow on AWS Step Functions.")
    def group() -> None:
        pass

    @group.command(help="Compile the flow, upload its code, and create or update the state machine and schedule.")
    @click.option("--max-workers", type=click.IntRange(1, 1000), default=100, show_default=True,
                  help="Most tasks run at once in each foreach.")
    @click.option("--only-json", is_flag=True, help="Print the state machine definition; touch nothing.")
    @click.option("--authorize", default=None, help="The production token of a flow someone else deployed.")
    @click.option("--generate-new-token", is_flag=True, help="Start a new production namespace.")
    @click.option("--workflow-timeout", type=click.IntRange(min=1), default=None, help="Execution timeout (s).")
    @click.option("--tag", "tags", multiple=True, help="Tag the state machine, as key:value (repeatable).")
    @click.option("--foreach-mode", multiple=True, metavar="[STEP=]MODE",
                  help="How foreaches run: auto (default: chosen per foreach), inline, array or distributed; "
                       "STEP=MODE for one foreach (repeatable).")
    @click.option("--max-num-splits", multiple=True, metavar="[STEP=]N",
                  help=f"Most items a foreach may have (default {DEFAULT_MAX_NUM_SPLITS:,}); quotas are checked for "
                       "it and wider foreaches fail. STEP=N for one foreach (repeatable).")
    @click.option("--explain", is_flag=True,
                  help="Print the quota budget of one run (on stderr with --only-json).")
    def create(max_workers: int, only_json: bool, authorize: str | None, generate_new_token: bool,
               workflow_timeout: int | None, tags: tuple[str, ...], foreach_mode: tuple[str, ...],
               max_num_splits: tuple[str, ...], explain: bool) -> None:
        invocation = invocation_of()
        graph = invocation.graph()
        parsed_tags = _parse_tags(tags)
        from metaflow_r.aws.step_functions.schedule import schedule_expression

        needs_events = schedule_expression(graph.spec) is not None
        settings = DeploySettings.from_environment(needs_events, placeholders=only_json)
        plan = plan_deployment(graph, invocation.raw_spec, settings, max_workers=max_workers,
                               with_retry=invocation.with_retry(), with_batch=invocation.withs().batch,
                               versions=invocation.versions,
                               workflow_timeout=workflow_timeout, tags=parsed_tags,
                               package_suffixes=invocation.package_suffixes, foreach_mode=foreach_mode,
                               max_num_splits=max_num_splits)
        describe_package(plan.package, err=only_json)  # stdout holds only the JSON then
        if explain:
            click.echo(explain_budget(plan.budget, plan.notes), err=only_json)
        if only_json:
            click.echo(json.dumps(plan.definition, indent=1))
            return
        if not explain:
            for note in plan.notes:
                click.echo(f"Note: {note}")
        deployer = Deployer(aws_session(), echo=click.echo)
        result = deployer.apply(plan, authorize, generate_new_token)
        invocation.result = {"kind": "deployment", "flow": plan.name, "state_machine_arn": result["state_machine_arn"],
                             "namespace": result["namespace"], "schedule": plan.schedule}
        click.echo(f"Flow {plan.name} is deployed to Step Functions ({result['state_machine_arn']}).")
        click.echo(f"Its runs are in namespace {result['namespace']}.")

    trigger_params = [click.Option(["--run-id-file"], default=None, help="Write the run id to this file."),
                      click.Option(["--run-id"], default=None,
                                   help="Name the execution (repeating it never starts a second run)."),
                      click.Option(["--wait"], is_flag=True, help="Wait for the run to end; exit 1 if it fails.")]
    trigger_params += [_optional(option) for option in (parameter_options(spec) if spec else [])]

    def trigger(run_id_file: str | None, run_id: str | None, wait: bool, **values: Any) -> None:
        invocation = invocation_of()
        graph = invocation.graph()
        given = {name: value for name, value in values.items() if value is not None}
        typed = values_from_json(graph.spec, given)  # checks every value before anything starts
        parameters = json.dumps({k: v for k, v in typed.items() if k in given})
        if len(parameters.encode()) > MAX_PARAMETERS_BYTES:
            raise UsageError(f"The parameters are {len(parameters.encode()):,} bytes; a Batch job accepts about "
                             f"{MAX_PARAMETERS_BYTES:,}.", [("i", "Pass large inputs through S3 instead.")])
        name = run_id or f"sfn-{uuid.uuid4().hex}"
        if not EXECUTION_NAME.fullmatch(name):
            raise UsageError(f"Run id {name!r} is not a valid execution name.",
                             [("i", "Use 1-80 letters, digits, - and _.")])
        deployer = Deployer(aws_session(), echo=click.echo)
        arn = deployer.find_state_machine(graph.spec.name)
        if arn is None:
            raise UsageError(f"Flow {graph.spec.name} is not deployed.",
                             [("i", f"Deploy it with: {invocation.hint('step-functions', 'create')}")])
        execution_input = json.dumps({"Parameters": parameters})
        try:
            deployer.sfn.start_execution(stateMachineArn=arn, name=name, input=execution_input)
            click.echo(f"Workflow {graph.spec.name} triggered on Step Functions (run-id {name}).")
        except deployer.sfn.exceptions.ExecutionAlreadyExists:
            # A retried trigger: the same run id names one run, never two.
            existing = deployer.call(f"reading run {name}", deployer.sfn.describe_execution,
                                      executionArn=execution_arn(arn, name))
            if existing.get("input") is not None and json.loads(existing["input"]) != json.loads(execution_input):
                raise UsageError(f"Run id {name!r} was already used with other parameters.",
                                 [("i", "Choose a new --run-id, or leave it out to get one.")]) from None
            click.echo(f"Workflow {graph.spec.name} run-id {name} was already started ({existing['status']}).")
        except Exception as exc:  # noqa: BLE001
            raise aws_error("starting the execution", exc) from None
        if run_id_file:
            with open(run_id_file, "w", encoding="utf-8") as handle:
                handle.write(name)
        invocation.result = {"kind": "triggered", "flow": graph.spec.name, "run_id": name,
                             "namespace": deployer.namespace(graph.spec.name), "waited": wait}
        if wait:
            target = execution_arn(arn, name)
            described = follow(deployer.sfn, target, {node.name for node in graph}, click.echo)
            report(deployer.sfn, target, graph.spec.name, name, described, click.echo, invocation.hint)

    group.add_command(click.Command("trigger", callback=trigger, params=trigger_params,
                                    help="Start a run of the deployed flow."))

    @group.command("list-runs", help="List the deployed flow's executions.")
    @click.option("--running", "status", flag_value="RUNNING")
    @click.option("--succeeded", "status", flag_value="SUCCEEDED")
    @click.option("--failed", "status", flag_value="FAILED")
    def list_runs(status: str | None) -> None:
        deployer, arn = _deployed(invocation_of())
        kwargs = {"stateMachineArn": arn, **({"statusFilter": status} if status else {})}
        pages = deployer.sfn.get_paginator("list_executions").paginate(**kwargs)
        found = [e for page in pages for e in page["executions"]]
        for execution in found:
            click.echo(f"{execution['name']}  {execution['status']}  started {execution['startDate']:%Y-%m-%d %H:%M:%S}")
        if not found:
            click.echo("No runs found.")

    @group.command(help="Show a run's status, and the failing step if it failed.")
    @click.argument("run_id")
    @click.option("--wait", is_flag=True, help="Wait for the run to end first.")
    def status(run_id: str, wait: bool) -> None:
        invocation = invocation_of()
        deployer, arn = _deployed(invocation)
        target = execution_arn(arn, run_id)
        described = (wait_for(deployer.sfn, target) if wait else
                     deployer.call(f"reading run {run_id}", deployer.sfn.describe_execution, executionArn=target))
        if described["status"] == "RUNNING":
            click.echo(f"Run {invocation.graph().spec.name}/{run_id}: RUNNING")
            return
        try:
            report(deployer.sfn, target, invocation.graph().spec.name, run_id, described, click.echo,
                   invocation.hint)
        except RunFailed as failed:
            click.echo(failed.message)  # status reports a failure; it does not fail itself

    @group.command(help="Remove the state machine and its schedule.")
    def delete() -> None:
        invocation = invocation_of()
        deployer = Deployer(aws_session(), echo=click.echo)
        name = invocation.graph().spec.name
        arn = deployer.find_state_machine(name)
        running = deployer.running_executions(arn) if arn else []
        if running:
            # AWS ends a deleted state machine's executions at their next transition; ending them here makes
            # that immediate, and their runs say why.
            click.echo(f"Warning: {len(running)} run(s) of {name} still running will be stopped: "
                       f"{', '.join(running)}.", err=True)
            ds = FlowDatastore(storage_for("s3"), name)
            for run_id in running:
                deployer.stop_execution(execution_arn(arn, run_id), "The flow was deleted (step-functions delete).")
                if ds.run_record(run_id) is not None:
                    ds.finish_run(run_id, False, reason="stopped: the flow was deleted")
        if deployer.delete(name):
            click.echo(f"State machine {name} and its schedule were deleted.")
        else:
            click.echo(f"Flow {name} was not deployed.")

    @group.command(help="Print a task's log from CloudWatch: logs RUN_ID/STEP[/TASK_ID].")
    @click.argument("pathspec")
    def logs(pathspec: str) -> None:
        from metaflow_r.aws.batch.logs import print_task_logs

        print_task_logs(invocation_of(), aws_session(), pathspec)

    return group


def describe_package(package: CodePackage, err: bool = False, shown: int = 10) -> None:
    """What Batch tasks will find beside the script, and, as a warning, what they will not."""
    def names(files: tuple[str, ...]) -> str:
        more = len(files) - shown
        return ", ".join(files[:shown]) + (f" and {more} more" if more > 0 else "")

    click.echo(f"Code package: {len(package.files)} file(s), {package.size:,} bytes: {names(package.files)}.",
               err=err)
    if package.left_out:
        suffixes = sorted({Path(f).suffix for f in package.left_out if Path(f).suffix})
        hint = f" (add them with --package-suffixes={','.join(['.R', *suffixes])})" if suffixes else ""
        click.echo(f"Warning: left out of the code package, so a step on Batch cannot read them{hint}: "
                   f"{names(package.left_out)}.", err=True)


def _optional(option: click.Option) -> click.Option:
    """A parameter option for trigger: unset unless given, so the start task applies the flow's defaults."""
    option.default = None
    option.required = False
    option.show_default = False
    return option


def _parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition(":")
        if not sep or not key:
            raise UsageError(f"Tag {tag!r} is not key:value.", [("i", "Write --tag team:ml.")])
        if len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise UsageError(f"Tag {tag[:300]!r} is not valid for AWS.",
                             [("i", f"Keys have 1-{MAX_TAG_KEY} characters, values at most {MAX_TAG_VALUE}.")])
        parsed[key] = value
    if len(parsed) > MAX_TAGS - 1:  # the namespace tag is one of them
        raise UsageError(f"{len(parsed)} tags are too many: AWS allows {MAX_TAGS} on a state machine, one of them "
                         "metaflow:namespace.")
    return parsed


def _deployed(invocation) -> tuple[Deployer, str]:
    deployer = Deployer(aws_session(), echo=click.echo)
    name = invocation.graph().spec.name
    arn = deployer.find_state_machine(name)
    if arn is None:
        raise UsageError(f"Flow {name} is not deployed.", [("i", "Run: step-functions create")])
    return deployer, arn
