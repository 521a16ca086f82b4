"""The strict checks (aws/requests/) against everything a deployment of every example and golden flow would
send AWS: each examples/*.R script's job definitions, state machine, schedule and the job each Task state
submits, in every foreach construct; and every golden state machine (tests/python/golden/)."""
from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from test_compile import GOLDEN_DIR

from metaflow_r.aws.requests.check import check_request
from metaflow_r.aws.settings import DeploySettings
from metaflow_r.aws.step_functions.compile import BATCH_RESOURCE
from metaflow_r.aws.step_functions.foreach_modes import foreach_steps, one_step_body
from metaflow_r.aws.step_functions.plan import plan_deployment
from metaflow_r.aws.step_functions.schedule import schedule_expression
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.R"))
VERSIONS = {"R": "R version 4.2.2", "metaflow": "0.1.0"}


@pytest.fixture(scope="module")
def example_specs(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The spec each example's R script sends (Rscript flow.R spec), by script name."""
    cwd = tmp_path_factory.mktemp("examples")
    found = {}
    for script in EXAMPLES:
        done = subprocess.run(["Rscript", str(script), "spec"], capture_output=True, text=True, cwd=cwd, timeout=120)
        assert done.returncode == 0, done.stderr
        found[script.name] = json.loads(done.stdout)
    return found


def _states(states: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in states.values():
        yield state
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"]["States"])


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _request(value: Any) -> Any:
    """A Task state's Parameters as the request Step Functions sends: camelCase members, each path filled in
    with a value of its kind (an array job's size 2, any other value text)."""
    if isinstance(value, list):
        return [_request(item) for item in value]
    if not isinstance(value, dict):
        return value
    found = {}
    for key, item in value.items():
        name = _camel(key.removesuffix(".$"))
        found[name] = (2 if name == "size" else "from-the-execution") if key.endswith(".$") else _request(item)
    return found


def deployment_requests(spec: dict[str, Any], mode: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(service, operation, request) for every request `step-functions create` would make of the flow, and
    the SubmitJob of each of its Task states, as `--with retry` deploys it (each foreach as ``mode`` where it
    can run so, foreaches of up to 40 items)."""
    graph = FlowGraph(parse_spec(copy.deepcopy(spec)))
    settings = DeploySettings.from_environment(schedule_expression(graph.spec) is not None)
    modes = tuple(f"{node.name}={mode}" for node in foreach_steps(graph)
                  if mode and (mode != "array" or one_step_body(graph, node)))
    plan = plan_deployment(graph, copy.deepcopy(spec), settings, max_workers=100, with_retry=3, versions=VERSIONS,
                           foreach_mode=modes, max_num_splits=("40",) if mode else ())
    assert modes or not mode, f"no foreach of {graph.spec.name} can run as {mode}"
    found = [("batch", "RegisterJobDefinition", body) for body in plan.job_definitions.values()]
    found.append(("stepfunctions", "CreateStateMachine",
                  {"name": plan.name, "definition": plan.definition_json, "roleArn": settings.sfn_role}))
    if plan.schedule:
        found.append(("events", "PutRule", {"Name": plan.name, "ScheduleExpression": plan.schedule}))
    found += [("batch", "SubmitJob", _request(state["Parameters"])) for state in _states(plan.definition["States"])
              if state.get("Resource") == BATCH_RESOURCE]
    return found


@pytest.mark.parametrize("script", [p.name for p in EXAMPLES])
def test_every_request_deploying_an_example_makes_passes_the_strict_checks(script, example_specs, sfn_env):
    requests = deployment_requests(example_specs[script])
    assert {operation for _, operation, _ in requests} >= {"RegisterJobDefinition", "CreateStateMachine", "SubmitJob"}
    for service, operation, request in requests:
        check_request(service, operation, request)


@pytest.mark.parametrize("mode", ["inline", "array", "distributed"])
@pytest.mark.parametrize("script", ["foreach_flow.R", "production_check.R"])
def test_every_foreach_construct_of_the_examples_passes_the_strict_checks(script, mode, example_specs, sfn_env):
    for service, operation, request in deployment_requests(example_specs[script], mode):
        check_request(service, operation, request)


@pytest.mark.parametrize("golden", sorted(GOLDEN_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_every_golden_state_machine_passes_the_strict_checks(golden):
    name = re.sub(r"[^A-Za-z0-9_-]", "", golden.stem)
    check_request("stepfunctions", "CreateStateMachine", {"name": name, "definition": golden.read_text()})
