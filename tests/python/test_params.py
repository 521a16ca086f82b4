"""Parameters as command-line options (parameter_options/parameter_values) and from JSON (values_from_json)."""
from __future__ import annotations

import click
import pytest
from conftest import make_spec, param, step

from metaflow_r.core.errors import UsageError
from metaflow_r.core.params import parameter_options, parameter_values, values_from_json
from metaflow_r.core.spec import parse_spec


def flow_with(*params):
    return parse_spec(make_spec("F", [step("start", "end"), step("end")], parameters=list(params)))


def parse(spec, args):
    """Parse ``args`` the way the run command does; returns the run's parameter values."""
    command = click.Command("run", params=parameter_options(spec),
                            callback=lambda **given: parameter_values(spec, given))
    return command.main(args=list(args), standalone_mode=False)


def test_values_are_typed(param_spec):
    spec = parse_spec(param_spec)
    values = parse(spec, ["--alpha", "0.5", "--n_items", "7", "--label", "hello", "--loud", "false",
                          "--token", "t0k"])
    assert values == {"alpha": 0.5, "n_items": 7, "label": "hello", "loud": False, "dry_run": False,
                      "tags_in": ["a", "b"], "token": "t0k"}
    assert isinstance(values["n_items"], int) and isinstance(values["alpha"], float)


def test_defaults_are_typed(param_spec):
    values = parse(parse_spec(param_spec), ["--token", "t"])
    assert values["alpha"] == 0.01 and values["n_items"] == 3 and values["label"] == "x"
    assert values["loud"] is True and values["dry_run"] is False


def test_option_names_keep_underscores(param_spec):
    names = [opt.opts[0] for opt in parameter_options(parse_spec(param_spec))]
    assert "--n_items" in names and "--tags_in" in names
    with pytest.raises(click.NoSuchOption):
        parse(parse_spec(param_spec), ["--token", "t", "--n-items", "2"])


@pytest.mark.parametrize("args, error", [
    (["--n_items", "three"], "'three' is not a valid integer"),
    (["--alpha", "fast"], "'fast' is not a valid float"),
    (["--loud", "maybe"], "'maybe' is not a valid boolean"),
])
def test_wrong_values_are_rejected(param_spec, args, error):
    with pytest.raises(click.BadParameter, match=error):
        parse(parse_spec(param_spec), ["--token", "t", *args])


@pytest.mark.parametrize("args, error", [
    (["--alpha", "nan"], "is not a finite number"),
    (["--alpha", "inf"], "is not a finite number"),
    (["--alpha", "-Infinity"], "is not a finite number"),
    (["--alpha", "1e400"], "is not a finite number"),
    (["--n_items", "2147483648"], "is not a whole number within R's integer range"),
    (["--n_items", "-2147483648"], "is not a whole number within R's integer range"),
])
def test_values_r_cannot_hold_exactly_are_refused_before_the_run(param_spec, args, error):
    with pytest.raises(click.BadParameter, match=error):
        parse(parse_spec(param_spec), ["--token", "t", *args])


@pytest.mark.parametrize("raw", [{"alpha": float("nan")}, {"alpha": float("inf")}, {"n_items": 2**31}])
def test_trigger_refuses_them_too(param_spec, raw):
    with pytest.raises(UsageError):
        values_from_json(parse_spec(param_spec), {"token": "t", **raw})


def test_the_largest_r_integer_and_exact_floats_pass(param_spec):
    values = parse(parse_spec(param_spec), ["--token", "t", "--n_items", "2147483647", "--alpha",
                                             "3.1415926535897931"])
    assert values["n_items"] == 2147483647 and values["alpha"] == 3.141592653589793


def test_required_parameter_must_be_given(param_spec):
    with pytest.raises(click.MissingParameter, match="token"):
        parse(parse_spec(param_spec), [])


def test_required_parameter_with_a_default_is_optional():
    spec = flow_with(param("region", default="eu", required=True))
    assert parse(spec, []) == {"region": "eu"}


def test_optional_parameter_without_default_is_none():
    assert parse(flow_with(param("note")), []) == {"note": None}


def test_flags():
    spec = flow_with(param("verbose", is_flag=True, type="bool"), param("color", is_flag=True, type="bool",
                                                                        default=True))
    assert parse(spec, []) == {"verbose": False, "color": True}
    assert parse(spec, ["--verbose", "--no-color"]) == {"verbose": True, "color": False}


@pytest.mark.parametrize("given, expected", [("true", True), ("False", False), ("1", True), ("no", False)])
def test_bool_parameter_spellings(given, expected):
    assert parse(flow_with(param("b", type="bool", default=False)), ["--b", given]) == {"b": expected}


def test_separator_splits_values_and_defaults():
    spec = flow_with(param("names", default="ann;bob", separator=";", help="Who."))
    assert parse(spec, []) == {"names": ["ann", "bob"]}
    assert parse(spec, ["--names", "x;y;z"]) == {"names": ["x", "y", "z"]}
    assert parse(spec, ["--names", "solo"]) == {"names": ["solo"]}
    (option,) = parameter_options(spec)
    assert option.help == "Who. (values separated by ';')"


@pytest.mark.parametrize("ptype, default, given, expected", [
    ("int", "1,2", "3,4,5", [3, 4, 5]),
    ("float", "0.5,1", "2.5,3", [2.5, 3.0]),
])
def test_separator_with_a_numeric_type(ptype, default, given, expected):
    # parameter("xs", default = c(1, 2), separator = ",") sends type "float" and default "1,2".
    spec = flow_with(param("xs", type=ptype, default=default, separator=","))
    assert parse(spec, []) == {"xs": [type(expected[0])(v) for v in default.split(",")]}
    assert parse(spec, ["--xs", given]) == {"xs": expected}
    with pytest.raises(UsageError, match=f"Parameter 'xs': 'oops' is not a valid {ptype}") as info:
        parse(spec, ["--xs", "1,oops"])
    assert info.value.exit_code == 2


def test_help_shows_defaults():
    spec = flow_with(param("alpha", default=0.1, type="float", help="Step size."))
    command = click.Command("run", params=parameter_options(spec))
    with click.Context(command) as ctx:
        text = command.get_help(ctx)
    assert "--alpha FLOAT" in text and "Step size." in text and "default: 0.1" in text


# -- values_from_json ----------------------------------------------------------------------------


def test_json_values_are_typed_and_defaults_filled(param_spec):
    spec = parse_spec(param_spec)
    values = values_from_json(spec, {"alpha": "0.25", "n_items": 4, "token": "t", "loud": False})
    assert values == {"alpha": 0.25, "n_items": 4, "label": "x", "loud": False, "dry_run": False,
                      "tags_in": ["a", "b"], "token": "t"}


def test_json_unknown_parameter(param_spec):
    with pytest.raises(UsageError, match="The flow has no parameter 'bogus'") as info:
        values_from_json(parse_spec(param_spec), {"bogus": 1, "token": "t"})
    assert info.value.exit_code == 2
    assert "alpha, n_items, label" in str(info.value)


def test_json_unknown_parameter_for_a_flow_without_parameters():
    with pytest.raises(UsageError, match="Its parameters are: none"):
        values_from_json(flow_with(), {"x": 1})


@pytest.mark.parametrize("name, value", [
    ("n_items", "many"),
    ("n_items", 2.5),
    ("n_items", True),
    ("alpha", "fast"),
    ("loud", "perhaps"),
    ("loud", 7),
])
def test_json_wrong_types(param_spec, name, value):
    with pytest.raises(UsageError, match=f"Parameter '{name}'") as info:
        values_from_json(parse_spec(param_spec), {name: value, "token": "t"})
    assert info.value.exit_code == 2


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), ("true", True), ("FALSE", False),
                                             ("yes", True), (0, False), (1, True)])
def test_json_bools(param_spec, value, expected):
    assert values_from_json(parse_spec(param_spec), {"loud": value, "token": "t"})["loud"] is expected


def test_json_int_for_a_float_parameter(param_spec):
    assert values_from_json(parse_spec(param_spec), {"alpha": 2, "token": "t"})["alpha"] == 2.0


def test_json_required_parameter(param_spec):
    with pytest.raises(UsageError, match="Parameter 'token' is required") as info:
        values_from_json(parse_spec(param_spec), {})
    assert info.value.exit_code == 2


def test_json_separator():
    spec = flow_with(param("names", default="a|b", separator="|"))
    assert values_from_json(spec, {}) == {"names": ["a", "b"]}
    assert values_from_json(spec, {"names": "x|y"}) == {"names": ["x", "y"]}
