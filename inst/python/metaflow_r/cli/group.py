"""The command group of one flow: its options (``--with``, ``--datastore``, ...) and its commands."""
from __future__ import annotations

import click

from metaflow_r.cli.commands import batch_task, emulator, report, show, spec_command
from metaflow_r.cli.image import image_group
from metaflow_r.cli.invocation import Invocation
from metaflow_r.cli.options import with_parameters
from metaflow_r.cli.run_commands import WITH_HELP, resume, run
from metaflow_r.core.config import default_datastore
from metaflow_r.core.spec import FlowSpec

GROUP_OPTIONS = [
    click.Option(["--with", "with_decorators"], multiple=True, metavar="DECORATOR", help=WITH_HELP),
    click.Option(["--datastore"], type=click.Choice(["local", "s3"]), default=None,
                 help="Where artifacts are stored (default: METAFLOW_DEFAULT_DATASTORE or local)."),
    click.Option(["--datastore-root"], default=None, help="Override the datastore's root directory or s3:// URL."),
    click.Option(["--package-suffixes"], default=None, metavar=".R,.csv",
                 help="Also put files with these suffixes, beside the script, in the code package Batch runs."),
]


@click.pass_context
def _group_options(ctx: click.Context, with_decorators: tuple[str, ...], datastore: str | None,
                   datastore_root: str | None, package_suffixes: str | None) -> None:
    invocation = ctx.ensure_object(Invocation)
    invocation.with_decorators = list(with_decorators)
    invocation.package_suffixes = tuple(filter(None, (package_suffixes or "").split(",")))
    invocation.datastore = datastore or default_datastore()
    invocation.datastore_given = datastore is not None
    invocation.datastore_root = datastore_root


class StepFunctionsGroup(click.Group):
    """``step-functions``, whose commands (and the AWS code behind them) load on first use: a local run
    never loads them."""

    def __init__(self, spec: FlowSpec | None) -> None:
        super().__init__("step-functions", help="Deploy and run the flow on AWS Step Functions.")
        self.spec = spec
        self.loaded: click.Group | None = None

    def _commands(self) -> click.Group:
        if self.loaded is None:
            from metaflow_r.cli.step_functions import step_functions_group

            self.loaded = step_functions_group(self.spec)
        return self.loaded

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._commands().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._commands().get_command(ctx, name)


def build_cli(spec: FlowSpec | None) -> click.Group:
    """The commands of flow ``spec`` (None: the backend's own, for ``metaflow-r``)."""
    group = click.Group(help=f"Flow {spec.name}." if spec else "The metaflow R backend.",
                        callback=_group_options, params=GROUP_OPTIONS)
    for command in (show, spec_command, with_parameters(run, spec), resume, StepFunctionsGroup(spec), report,
                    image_group, emulator, batch_task):
        group.add_command(command)
    return group
