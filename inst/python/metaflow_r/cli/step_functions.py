"""``step-functions`` commands: create, trigger, list-runs, status, logs, delete."""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import click

from metaflow_r.aws.code_package import CodePackage
from metaflow_r.aws.step_functions.compile import DEFAULT_MAX_NUM_SPLITS
from metaflow_r.aws.step_functions.quota import MAX_PARAMETERS_BYTES
from metaflow_r.cli.invocation import Invocation, current
from metaflow_r.cli.options import with_parameters
from metaflow_r.core.errors import UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.params import values_from_json
from metaflow_r.core.rng import SEED_KEY, SEED_LIMIT
from metaflow_r.core.spec import FlowSpec

EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS = 128, 256, 50


def step_functions_group(spec: FlowSpec | None) -> click.Group:
    group = click.Group("step-functions")
    for command in (create, with_parameters(trigger, spec, optional=True), list_runs, status, logs, delete):
        group.add_command(command)
    return group


def _deployer():
    from metaflow_r.aws.step_functions.deployer import Deployer

    return Deployer(echo=click.echo)


def _deployed(invocation: Invocation) -> tuple[Any, str]:
    """The deployer, and the state machine of the flow (NotDeployed when there is none)."""
    deployer = _deployer()
    return deployer, deployer.deployed(invocation.graph().spec.name, invocation.hint("step-functions", "create"))


@click.command(help="Compile the flow, upload its code, and create or update the state machine and schedule.")
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
@click.option("--explain", is_flag=True, help="Print the quota budget of one run (on stderr with --only-json).")
def create(max_workers: int, only_json: bool, authorize: str | None, generate_new_token: bool,
           workflow_timeout: int | None, tags: tuple[str, ...], foreach_mode: tuple[str, ...],
           max_num_splits: tuple[str, ...], explain: bool) -> None:
    from metaflow_r.aws.step_functions.quota import explain as explain_budget

    invocation = current()
    plan = _plan(invocation, only_json, max_workers=max_workers, workflow_timeout=workflow_timeout,
                 tags=_parse_tags(tags), foreach_mode=foreach_mode, max_num_splits=max_num_splits)
    describe_package(plan.package, err=only_json)  # stdout holds only the JSON then
    if explain:
        click.echo(explain_budget(plan.budget, plan.notes), err=only_json)
    if only_json:
        click.echo(json.dumps(plan.definition, indent=1))
        return
    if not explain:
        for note in plan.notes:
            click.echo(f"Note: {note}")
    result = _deployer().apply(plan, authorize, generate_new_token)
    invocation.result = {"kind": "deployment", "flow": plan.name, "state_machine_arn": result["state_machine_arn"],
                         "namespace": result["namespace"], "schedule": plan.schedule}
    click.echo(f"Flow {plan.name} is deployed to Step Functions ({result['state_machine_arn']}).")
    click.echo(f"Its runs are in namespace {result['namespace']}.")


def _plan(invocation: Invocation, only_json: bool, **options: Any):
    """The deployment's plan, every setting and limit checked, without AWS."""
    from metaflow_r.aws.settings import DeploySettings
    from metaflow_r.aws.step_functions.plan import plan_deployment
    from metaflow_r.aws.step_functions.schedule import schedule_expression

    graph = invocation.graph()
    settings = DeploySettings.from_environment(schedule_expression(graph.spec) is not None, placeholders=only_json)
    withs = invocation.withs()
    return plan_deployment(graph, invocation.raw_spec, settings, with_retry=withs.retry, with_batch=withs.batch,
                           versions=invocation.versions, package_suffixes=invocation.package_suffixes,
                           placeholders=only_json, **options)


@click.command(help="Start a run of the deployed flow.")
@click.option("--run-id-file", default=None, help="Write the run id to this file.")
@click.option("--run-id", default=None, help="Name the execution (repeating it never starts a second run).")
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit 1 if it fails.")
@click.option("--seed", type=click.IntRange(1, SEED_LIMIT - 1), default=None,
              help="The run's seed, as run --seed (default: the flow's metaflow(seed =), or a new one, recorded "
                   "with the run).")
def trigger(run_id_file: str | None, run_id: str | None, wait: bool, **values: Any) -> None:
    invocation = current()
    graph = invocation.graph()
    # A flow's own parameter named seed takes --seed (options.py); the run's seed then is metaflow(seed =)'s.
    seed = None if any(p.name == "seed" for p in graph.spec.parameters) else values.pop("seed", None)
    parameters = _parameters_json(graph, values, seed)
    name = run_id or f"sfn-{uuid.uuid4().hex}"
    if not EXECUTION_NAME.fullmatch(name):
        raise UsageError(f"Run id {name!r} is not a valid execution name.", [("i", "Use 1-80 letters, digits, - and _.")])
    deployer, arn = _deployed(invocation)
    existing = deployer.start_execution(arn, name, json.dumps({"Parameters": parameters}))
    if existing is None:
        click.echo(f"Workflow {graph.spec.name} triggered on Step Functions (run-id {name}).")
    else:
        click.echo(f"Workflow {graph.spec.name} run-id {name} was already started ({existing}).")
    if run_id_file:
        Path(run_id_file).write_text(name, encoding="utf-8")
    invocation.result = {"kind": "triggered", "flow": graph.spec.name, "run_id": name,
                         "namespace": deployer.namespace(graph.spec.name), "waited": wait}
    if wait:
        _follow(invocation, deployer, arn, name)


def _parameters_json(graph: FlowGraph, values: dict[str, Any], seed: int | None = None) -> str:
    """The values given (every one checked before anything starts), as the execution's Parameters, with the
    run's seed when one is given (read by the start task, aws/batch/task.py)."""
    given = {name: value for name, value in values.items() if value is not None}
    typed = values_from_json(graph.spec, given)
    parameters = json.dumps({**{k: v for k, v in typed.items() if k in given},
                             **({SEED_KEY: seed} if seed is not None else {})})
    if len(parameters.encode()) > MAX_PARAMETERS_BYTES:
        raise UsageError(f"The parameters are {len(parameters.encode()):,} bytes; a Batch job accepts about "
                         f"{MAX_PARAMETERS_BYTES:,}.", [("i", "Pass large inputs through S3 instead.")])
    return parameters


def _follow(invocation: Invocation, deployer: Any, arn: str, name: str) -> None:
    """Say how each step stands until the run ends; a run that did not succeed is an error."""
    from metaflow_r.aws.step_functions.executions import execution_arn, failure, follow

    graph = invocation.graph()
    target = execution_arn(arn, name)
    described = follow(deployer.sfn, target, {node.name for node in graph}, click.echo, batch=deployer.batch)
    click.echo(f"Run {graph.spec.name}/{name}: {described['status']}")
    failed = failure(deployer.sfn, target, graph, name, described, invocation.hint,
                     deployer.datastore(graph.spec.name))
    if failed is not None:
        raise failed


@click.command("list-runs", help="List the deployed flow's executions.")
@click.option("--running", "status", flag_value="RUNNING")
@click.option("--succeeded", "status", flag_value="SUCCEEDED")
@click.option("--failed", "status", flag_value="FAILED")
def list_runs(status: str | None) -> None:
    deployer, arn = _deployed(current())
    found = list(deployer.executions(arn, status))
    for execution in found:
        click.echo(f"{execution['name']}  {execution['status']}  started {execution['startDate']:%Y-%m-%d %H:%M:%S}")
    if not found:
        click.echo("No runs found.")


@click.command(help="Show a run's status, and the failing step if it failed.")
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Wait for the run to end first.")
def status(run_id: str, wait: bool) -> None:
    from metaflow_r.aws.step_functions.executions import execution_arn, failure, wait_for

    invocation = current()
    graph = invocation.graph()
    deployer, arn = _deployed(invocation)
    target = execution_arn(arn, run_id)
    described = wait_for(deployer.sfn, target) if wait else deployer.describe_execution(target)
    click.echo(f"Run {graph.spec.name}/{run_id}: {described['status']}")
    if described["status"] != "RUNNING":
        failed = failure(deployer.sfn, target, graph, run_id, described, invocation.hint,
                         deployer.datastore(graph.spec.name))
        if failed is not None:
            click.echo(str(failed))  # status reports a failure (the task, its error); it does not fail itself


@click.command(help="Remove the state machine and its schedule.")
def delete() -> None:
    from metaflow_r.aws.step_functions.executions import execution_arn

    name = current().graph().spec.name
    deployer = _deployer()
    arn = deployer.find_state_machine(name)
    running = [e["name"] for e in deployer.executions(arn, "RUNNING")] if arn else []
    if running:
        # AWS ends a deleted state machine's executions at their next transition; ending them here makes
        # that immediate, and their runs say why.
        click.echo(f"Warning: {len(running)} run(s) of {name} still running will be stopped: "
                   f"{', '.join(running)}.", err=True)
        ds = deployer.datastore(name)
        for run_id in running:
            deployer.stop_execution(execution_arn(arn, run_id), "The flow was deleted (step-functions delete).")
            if ds.run_record(run_id) is not None:
                ds.finish_run(run_id, False, reason="stopped: the flow was deleted")
    if deployer.delete(name):
        click.echo(f"State machine {name} and its schedule were deleted.")
    else:
        click.echo(f"Flow {name} was not deployed.")


@click.command(help="Print a task's log from CloudWatch: logs RUN_ID/STEP[/TASK_ID].")
@click.argument("pathspec")
def logs(pathspec: str) -> None:
    from metaflow_r.aws.batch.logs import task_log_lines
    from metaflow_r.aws.session import client
    from metaflow_r.datastore.flow import FlowDatastore, storage_for

    parts = pathspec.strip("/").split("/")
    if len(parts) not in (2, 3):
        raise UsageError(f"{pathspec!r} is not RUN_ID/STEP or RUN_ID/STEP/TASK_ID.",
                         [("i", "For example: step-functions logs sfn-1234/start")])
    name = current().graph().spec.name
    ds = FlowDatastore(storage_for("s3"), name)
    run_id, step = parts[0], parts[1]
    task_ids = [parts[2]] if len(parts) == 3 else ds.task_ids(run_id, step)
    if not task_ids:
        raise UsageError(f"Run {name}/{run_id} has no task of step {step!r}.",
                         [("i", "List runs with: step-functions list-runs")])
    for line in task_log_lines(ds, client("batch"), client("logs"), run_id, step, task_ids):
        click.echo(line)


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
