"""What a command knows before it runs: the flow, where it was launched, and the group's options."""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from metaflow_r.core.errors import UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import FlowSpec
from metaflow_r.core.with_decorators import WithDecorators, parse_with
from metaflow_r.datastore.flow import FlowDatastore, find_local_root, storage_for

# The commands run() takes in R, as a user writes them there.
R_COMMANDS = {("run",): "run()", ("resume",): "run(resume = TRUE)",
              ("step-functions", "create"): 'run(step_functions = "create")',
              ("step-functions", "trigger"): 'run(step_functions = "trigger")'}


@dataclass
class Invocation:
    """What the command line's group options and the R side established."""

    spec: FlowSpec | None
    launch_dir: str
    rscript: str
    raw_spec: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    with_decorators: list[str] = field(default_factory=list)
    datastore: str = "local"
    datastore_given: bool = False  # --datastore on the command line: read that one only
    datastore_root: str | None = None
    package_suffixes: tuple[str, ...] = ()
    r_session: bool = False  # run() in an interactive R session, rather than Rscript in a shell
    # The task channel's descriptors (requests, replies) from the R that runs the script: it forks the tasks.
    task_channel: tuple[int, int] | None = None
    result: dict[str, Any] | None = None  # what the command made, for run() to return in R

    def hint(self, *command: str) -> str:
        """How the user runs ``command`` where they are: with run() in an R session, with Rscript in a shell."""
        if self.r_session and command in R_COMMANDS:
            return R_COMMANDS[command]
        script = Path(self.spec.script).name if self.spec and self.spec.script else "flow.R"
        return f"Rscript {shlex.quote(script)} {' '.join(command)}"  # to paste into a shell as it is

    def withs(self) -> WithDecorators:
        """What --with gives every step: retries, and Batch (with its attributes)."""
        return parse_with(self.with_decorators)

    def graph(self) -> FlowGraph:
        if self.spec is None:
            raise UsageError("This command needs a flow.", [("i", "Run it as Rscript flow.R <command>.")])
        return FlowGraph(self.spec)

    def flow_datastore(self) -> FlowDatastore:
        assert self.spec is not None
        root = self.datastore_root
        if self.datastore == "local" and root is None:
            root = find_local_root(self.launch_dir)
        return FlowDatastore(storage_for(self.datastore, root), self.spec.name)


def current() -> Invocation:
    """The running command's invocation."""
    return click.get_current_context().find_object(Invocation)
