"""Commands that take the flow's parameters as options: ``run``, and ``step-functions trigger``."""
from __future__ import annotations

import click

from metaflow_r.core.params import parameter_options
from metaflow_r.core.spec import FlowSpec


def with_parameters(command: click.Command, spec: FlowSpec | None, optional: bool = False) -> click.Command:
    """A copy of ``command`` taking one option per parameter of the flow. ``optional``: unset unless given,
    so that the start task applies the flow's defaults (trigger)."""
    options = parameter_options(spec) if spec else []
    if optional:
        for option in options:
            option.default = None
            option.required = False
            option.show_default = False
    # A parameter a flow had before the command gained an option of its name (`seed`) keeps its option.
    names = {option.name for option in options}
    own = [param for param in command.params if param.name not in names]
    return click.Command(command.name, callback=command.callback, params=[*own, *options],
                         help=command.help, hidden=command.hidden)
