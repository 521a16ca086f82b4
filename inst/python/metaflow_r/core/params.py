"""A flow's parameters as command-line options, and the typed values a run starts with."""
from __future__ import annotations

import math
from typing import Any

import click

from metaflow_r.core.errors import ParameterError
from metaflow_r.core.rules import RULES
from metaflow_r.core.spec import FlowSpec, Parameter

VALUES = RULES["parameter_values"]  # what a value of each type must be, as R's run() checks it too
R_INT_MAX = VALUES["int"]["largest"]


class FiniteFloat(click.ParamType):
    """A float R and JSON both hold exactly: no NaN, no infinity, nothing that overflows to one."""

    name = "float"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not {VALUES['float']['what']}.", param, ctx)
        return number


class RInteger(click.ParamType):
    """A whole number R can hold as an integer."""

    name = "integer"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        number = click.INT.convert(value, param, ctx)
        if not -R_INT_MAX <= number <= R_INT_MAX:
            self.fail(f"{value!r} is not {VALUES['int']['what']} (±{R_INT_MAX}); declare the parameter "
                      "type = \"float\" for larger numbers.", param, ctx)
        return number


CLICK_TYPES = {"str": click.STRING, "int": RInteger(), "float": FiniteFloat(), "bool": click.BOOL}


def parameter_options(spec: FlowSpec) -> list[click.Option]:
    """One click option per parameter, keeping the parameter's exact name (underscores included)."""
    options = []
    for p in spec.parameters:
        text = p.help or ""
        if p.separator:
            text += f" (values separated by {p.separator!r})"
        if p.is_flag:
            options.append(click.Option([f"--{p.name}/--no-{p.name}", p.name], default=bool(p.default),
                                        help=text, show_default=True))
            continue
        # No default at all when there is none: click treats an explicit default=None as a value given.
        default = {} if p.default is None else {"default": _default(p)}
        options.append(click.Option(
            [f"--{p.name}", p.name], type=_click_type(p), help=text,
            required=p.required and p.default is None, show_default=p.default is not None, **default,
        ))
    return options


def _click_type(p: Parameter) -> click.ParamType:
    # A list-valued parameter is read as one string; parameter_values splits it and types each part.
    return click.STRING if p.separator else CLICK_TYPES[p.type]


def _default(p: Parameter) -> Any:
    if p.default is None:
        return None
    # Defaults go through the same conversion as command-line values, so both behave alike.
    return str(p.default).lower() if p.type == "bool" and isinstance(p.default, bool) else p.default


def parameter_values(spec: FlowSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The run's parameter values, typed and split, from click's parsed options."""
    values: dict[str, Any] = {}
    for p in spec.parameters:
        value = given.get(p.name)
        if value is not None and p.separator:
            try:
                value = [CLICK_TYPES[p.type].convert(part, None, None) for part in str(value).split(p.separator)]
            except click.BadParameter as exc:
                raise ParameterError(f"Parameter {p.name!r}: {exc.message}",
                                 [("i", f"Give {p.type} values separated by {p.separator!r}.")]) from None
        values[p.name] = value
    return values


def values_from_json(spec: FlowSpec, raw: dict[str, Any]) -> dict[str, Any]:
    """Typed values from a JSON object such as Step Functions' ``Parameters`` input; defaults filled in."""
    known = {p.name: p for p in spec.parameters}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ParameterError(f"The flow has no parameter {unknown[0]!r}.",
                         [("i", f"Its parameters are: {', '.join(known) or 'none'}.")])
    given: dict[str, Any] = {}
    for name, p in known.items():
        value = raw.get(name, p.default)
        if value is None and p.is_flag:
            value = False
        if value is None:
            if p.required:
                raise ParameterError(f"Parameter {name!r} is required.", [("i", f"Give it a value: --{name} VALUE.")])
            given[name] = None
            continue
        if p.separator and isinstance(value, list):
            # A list parameter as trigger sends it (already split): read it back as the text it was split from.
            value = p.separator.join(str(v).lower() if isinstance(v, bool) else str(v) for v in value)
        if not isinstance(value, (str, int, float, bool)):
            raise ParameterError(f"Parameter {name!r}: {json_type(value)} is not a {p.type} value.",
                             [("i", f"Give a {p.type} value.")])
        try:
            # JSON scalars are read as their text, as on the command line (so 2.5 is not an int).
            text = str(value).lower() if isinstance(value, bool) else (
                str(value) if isinstance(value, (int, float)) else value)
            given[name] = _click_type(p).convert(text, None, None)
        except click.BadParameter as exc:
            raise ParameterError(f"Parameter {name!r}: {exc.message}", [("i", f"Give a {p.type} value.")]) from None
    return parameter_values(spec, given)


def json_type(value: Any) -> str:
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
