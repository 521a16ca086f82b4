"""Bad inputs, generated (hypothesis) or at every AWS limit, end in one clear error, never a traceback:

* random graphs: those an independent oracle knows to be invalid raise GraphError (exit 3), the others either
  pass or raise GraphError; a graph that passes compiles to a definition whose every Next exists;
* random JSON in any field of a flow description: GraphError or a valid graph, nothing else;
* random strings as cron: UsageError, or accepted as a string of AWS's strict 6-field form;
* wrong-typed parameter values, through values_from_json and through the command line: UsageError, exit 2;
* names over every AWS limit, long tags, a 300 KiB parameter: UsageError before any AWS call;
* non-UTF-8 bytes in a flow description, a flow script or a file beside it.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import boto3
import pytest
from conftest import BRANCH, FOREACH, LINEAR, NESTED_FOREACH, make_spec, param, step, write_flow_script
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from test_iam import recording

from metaflow_r.aws.step_functions.compile import BATCH_RESOURCE, CompileSettings, compile_state_machine
from metaflow_r.aws.step_functions.schedule import validate_cron
from metaflow_r.cli.entry import main
from metaflow_r.core.errors import GraphError, ParameterError, UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.params import values_from_json
from metaflow_r.core.rules import RESERVED_NAMES, RESERVED_PARAMETER_NAMES
from metaflow_r.core.spec import parse_spec

VERSIONS = {"R": "R version 4.2.2", "metaflow": "0.1.0"}
# No example database: the tests leave no files behind (a failure prints its example to reproduce it).
FAST = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def event(name: str) -> None:
    """Counts the kinds of example hypothesis tried (pytest --hypothesis-show-statistics); a no-op elsewhere."""
    if currently_in_test_context():
        _event(name)


def run_cli(argv, spec, launch_dir=None):
    """main() as R calls it; returns (exit code, stdout + stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv, spec if isinstance(spec, str) else json.dumps(spec),
                    {"launch_dir": str(launch_dir or tempfile.gettempdir()), "rscript": "/nonexistent/Rscript",
                     "versions": VERSIONS})
    return code, out.getvalue() + err.getvalue()


# -- random graphs -------------------------------------------------------------------------------------

POOL = ["start", "end", "a", "b", "c", "j"]
random_step = st.builds(
    lambda name, following, join, foreach: step(name, following, join=join, foreach=foreach),
    st.sampled_from(POOL), st.lists(st.sampled_from(POOL + ["ghost"]), max_size=3), st.booleans(),
    st.sampled_from([None, None, None, "items"]))
@st.composite
def shaped_spec(draw):
    """start, some middle steps, end; mostly each step names later steps only (no cycle, no dangling next), so
    that valid graphs come up too; sometimes any step or one that does not exist."""
    middle = draw(st.lists(st.sampled_from(["a", "b", "c", "j"]), max_size=4, unique=True))
    anything = draw(st.integers(0, 4)) == 0
    steps = []
    for index, name in enumerate(["start", *middle]):
        later = middle[index:] + ["end"]
        targets = st.sampled_from(middle + ["end", "x"]) if anything else st.sampled_from(later)
        steps.append(step(name, draw(st.lists(targets, min_size=1, max_size=2, unique=True)),
                          join=name != "start" and draw(st.booleans()),
                          foreach=draw(st.sampled_from([None, None, None, "items"]))))
    return make_spec("FuzzFlow", [*draw(st.permutations(steps)), step("end")])


random_spec = st.one_of(shaped_spec(),
                        st.lists(random_step, max_size=7).map(lambda steps: make_spec("FuzzFlow", steps)))


def known_invalid(spec) -> str | None:
    """An oracle written apart from graph.py: the reason ``spec`` is certainly not a Metaflow graph, or None
    when these simple rules find nothing (it may still be invalid, e.g. a join that closes no split)."""
    steps = spec["steps"]
    names = [s["name"] for s in steps]
    if len(set(names)) != len(names):
        return "a step defined twice"
    if "start" not in names or "end" not in names:
        return "no start or no end"
    by_name = {s["name"]: s for s in steps}
    parents = defaultdict(set)
    for s in steps:
        if any(t not in by_name for t in s["next"]):
            return "a dangling next"
        if len(set(s["next"])) != len(s["next"]):
            return "a next named twice"
        if (s["name"] == "end") == bool(s["next"]):
            return "end with a next, or another step without"
        if s["foreach"] and len(s["next"]) != 1:
            return "a foreach with several next"
        for t in s["next"]:
            parents[t].add(s["name"])
    if parents["start"]:
        return "start has a parent"
    # Depth-first from start with colours: grey = on the current path.
    colour, stack = {"start": "grey"}, [("start", iter(by_name["start"]["next"]))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            colour[node] = "black"
            stack.pop()
        elif colour.get(child) == "grey":
            return "a cycle"
        elif child not in colour:
            colour[child] = "grey"
            stack.append((child, iter(by_name[child]["next"])))
    if set(colour) != set(names):
        return "an unreachable step"
    if any(len(parents[n]) > 1 and not by_name[n]["join"] for n in names):
        return "several parents without join"
    return None


def check_graph(spec) -> FlowGraph | None:
    """FlowGraph's verdict, cross-checked with the oracle and with the CLI's exit code."""
    reason = known_invalid(spec)
    event(reason or "not known invalid")
    try:
        graph = FlowGraph(parse_spec(copy.deepcopy(spec)))
    except GraphError as error:
        assert error.exit_code == 3
        graph = None
    else:
        assert reason is None, f"FlowGraph accepted a graph with {reason}: {spec['steps']}"
        event("valid")
    code, output = run_cli(["show"], spec)
    assert "Traceback" not in output
    assert code == (0 if graph else 3), output
    if graph is not None:
        check_compiles(graph)
    return graph


def check_compiles(graph: FlowGraph) -> None:
    """Whatever FlowGraph accepts, the compiler turns into a definition whose every Next and StartAt exists."""
    definition = compile_state_machine(graph, CompileSettings(
        job_queue="q", job_definitions={n.name: f"jd-{n.name}" for n in graph}, code_url="s3://b/c.tgz",
        code_sha="0" * 64, dynamo_table="t", datastore_root="s3://b/metaflow"))

    def walk(machine):
        states = machine["States"]
        assert machine["StartAt"] in states
        for state in states.values():
            following = [c["Next"] for c in state.get("Choices", [])] + [state.get("Default")] \
                if state["Type"] == "Choice" else [state.get("Next")]
            assert state.get("End") or state["Type"] == "Fail" or all(n in states for n in following), state
            assert all(c["Next"] in states for c in state.get("Catch", [])), state
            for branch in state.get("Branches", []):
                walk(branch)
            if "ItemProcessor" in state:
                walk(state["ItemProcessor"])

    walk(definition)


@FAST
@given(random_spec)
def test_random_graphs_are_graph_errors_or_valid(spec):
    check_graph(spec)


@FAST
@given(shaped_spec())
def test_random_graphs_from_start_to_end_are_graph_errors_or_valid(spec):
    check_graph(spec)


def _mutations(base):
    steps = base["steps"]
    middle = [s["name"] for s in steps if s["name"] not in ("start", "end")]
    yield "dangling next", lambda s: s["steps"][0]["next"].append("nowhere")
    yield "no start", lambda s: s["steps"].pop(0)
    yield "no end", lambda s: s["steps"].pop()
    yield "end with a next", lambda s: s["steps"][-1]["next"].append("start")
    yield "a step without next", lambda s: s["steps"].insert(1, step("orphan"))
    yield "an unreachable step", lambda s: s["steps"].insert(1, step("orphan", "end"))
    if middle:
        target = middle[0]
        yield "a cycle", lambda s: [x for x in s["steps"] if x["name"] == middle[-1]][0]["next"].__setitem__(0, target)
        yield "several parents without join", lambda s: (
            s["steps"].insert(1, step("extra", target)), s["steps"][0]["next"].append("extra"),
            [x for x in s["steps"] if x["name"] == target][0].__setitem__("join", False))


BASES = [LINEAR, BRANCH, FOREACH, NESTED_FOREACH]


@FAST
@given(st.sampled_from(BASES), st.data())
def test_each_class_of_invalid_graph_is_a_graph_error(base, data):
    spec = copy.deepcopy(base)
    name, mutate = data.draw(st.sampled_from(list(_mutations(spec))), label="mutation")
    mutate(spec)
    event(name)
    with pytest.raises(GraphError) as caught:
        FlowGraph(parse_spec(spec))
    assert caught.value.exit_code == 3
    code, output = run_cli(["show"], spec)
    assert code == 3 and output.startswith("Error: ") and "Traceback" not in output


@pytest.mark.parametrize("base", BASES, ids=lambda b: b["name"])
def test_the_valid_bases_pass(base):
    assert check_graph(copy.deepcopy(base)) is not None


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3),
                           max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, prefix + (index,))


@FAST
@given(st.sampled_from(BASES + [make_spec("ParamFlow", [step("start", "end"), step("end")], parameters=[
    param("alpha", default=0.1, type="float"), param("tags_in", default="a", separator=",")])]), st.data())
def test_any_json_in_any_field_is_a_graph_error_or_a_valid_graph(base, data):
    spec = copy.deepcopy(base)
    path = data.draw(st.sampled_from([p for p in _paths(spec) if p]), label="path")
    value = data.draw(json_values, label="value")
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        FlowGraph(parse_spec(spec))
        event("still valid")
    except GraphError:
        event("GraphError")
    for command in (["show"], ["run", "--help"]):
        code, output = run_cli(command, spec)
        assert code in (0, 3) and "Traceback" not in output, output


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # ASCII, the whole string


@FAST
@given(st.text(max_size=12))
@example("Flow\n")
@example("Flöw")
@example("Flow٣")
def test_a_flow_name_is_accepted_only_if_it_is_an_ascii_identifier(name):
    spec = copy.deepcopy(LINEAR)
    spec["name"] = name
    try:
        FlowGraph(parse_spec(spec))
        accepted = True
    except GraphError:
        accepted = False
    assert accepted == bool(IDENTIFIER.fullmatch(name))


@FAST
@given(st.text(max_size=12))
@example("alpha\n")
def test_a_parameter_name_is_accepted_only_if_it_is_an_ascii_identifier(name):
    spec = copy.deepcopy(LINEAR)
    spec["parameters"] = [param(name, default=1, type="int")]
    try:
        FlowGraph(parse_spec(spec))
        accepted = True
    except ParameterError:
        accepted = False
    # which names are reserved is test_rules.py's business; here: every other identifier is accepted
    assert accepted == bool(IDENTIFIER.fullmatch(name) and name not in RESERVED_NAMES | RESERVED_PARAMETER_NAMES)


# -- cron ------------------------------------------------------------------------------------------


def _strict_cron() -> re.Pattern:
    """AWS's cron(...) body, written apart from aws/requests/schedules.py: 6 fields, single spaces, ASCII, '?' in
    exactly one of day-of-month and day-of-week (checked separately), increments of at least 1 (none in
    day-of-week), one '#' expression alone."""
    def listed(item):
        return rf"(?:{item})(?:,(?:{item}))*"

    def plain(value, increments=True):
        return rf"(?:\*|{value}(?:-{value})?)" + (r"(?:/0*[1-9][0-9]*)?" if increments else "")

    z = "0*"  # leading zeros change no value
    minute, hour = rf"{z}[0-5]?[0-9]", rf"{z}(?:1?[0-9]|2[0-3])"
    dom = rf"{z}(?:[1-9]|[12][0-9]|3[01])"
    month = rf"(?:{z}(?:[1-9]|1[0-2])|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"
    dow = rf"(?:{z}[1-7]|SUN|MON|TUE|WED|THU|FRI|SAT)"
    year = rf"{z}(?:19[7-9][0-9]|20[0-9][0-9]|21[0-9][0-9])"
    fields = [
        listed(plain(minute)), listed(plain(hour)),
        rf"\?|{listed(rf'{plain(dom)}|L|LW|{dom}W')}",
        listed(plain(month)),
        # No increments in day-of-week, and a '#' expression stands alone in it.
        rf"\?|{dow}#[1-5]|{listed(rf'{plain(dow, increments=False)}|L|{dow}L')}",
        listed(plain(year)),
    ]
    return re.compile(" ".join(f"(?:{f})" for f in fields))


STRICT_CRON = _strict_cron()


def strictly_valid(expression: str) -> bool:
    fields = expression.split(" ")
    return bool(STRICT_CRON.fullmatch(expression)) and (fields[2] == "?") != (fields[4] == "?")


TOKENS = ["*", "?", "L", "LW", "W", "#", "-", "/", ",", "0", "1", "5", "7", "12", "15", "23", "31", "59", "60",
          "99", "1970", "2030", "2199", "2200", "MON", "FRI", "SUN", "JAN", "DEC", "FOO", "٣", "0/0", "6L", "15W",
          "2#3", "1-5", "*/15", "L-2"]
cron_fields = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=3).map("".join)
cron_like = st.tuples(st.lists(cron_fields, min_size=4, max_size=7), st.sampled_from([" ", "  ", "\t", "\u2003"]),
                      st.booleans()).map(lambda t: (f"cron({t[1].join(t[0])})" if t[2] else t[1].join(t[0])))


def check_cron(expression: str) -> None:
    try:
        accepted = validate_cron(expression)
    except UsageError as error:
        event("refused")
        assert error.exit_code == 2 and "cron expression" in error.message
        return
    event("accepted")
    assert strictly_valid(accepted), f"validate_cron accepted {expression!r} as {accepted!r}"


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=30))
def test_any_string_as_cron_is_refused_or_strictly_valid(expression):
    check_cron(expression)


@settings(max_examples=200, deadline=None, database=None)
@given(cron_like)
@example("٣ * * * ? *")
@example("*/0 * * * ? *")
@example("0 0 1 * ? 2030/0")
@example("0 0 L-2 * ? *")
@example("0 10 ? * 3#1,6#3 *")
@example("0 10 ? * MON/2 *")
@example("0 10 * * ? *")
def test_cron_like_strings_are_refused_or_strictly_valid(expression):
    check_cron(expression)


@pytest.mark.parametrize("expression", ["0 10 * * ? *", "*/15 * * * ? *", "0 8-17 ? * MON-FRI *", "0 9 ? * 2#1 *",
                                        "0 12 L * ? *", "0 12 15W * ? *", "30 6 ? * 6L 2025-2030", "0 0 LW * ? *",
                                        "0/5 0 1 * ? *", "0 0 ? * L *"])
def test_the_oracle_agrees_on_valid_cron(expression):
    assert strictly_valid(expression) and validate_cron(expression) == expression


# -- parameter values of the wrong type ------------------------------------------------------------------

TYPED = make_spec("TypedFlow", [step("start", "end"), step("end")], parameters=[
    param("n_items", default=3, type="int"), param("alpha", default=0.1, type="float"),
    param("loud", default=True, type="bool"), param("nums", type="int", separator=";")])
BOOL_TEXT = {"", "0", "1", "f", "false", "n", "no", "off", "on", "t", "true", "y", "yes"}


def wrong_text(kind: str, text: str) -> bool:
    """Whether ``text`` is not a value of ``kind`` as the command line reads it, or one R cannot hold exactly:
    an integer outside R's 32-bit range, a float that is not finite."""
    if kind == "bool":
        return text.strip().lower() not in BOOL_TEXT
    try:
        number = (int if kind == "int" else float)(text)
    except ValueError:
        return True
    return abs(number) > 2**31 - 1 if kind == "int" else not math.isfinite(number)


def wrong_json(kind: str, value) -> bool:
    if isinstance(value, (list, dict)) or value is None:
        return value is not None
    if isinstance(value, bool):
        return kind != "bool"
    if isinstance(value, (int, float)):
        return wrong_text(kind, str(value))
    return wrong_text(kind, value)


@FAST
@given(st.sampled_from(["n_items", "alpha", "loud"]), json_values)
@example("n_items", [1, 2])
@example("alpha", {"a": 1})
@example("loud", ["yes"])
@example("n_items", 2.5)
@example("n_items", True)
def test_values_from_json_refuses_every_wrong_type(name, value):
    kind = {"n_items": "int", "alpha": "float", "loud": "bool"}[name]
    spec = parse_spec(TYPED)
    if wrong_json(kind, value):
        with pytest.raises(UsageError) as caught:
            values_from_json(spec, {name: value})
        assert caught.value.exit_code == 2 and repr(name) in caught.value.message
    else:
        values_from_json(spec, {name: value})  # a right value passes


def test_a_list_parameter_survives_the_trip_through_trigger():
    """trigger sends a list parameter already split; the start task reads the same list back."""
    spec = parse_spec(TYPED)
    sent = json.loads(json.dumps({"nums": values_from_json(spec, {"nums": "1;2;3"})["nums"]}))
    assert sent == {"nums": [1, 2, 3]}
    assert values_from_json(spec, sent)["nums"] == [1, 2, 3]
    with pytest.raises(UsageError):
        values_from_json(spec, {"nums": [1, "two"]})


@FAST
@given(st.sampled_from(["n_items", "alpha", "loud"]), st.text(max_size=10))
@example("n_items", "2.5")
@example("alpha", "fast")
@example("loud", "maybe")
def test_wrong_values_on_the_command_line_exit_2_and_call_no_aws(aws_env, name, text):
    kind = {"n_items": "int", "alpha": "float", "loud": "bool"}[name]
    assume(wrong_text(kind, text) and "\x00" not in text)
    with recording() as calls, tempfile.TemporaryDirectory() as directory:
        for command in (["run"], ["step-functions", "trigger"]):
            code, output = run_cli([*command, f"--{name}={text}"], {**TYPED, "script": str(Path(directory, "f.R"))},
                                   directory)
            assert code == 2, output
            assert "Traceback" not in output and name in output
        assert not os.path.exists(os.path.join(directory, ".metaflow"))
    assert calls == []


# -- AWS limits, checked before any AWS call --------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def create(spec, project, *extra):
    with recording() as calls:
        code, output = run_cli(["step-functions", "create", *extra], spec, project)
    return code, output, calls


def linear(name, project, steps=None, decorators=None):
    return make_spec(name, steps or [step("start", "end"), step("end")], script=write_flow_script(project),
                     decorators=decorators)


HOURLY = [{"name": "schedule", "attributes": {"hourly": True}}]


@pytest.mark.parametrize("case, spec_of, needle", [
    ("state machine 81", lambda p: linear("F" * 81, p), "at most 80 characters"),
    ("state machine 300", lambda p: linear("F" * 300, p), "at most 80 characters"),
    ("rule 65 with a schedule", lambda p: linear("F" * 65, p, decorators=HOURLY), "at most 64 characters"),
    ("state name 81", lambda p: linear("F", p, [step("start", "s" * 81), step("s" * 81, "end"), step("end")]),
     "80"),
    ("foreach states 73+8", lambda p: linear("F", p, [
        step("start", "f" * 73), step("f" * 73, "body", foreach="items"), step("body", "join"),
        step("join", "end", join=True), step("end")]), f"Step {'f' * 73!r}"),
    ("branch state 72+9", lambda p: linear("F", p, [
        step("start", "b" * 72), step("b" * 72, ["x", "y"]), step("x", "join"), step("y", "join"),
        step("join", "end", join=True), step("end")]), f"Step {'b' * 72!r}"),
])
def test_names_over_an_aws_limit_fail_before_any_aws_call(case, spec_of, needle, project, moto_aws):
    code, output, calls = create(spec_of(project), project)
    assert code == 2 and needle in output, output
    assert calls == []


@pytest.mark.parametrize("tags, needle", [
    (["--tag", "k" * 129 + ":v"], "not valid for AWS"),
    (["--tag", "k:" + "v" * 257], "not valid for AWS"),
    ([arg for i in range(50) for arg in ("--tag", f"k{i}:v")], "too many"),
])
def test_tags_over_an_aws_limit_fail_before_any_aws_call(tags, needle, project, moto_aws):
    code, output, calls = create(linear("TagFlow", project), project, *tags)
    assert code == 2 and needle in output, output
    assert calls == []
    assert create(linear("TagFlow", project), project, "--tag", "k" * 128 + ":" + "v" * 256)[0] == 0


@FAST
@given(st.integers(81, 400), st.booleans())
def test_any_flow_name_over_80_fails_before_any_aws_call(project, moto_aws, length, scheduled):
    code, output, calls = create(linear("F" * length, project, decorators=HOURLY if scheduled else None), project)
    assert code == 2 and calls == [], output


def test_batch_names_stay_within_128_however_long_the_flow_and_step_names(sfn_env, project):
    """Batch job and job definition names are derived, and cut to 128: the longest flow and step names
    Step Functions allows still give valid Batch names."""
    from metaflow_r.aws.settings import DeploySettings
    from metaflow_r.aws.step_functions.plan import plan_deployment

    spec = linear("F" * 80, project, [step("start", "s" * 80), step("s" * 80, "end"), step("end")])
    graph = FlowGraph(parse_spec(spec))
    plan = plan_deployment(graph, spec, DeploySettings.from_environment(False), max_workers=10, with_retry=None,
                           versions=VERSIONS)
    batch_name = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
    names = [s["Parameters"]["JobName"] for s in plan.definition["States"].values()
             if s.get("Resource") == BATCH_RESOURCE]
    assert len(names) == 3 and all(batch_name.fullmatch(n) for n in names)
    assert max(len(n) for n in names) == 128
    assert all(batch_name.fullmatch(n) for n in plan.job_definitions)


@FAST
@given(st.text(min_size=1, max_size=100))
@example("r" * 81)
@example("run\n")
@example("has space")
def test_an_invalid_run_id_fails_before_any_aws_call(aws_env, run_id):
    assume(not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", run_id) and "\x00" not in run_id)
    with recording() as calls:
        code, output = run_cli(["step-functions", "trigger", f"--run-id={run_id}"],
                               make_spec("RunIdFlow", [step("start", "end"), step("end")]))
    assert code == 2 and "not a valid execution name" in output, output
    assert calls == []


def test_a_300_kib_parameter_is_refused_and_starts_nothing(project, moto_aws):
    spec = make_spec("BigFlow", [step("start", "end"), step("end")], parameters=[param("blob", default="x")],
                     script=write_flow_script(project))
    assert run_cli(["step-functions", "create"], spec, project)[0] == 0
    with recording() as calls:
        code, output = run_cli(["step-functions", "trigger", "--blob", "x" * (300 * 1024)], spec, project)
    assert code == 2, output
    size = len(json.dumps({"blob": "x" * (300 * 1024)}))
    assert f"The parameters are {size:,} bytes" in output and "Pass large inputs through S3" in output
    assert calls == []  # refused before looking for the state machine
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    [machine] = sfn.list_state_machines()["stateMachines"]
    assert sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"] == []


# -- bytes that are not UTF-8 ---------------------------------------------------------------------------


def console(*argv, cwd):
    script = Path(sys.executable).with_name("metaflow-r")
    return subprocess.run([str(script), *argv], cwd=cwd, capture_output=True, text=True, errors="replace",
                          timeout=60)


@pytest.mark.parametrize("content", [b'{"name": "Caf\xe9Flow", "steps": []}', b"\xff\xfe{}", b"\x80" * 10])
def test_a_flow_description_that_is_not_utf8_is_a_clear_error(tmp_path, content):
    (tmp_path / "spec.json").write_bytes(content)
    result = console("--spec", "spec.json", "show", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: Cannot read the flow description spec.json")
    assert "Traceback" not in result.stderr + result.stdout


def test_a_missing_flow_description_is_a_clear_error(tmp_path):
    result = console("--spec", "nowhere.json", "show", cwd=tmp_path)
    assert result.returncode == 2 and "No such file" in result.stderr and "Traceback" not in result.stderr


def test_undecodable_text_escaped_in_the_description_is_shown_not_fatal(tmp_path):
    """R's jsonlite writes invalid bytes as <e9>; a description may still carry lone surrogates (\\udce9)."""
    spec = make_spec("F", [step("start", "end"), step("end")], parameters=[param("a", help="caf\udce9",
                                                                                  default="x\udce9")],
                     script=write_flow_script(tmp_path))
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    for command in (["show"], ["run", "--help"], ["step-functions", "create", "--only-json"]):
        result = console("--spec", "spec.json", *command, cwd=tmp_path)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, result.stderr  # (create --only-json needs no setting)


def test_a_flow_script_and_files_with_non_utf8_bytes_are_packaged_as_they_are(project, moto_aws):
    from test_secrets import unpacked

    script = project / "flow.R"
    script.write_bytes(b"# caf\xe9, latin-1\nlibrary(metaflow)\n")
    (project / b"helper\xff.R".decode(errors="surrogateescape")).write_bytes(b"x <- '\xe9'\n")
    spec = make_spec("Latin1Flow", [step("start", "end"), step("end")], script=str(script))
    code, output = run_cli(["step-functions", "create"], spec, project)
    assert code == 0 and "Traceback" not in output, output
    s3 = boto3.client("s3", region_name="us-east-1")
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket="mf-deploy-test")["Contents"] if o["Key"].endswith(".tgz")]
    members = unpacked(s3.get_object(Bucket="mf-deploy-test", Key=key)["Body"].read())
    assert members["flow.R"] == b"# caf\xe9, latin-1\nlibrary(metaflow)\n"
    assert members["helper\udcff.R"] == b"x <- '\xe9'\n"
