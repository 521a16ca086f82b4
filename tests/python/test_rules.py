"""The flow rules (data/rules.json): the backend enforces on any spec what R checks where users type."""
from __future__ import annotations

import click
import pytest
from conftest import make_spec, param, step

from metaflow_r.cli.group import build_cli
from metaflow_r.core.errors import DecoratorError, ParameterError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.rules import DECORATORS, RESERVED_NAMES, RESERVED_PARAMETER_NAMES
from metaflow_r.core.spec import parse_spec


def graph_of(decorators=(), flow_decorators=(), parameters=()):
    return FlowGraph(parse_spec(make_spec(
        "RulesFlow", [step("start", "end", decorators=list(decorators)), step("end")],
        parameters=list(parameters), decorators=list(flow_decorators))))


def option_names(command: click.Command, values_too: bool) -> set[str]:
    """The names a parameter's option would collide with: the command's option strings (without dashes),
    and, for a command that takes the parameters, the names click passes the values under."""
    names = set()
    for option in command.params:
        names.update(o.lstrip("-").replace("-", "_") for o in getattr(option, "opts", []))
        if values_too:
            names.add(option.name)
    return names


def test_no_parameter_can_take_the_name_of_an_option_of_the_commands_that_take_parameters():
    spec = parse_spec(make_spec("F", [step("start", "end"), step("end")], parameters=[param("alpha")]))
    group = build_cli(spec)
    commands = [group.commands["run"], group.commands["step-functions"].get_command(None, "trigger")]
    taken = option_names(group, False).union(*(option_names(c, True) for c in commands)) | {"help"}
    taken -= {"alpha", "seed"}  # seed: a parameter of that name takes the option over (the test below)
    assert taken <= RESERVED_PARAMETER_NAMES | RESERVED_NAMES, taken - RESERVED_PARAMETER_NAMES - RESERVED_NAMES


def test_a_parameter_named_seed_takes_the_run_seed_option_over():
    spec = parse_spec(make_spec("F", [step("start", "end"), step("end")], parameters=[param("seed", type="int")]))
    run = build_cli(spec).commands["run"]
    (seed,) = [option for option in run.params if "--seed" in getattr(option, "opts", [])]
    assert seed.help is None or "run's seed" not in seed.help  # the flow's parameter, not the run's seed
    assert seed.type.name == "integer" and not isinstance(seed.type, click.IntRange)


@pytest.mark.parametrize("name", ["max_workers", "tags", "tag", "run_id_file", "wait", "with", "help", "input"])
def test_a_reserved_parameter_name_is_refused(name):
    with pytest.raises(ParameterError, match=f"Parameter name '{name}' is reserved"):
        graph_of(parameters=[param(name)])


@pytest.mark.parametrize("decorator, attributes, message", [
    ("retyr", {}, "\"retyr\" is not a decorator"),
    ("retry", {"tims": 1}, "has no argument `tims`"),
    ("retry", {"times": -1}, "`times` of `decorator\\(\"retry\"\\)` must be a whole number >= 0"),
    ("retry", {"times": 1.5}, "whole number"),
    ("resources", {"cpu": 0}, "must be a number > 0"),
    ("resources", {"memory": "4G"}, "must be a number > 0"),
    ("catch", {"var": "not a name"}, "must be an artifact name"),
    ("catch", {"print_exception": "yes"}, "must be TRUE or FALSE"),
    ("environment", {"vars": {}}, "named list of strings"),
    ("batch", {"image": ""}, "non-empty string"),
    ("packages", {"packages": ["sf", "not a package"]}, "must be R package names"),
    ("packages", {"packages": []}, "must be R package names"),
    ("schedule", {"hourly": True}, "cannot decorate `step"),
])
def test_a_bad_step_decorator_is_refused_by_the_backend_too(decorator, attributes, message):
    with pytest.raises(DecoratorError, match=message) as caught:
        graph_of(decorators=[{"name": decorator, "attributes": attributes}])
    # the class R's decorator() signals for the same mistake, a graph error too
    assert caught.value.r_classes() == ["metaflow_decorator_error", "metaflow_graph_error", "metaflow_error"]


@pytest.mark.parametrize("attributes", [{}, {"hourly": True, "daily": True}, {"hourly": False}])
def test_a_schedule_needs_exactly_one_of_its_forms(attributes):
    with pytest.raises(DecoratorError, match="exactly one of `hourly`, `daily`, `weekly`, or `cron`"):
        graph_of(flow_decorators=[{"name": "schedule", "attributes": attributes}])


def test_good_decorators_pass():
    graph = graph_of([{"name": "retry", "attributes": {"times": 0}},
                      {"name": "environment", "attributes": {"vars": {"TZ": "UTC", "N": 1}}}],
                     [{"name": "schedule", "attributes": {"cron": "0 10 * * ? *"}}])
    assert graph["start"].spec.decorator("retry").attributes == {"times": 0}
    assert set(DECORATORS) == {"schedule", "retry", "catch", "timeout", "resources", "batch", "environment",
                               "packages"}
