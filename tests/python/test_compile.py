"""The Step Functions compiler: golden ASL definitions, statelint, and the structure AWS will execute.

Golden files live in tests/python/golden/<case>.json. After an intended change to the compiler, rewrite
them with

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/python/test_compile.py

and review the diff of tests/python/golden/ before committing: every changed line is a change to what AWS runs.
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import (BRANCH, BRANCHING_BODY, FOREACH, LINEAR, NESTED_FOREACH, make_spec, param, require_npm_tool, step,
                      write_flow_script)
from statelint.linter import Linter

from metaflow_r.aws.settings import DeploySettings
from metaflow_r.aws.step_functions.compile import (
    BATCH_RESOURCE,
    DYNAMODB_GET_ITEM,
    CompileSettings,
    compile_state_machine,
)
from metaflow_r.aws.step_functions.plan import plan_deployment
from metaflow_r.core.errors import UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"

# The specs R's flow_spec() sends for the seed's examples/parameter_flow.R and examples/scheduled_flow.R.
PARAMETER_FLOW = make_spec("ParameterFlow", [step("start", "end"), step("end")],
                           parameters=[param("alpha", help="learning rate", default=0.1, type="float")])
SCHEDULED_FLOW = make_spec("ScheduledFlow", [step("start", "end"), step("end")],
                           decorators=[{"name": "schedule", "attributes": {"hourly": True}}])

CASES = {
    "linear": LINEAR,
    "branch": BRANCH,
    "foreach": FOREACH,
    "nested_foreach": NESTED_FOREACH,
    "parameter_flow": PARAMETER_FLOW,
    "scheduled_flow": SCHEDULED_FLOW,
    "foreach_array": FOREACH,
    "foreach_distributed": FOREACH,
    "nested_distributed_then_array": NESTED_FOREACH,
    "nested_inline_then_array": NESTED_FOREACH,
    "branching_body_distributed": BRANCHING_BODY,
}
# The foreach constructs of each case (inline where none is named).
MODES = {
    "foreach_array": {"start": "array"},
    "foreach_distributed": {"start": "distributed"},
    "nested_distributed_then_array": {"start": "distributed", "per_letter": "array"},
    "nested_inline_then_array": {"per_letter": "array"},
    "branching_body_distributed": {"start": "distributed"},
}
CODE_SHA = "ab" * 32
MAX_WORKERS = 7


# statelint 3.1.0 (the latest on PyPI) knows only MaxItems in an ItemReader's ReaderConfig; AWS documents
# InputType there too ("ItemReader (Map)" in the Step Functions guide: CSV, JSON, JSONL, PARQUET, MANIFEST),
# and a JSON document read with s3:getObject needs it. asl-validator accepts it. Every other problem counts.
STATELINT_GAP = re.compile(r'^Field "InputType" not allowed in .*\.ItemReader\.ReaderConfig$')


def lint(definition: dict[str, Any]) -> list[str]:
    return [p for p in Linter.validate(definition) if not STATELINT_GAP.match(p)]


def graph_of(spec: dict[str, Any]) -> FlowGraph:
    return FlowGraph(parse_spec(copy.deepcopy(spec)))


def settings_for(graph: FlowGraph, **overrides: Any) -> CompileSettings:
    """Fixed settings, so the golden files depend on the compiler alone."""
    name = graph.spec.name
    values = dict(
        job_queue="arn:aws:batch:us-east-1:123456789012:job-queue/metaflow-queue",
        job_definitions={node: f"metaflow-{name}-{node}" for node in graph.nodes},
        code_url=f"s3://mf-golden/metaflow/{name}/_code/{CODE_SHA}.tgz",
        code_sha=CODE_SHA,
        dynamo_table="metaflow-foreach",
        max_workers=MAX_WORKERS,
        datastore_root="s3://mf-golden/metaflow",
    )
    values.update(overrides)
    return CompileSettings(**values)


def compiled(case_or_spec: str | dict[str, Any], **overrides: Any) -> dict[str, Any]:
    spec = CASES[case_or_spec] if isinstance(case_or_spec, str) else case_or_spec
    if isinstance(case_or_spec, str) and case_or_spec in MODES:
        overrides = {"foreach_modes": MODES[case_or_spec], **overrides}
    graph = graph_of(spec)
    return compile_state_machine(graph, settings_for(graph, **overrides))


def walk(states: dict[str, Any], depth: int = 0) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Every state, including those inside Parallel branches and Map processors, with its nesting depth."""
    for name, state in states.items():
        yield name, state, depth
        for branch in state.get("Branches", []):
            yield from walk(branch["States"], depth + 1)
        if "ItemProcessor" in state:
            yield from walk(state["ItemProcessor"]["States"], depth + 1)


def batch_tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state, _ in walk(definition["States"])
            if state.get("Type") == "Task" and state.get("Resource") == BATCH_RESOURCE}


def environment(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["Name"]: entry for entry in task["Parameters"]["ContainerOverrides"]["Environment"]}


# -- golden files --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_definition_matches_golden_file(case):
    text = json.dumps(compiled(case), indent=2) + "\n"
    path = GOLDEN_DIR / f"{case}.json"
    if UPDATE_GOLDEN:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run the tests once with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{case}: the compiled definition differs from {path.name} (see module doc)"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_definition_passes_statelint(case):
    definition = json.loads((GOLDEN_DIR / f"{case}.json").read_text())
    assert lint(definition) == []


def test_compiling_is_deterministic():
    assert json.dumps(compiled("nested_foreach")) == json.dumps(compiled("nested_foreach"))


# -- structure -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_step_is_one_batch_task_that_keeps_its_input(case):
    definition = compiled(case)
    tasks = batch_tasks(definition)
    assert sorted(n for n in tasks if "-" not in n) == sorted(s["name"] for s in CASES[case]["steps"])
    # The body of an array foreach has a second state for a chunk of one item (Batch arrays have 2 or more).
    array_bodies = [next(s["next"][0] for s in CASES[case]["steps"] if s["name"] == f)
                    for f, mode in MODES.get(case, {}).items() if mode == "array"]
    assert sorted(n for n in tasks if "-" in n) == sorted(f"{b}-one" for b in array_bodies)
    for name, task in tasks.items():
        step_name = name.split("-")[0]
        assert task["Resource"] == "arn:aws:states:::batch:submitJob.sync"
        # ResultPath null (not absent: absent would replace the state's input with Batch's job description),
        # so run_id, split_path and Parameters reach every later state.
        assert "ResultPath" in task and task["ResultPath"] is None, name
        assert task["Parameters"]["JobDefinition"] == f"metaflow-{CASES[case]['name']}-{step_name}"
        assert task["Parameters"]["JobQueue"].endswith("job-queue/metaflow-queue")
        env = environment(task)
        assert env["METAFLOW_STEP"]["Value"] == step_name
        assert env["METAFLOW_RUN_ID"]["Value.$"] == "$.run_id"
        assert env["METAFLOW_CODE_SHA"]["Value"] == CODE_SHA
        # Only the Batch submission is retried by Step Functions; the job's own retries are Batch's.
        assert [r["ErrorEquals"] for r in task["Retry"]] == [["Batch.AWSBatchException"]]


@pytest.mark.parametrize("case", sorted(CASES))
def test_only_start_receives_the_parameters(case):
    with_parameters = [name for name, task in batch_tasks(compiled(case)).items()
                       if "METAFLOW_PARAMETERS" in environment(task)]
    assert with_parameters == ["start"]
    start = environment(batch_tasks(compiled(case))["start"])
    assert start["METAFLOW_PARAMETERS"] == {"Name": "METAFLOW_PARAMETERS", "Value.$": "$.Parameters"}


def test_run_id_is_the_execution_name_and_parameters_default_to_an_empty_object():
    definition = compiled("parameter_flow")
    states = definition["States"]
    choice = states[definition["StartAt"]]
    assert choice["Type"] == "Choice"
    assert choice["Choices"][0]["Variable"] == "$.Parameters"
    with_input, without_input = states[choice["Choices"][0]["Next"]], states[choice["Default"]]
    assert with_input["Parameters"] == {"Parameters.$": "$.Parameters", "run_id.$": "$$.Execution.Name"}
    assert without_input["Parameters"] == {"Parameters": "{}", "run_id.$": "$$.Execution.Name"}
    assert with_input["Next"] == without_input["Next"] == "start"


def test_linear_flow_is_a_chain_ending_at_end():
    definition = compiled("linear")
    tasks = batch_tasks(definition)
    assert tasks["start"]["Next"] == "a"
    assert tasks["a"]["Next"] == "end"
    assert tasks["end"].get("End") is True and "Next" not in tasks["end"]
    assert all(depth == 0 for _, _, depth in walk(definition["States"]))


def test_branch_is_a_parallel_state_with_one_branch_per_next_step():
    definition = compiled("branch")
    states = definition["States"]
    parallel = states[states["start"]["Next"]]
    assert parallel["Type"] == "Parallel"
    assert [b["StartAt"] for b in parallel["Branches"]] == ["a", "b"]
    for branch, only in zip(parallel["Branches"], ["a", "b"]):
        assert list(branch["States"]) == [only]
        assert branch["States"][only].get("End") is True
    assert parallel["ResultPath"] is None
    assert parallel["Next"] == "join" and states["join"]["Next"] == "end"


def test_three_way_branch_has_three_branches():
    spec = make_spec("ThreeWay", [step("start", ["a", "b", "c"]), step("a", "join"), step("b", "join"),
                                  step("c", "join"), step("join", "end", join=True), step("end")])
    parallels = [s for _, s, _ in walk(compiled(spec)["States"]) if s["Type"] == "Parallel"]
    assert len(parallels) == 1 and len(parallels[0]["Branches"]) == 3


def test_foreach_is_a_map_over_the_width_stored_in_dynamodb():
    definition = compiled("foreach")
    states = definition["States"]
    lookup = states[states["start"]["Next"]]
    # A Batch job has no output: the foreach task writes its width to DynamoDB, the state machine reads it.
    assert lookup["Type"] == "Task" and lookup["Resource"] == DYNAMODB_GET_ITEM
    assert lookup["Parameters"]["TableName"] == "metaflow-foreach"
    assert lookup["Parameters"]["ConsistentRead"] is True
    # The key the Batch task writes: <run id>/<step>/<task id>, the task id of a top-level step being its name.
    assert lookup["Parameters"]["Key"] == {"pathspec": {"S.$": "States.Format('{}/start/start', $.run_id)"}}
    assert lookup["ResultSelector"] == {"items.$": "$.Item.for_each_cardinality.L"}
    mapped = states[lookup["Next"]]
    assert mapped["Type"] == "Map"
    assert mapped["ItemsPath"] == lookup["ResultPath"] + ".items"
    assert mapped["MaxConcurrency"] == MAX_WORKERS
    assert mapped["ResultPath"] is None and mapped["Next"] == "join"
    processor = mapped["ItemProcessor"]
    body = batch_tasks({"States": processor["States"]})
    assert list(body) == ["body"]
    assert environment(body["body"])["METAFLOW_SPLIT_PATH"] == {"Name": "METAFLOW_SPLIT_PATH",
                                                                 "Value.$": "$.split_path"}
    # Outside a foreach the split path is empty.
    assert environment(states["join"])["METAFLOW_SPLIT_PATH"]["Value"] == ""


@pytest.mark.parametrize("workers", [1, 40, 100])
def test_map_concurrency_is_max_workers(workers):
    definition = compiled("nested_foreach", max_workers=workers)
    maps = [s for _, s, _ in walk(definition["States"]) if s["Type"] == "Map"]
    assert len(maps) == 2
    assert all(m["MaxConcurrency"] == workers for m in maps)


def test_nested_foreach_has_a_map_inside_the_item_processor():
    definition = compiled("nested_foreach")
    outer = [s for s in definition["States"].values() if s["Type"] == "Map"]
    assert len(outer) == 1
    inner_states = outer[0]["ItemProcessor"]["States"]
    inner = [s for s in inner_states.values() if s["Type"] == "Map"]
    assert len(inner) == 1
    assert "per_letter" in inner_states and "join_numbers" in inner_states
    assert "per_number" in inner[0]["ItemProcessor"]["States"]
    # The inner foreach's width is stored under the outer task's own id: per_letter-<i>.
    lookups = [s for s in inner_states.values() if s.get("Resource") == DYNAMODB_GET_ITEM]
    assert lookups[0]["Parameters"]["Key"]["pathspec"]["S.$"] == (
        "States.Format('{}/per_letter/{}', $.run_id, States.Format('per_letter-{}', $.split_path))")
    # Inner iterations extend the outer split path: <i>-<j>.
    passes = [s for s in inner[0]["ItemProcessor"]["States"].values() if s["Type"] == "Pass"]
    assert passes[0]["Parameters"]["split_path.$"] == "States.Format('{}-{}', $.parent_path, $.index)"
    assert inner[0]["ItemSelector"]["parent_path.$"] == "$.split_path"


def test_workflow_timeout_becomes_timeout_seconds():
    assert "TimeoutSeconds" not in compiled("linear")
    assert compiled("linear", workflow_timeout=3600)["TimeoutSeconds"] == 3600


@pytest.mark.parametrize("generated", ["start_splits", "start_foreach", "start_index"])
def test_a_step_named_like_a_generated_state_does_not_replace_it(generated):
    # A user may name a step anything a valid identifier allows; a state the compiler adds must not
    # silently take (or lose) its place, or AWS would skip the foreach.
    spec = make_spec("Clash", [step("start", "body", foreach="items"), step("body", "join"),
                               step("join", generated, join=True), step(generated, "end"), step("end")])
    definition = compiled(spec)
    assert lint(definition) == []
    assert sorted(batch_tasks(definition)) == sorted(["start", "body", "join", generated, "end"])
    assert [s["Type"] for _, s, _ in walk(definition["States"])].count("Map") == 1


def test_branch_inside_foreach_and_foreach_inside_branch_pass_statelint():
    spec = make_spec("Mixed", [
        step("start", ["left", "right"]),
        step("left", "fan", foreach="xs"), step("fan", ["p", "q"]), step("p", "pq"), step("q", "pq"),
        step("pq", "fan_join", join=True), step("fan_join", "both", join=True),
        step("right", "both"),
        step("both", "end", join=True), step("end"),
    ])
    definition = compiled(spec)
    assert lint(definition) == []
    assert sorted(batch_tasks(definition)) == sorted(s["name"] for s in spec["steps"])
    depths = {name: depth for name, _, depth in walk(definition["States"])}
    assert depths["left"] == 1 and depths["fan"] == 2 and depths["p"] == 3 and depths["both"] == 0


# -- size ----------------------------------------------------------------------------------------


def test_a_300_step_linear_flow_stays_well_under_the_1_mb_limit(tmp_path):
    steps = [step("start", "s1")] + [step(f"s{i}", f"s{i + 1}") for i in range(1, 298)] + [step("s298", "end"),
                                                                                         step("end")]
    spec = make_spec("AVeryLongLinearFlowName", steps, script=write_flow_script(tmp_path))
    assert len(spec["steps"]) == 300
    settings = DeploySettings(
        s3_root="s3://a-rather-long-bucket-name-for-metaflow-artifacts/some/deeper/prefix",
        job_queue="arn:aws:batch:us-east-1:123456789012:job-queue/metaflow-production-queue",
        batch_role="arn:aws:iam::123456789012:role/metaflow-batch", sfn_role="arn:aws:iam::123456789012:role/sfn",
        dynamo_table="metaflow-foreach", image="123456789012.dkr.ecr.us-east-1.amazonaws.com/metaflow-r:1.0")
    # What deploy actually sends to AWS, with real job definition names and code URL.
    plan = plan_deployment(graph_of(spec), spec, settings, max_workers=100, with_retry=None, versions={})
    size = len(plan.definition_json.encode())
    assert size < 512 * 1024
    assert size / 300 <= 1200, f"{size / 300:.0f} bytes per step"
    assert lint(plan.definition) == []


def test_a_step_name_too_long_for_a_state_name_fails_before_any_aws_call(tmp_path, no_metaflow_settings):
    # AWS state names are at most 80 characters; step names have no limit of their own.
    long_step = "a" * 81
    spec = make_spec("LongStep", [step("start", long_step), step(long_step, "end"), step("end")],
                     script=write_flow_script(tmp_path))
    settings = DeploySettings.from_environment(False, placeholders=True)
    with pytest.raises(UsageError, match=long_step):
        plan_deployment(graph_of(spec), spec, settings, max_workers=10, with_retry=None, versions={})


ASL_VALIDATOR = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / ".bin" / "asl-validator"


@pytest.fixture(scope="module")
def asl_validator_verdicts() -> str:
    """One run of asl-validator over every golden file (Node's start-up is most of its time)."""
    require_npm_tool(ASL_VALIDATOR, "asl-validator (npm)")
    goldens = [arg for path in sorted(GOLDEN_DIR.glob("*.json")) for arg in ("--json-path", str(path))]
    done = subprocess.run([str(ASL_VALIDATOR), *goldens], capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


@pytest.mark.parametrize("golden", sorted(GOLDEN_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_golden_definitions_pass_asl_validator(golden, asl_validator_verdicts):
    assert f'✓ State machine definition "{golden}" is valid' in asl_validator_verdicts, asl_validator_verdicts
