"""A deployment's plan, computed without AWS: the code package, the job definitions named by content hash,
the state machine, the schedule and one run's quota budget. Every AWS limit is checked here, and every
request by the rules AWS documents for it (aws/requests/), so a bad flow fails before any call (the
deployer, deployer.py, only makes AWS match a plan).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from metaflow_r.aws.batch.job_definitions import BatchJobs, plan_batch_jobs
from metaflow_r.aws.code_package import CodePackage
from metaflow_r.aws.requests.rules import in_context
from metaflow_r.aws.requests.schedules import check_put_rule
from metaflow_r.aws.requests.states import check_create_state_machine
from metaflow_r.aws.settings import DeploySettings
from metaflow_r.aws.step_functions.compile import (
    BATCH_RESOURCE,
    DEFAULT_MAX_NUM_SPLITS,
    CompileSettings,
    compile_state_machine,
)
from metaflow_r.aws.step_functions.foreach_modes import (
    AUTO,
    choose,
    foreach_steps,
    one_step_body,
    parse_mode,
    parse_width,
    per_step,
)
from metaflow_r.aws.step_functions.quota import Budget, check, estimate, notes
from metaflow_r.aws.step_functions.schedule import schedule_expression
from metaflow_r.core.errors import AwsRuleError, UsageError
from metaflow_r.core.graph import FlowGraph

MAX_STATE_MACHINE_NAME = 80
MAX_STATE_NAME = 80
MAX_RULE_NAME = 64


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


def plan_deployment(graph: FlowGraph, raw_spec: dict[str, Any], settings: DeploySettings, *, max_workers: int,
                    with_retry: int | None, versions: dict[str, str], workflow_timeout: int | None = None,
                    tags: dict[str, str] | None = None, package_suffixes: tuple[str, ...] = (),
                    with_batch: dict[str, Any] | None = None, foreach_mode: tuple[str, ...] = (),
                    max_num_splits: tuple[str, ...] = (), placeholders: bool = False) -> Plan:
    """``foreach_mode`` and ``max_num_splits`` are create's options as typed: VALUE or STEP=VALUE;
    ``placeholders``: the settings are --only-json's, so no image is checked for the flow's R packages."""
    spec = graph.spec
    name = spec.name
    check_name("state machine", name, MAX_STATE_MACHINE_NAME, r"[A-Za-z0-9_-]+", "letters, digits, - and _")
    schedule = schedule_expression(spec)
    if schedule:
        check_name("EventBridge rule", name, MAX_RULE_NAME, r"[.\-_A-Za-z0-9]+", "letters, digits, ., - and _")
    jobs = plan_batch_jobs(graph, raw_spec, settings, versions=versions, package_suffixes=package_suffixes,
                           with_retry=with_retry, with_batch=with_batch, placeholders=placeholders)
    widths = per_step(max_num_splits, "--max-num-splits", parse_width, DEFAULT_MAX_NUM_SPLITS, graph)
    depths = {n.name: sum(graph[s].is_foreach for s in n.split_parents) for n in foreach_steps(graph)}

    def compiled_with(modes: dict[str, str]) -> dict[str, Any]:
        return compile_state_machine(graph, CompileSettings(
            job_queue=settings.job_queue, job_definitions=jobs.by_step,
            step_queues={step: q for step, q in jobs.queues.items() if q != settings.job_queue},
            code_url=jobs.code_url, code_sha=jobs.package.sha, dynamo_table=settings.dynamo_table or "",
            max_workers=max_workers, workflow_timeout=workflow_timeout, foreach_modes=modes,
            max_num_splits=widths, datastore_root=settings.s3_url, retry_delays=jobs.retry_delays))

    requested = per_step(foreach_mode, "--foreach-mode", parse_mode, AUTO, graph)
    modes = choose(graph, requested, widths, max_workers,
                   lambda m: estimate(compiled_with(m), widths, m, max_workers, split_depths=depths))
    compiled = compiled_with(modes)
    _check_state_names(compiled["States"])
    # Sent compact: whitespace would count against the 1 MB limit (the console re-indents it anyway).
    definition_json = json.dumps(compiled, separators=(",", ":"))
    budget = estimate(compiled, widths, modes, max_workers, definition_json, depths)
    check(budget)
    _check_requests(name, definition_json, schedule, settings)
    bodies = {n.name: one_step_body(graph, n) or "" for n in foreach_steps(graph)}
    return Plan(name, compiled, definition_json, jobs, schedule, settings, dict(tags or {}), budget,
                notes(budget, bodies))


def _check_requests(name: str, definition_json: str, schedule: str | None, settings: DeploySettings) -> None:
    """The state machine and the schedule as AWS would take them (aws/requests/); the job definitions were
    checked when planned. A plan AWS would refuse is never applied, so a deploy never stops half-done."""
    try:
        check_create_state_machine({"name": name, "definition": definition_json, "roleArn": settings.sfn_role})
    except AwsRuleError as exc:
        raise in_context(exc, f"AWS Step Functions would refuse flow {name}'s state machine.") from None
    if schedule:
        try:
            check_put_rule({"Name": name, "ScheduleExpression": schedule})
        except AwsRuleError as exc:
            raise in_context(exc, f"EventBridge would refuse flow {name}'s schedule.") from None


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
