"""The entry points: ``main`` (R calls it through reticulate for ``Rscript flow.R <command>`` and ``run()``)
and ``console_main`` (the ``metaflow-r`` console script). Both end in an exit code instead of raising: a
MetaflowRError becomes its message on stderr and its exit code, never a traceback.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from metaflow_r.cli.group import build_cli
from metaflow_r.cli.invocation import Invocation
from metaflow_r.core.errors import MetaflowRError, RunInterrupted, UsageError
from metaflow_r.core.graph import check_names
from metaflow_r.core.spec import parse_spec

INTERRUPTED_EXIT = RunInterrupted.exit_code


@dataclass
class CommandOutcome:
    """How the last command ended, for run() in R: what it made, or the error to signal there."""

    result: dict[str, Any] | None = None
    error: MetaflowRError | None = None


_last = CommandOutcome()


def last_outcome() -> CommandOutcome:
    return _last


def main(argv: list[str], spec_json: str | None = None, info: dict[str, Any] | None = None) -> int:
    """Run one command; returns its exit code. With ``info["r_session"]`` (run() in an interactive R session)
    an error is not printed but kept in ``last_outcome()``, for R to signal as a condition."""
    global _last
    info = info or {}
    _last = CommandOutcome()
    try:
        return _main(argv, spec_json, info)
    except KeyboardInterrupt:
        # Ctrl-C anywhere but in a run (which says what it stopped), or one Ctrl-C delivered twice: R hands it
        # to Python from a poll that can fire again under load, while the first is being reported.
        if _last.error is None and not info.get("r_session"):
            click.echo("Interrupted.", err=True)
        return INTERRUPTED_EXIT
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _main(argv: list[str], spec_json: str | None, info: dict[str, Any]) -> int:
    r_session = bool(info.get("r_session"))
    try:
        try:
            spec = parse_spec(spec_json) if spec_json else None
            if spec is not None:
                check_names(spec)  # the command line is built from them
            invocation = Invocation(spec, info.get("launch_dir") or os.getcwd(),
                                    info.get("rscript") or shutil.which("Rscript") or "Rscript",
                                    raw_spec=json.loads(spec_json) if spec_json else {},
                                    versions=dict(info.get("versions") or {}), r_session=r_session,
                                    task_channel=tuple(info["task_channel"]) if info.get("task_channel") else None)
            prog = f"Rscript {Path(spec.script).name}" if spec and spec.script else "metaflow-r"
            command = build_cli(spec)
            result = command.main(args=[str(a) for a in argv], prog_name=prog, standalone_mode=False,
                                  obj=invocation)
            _last.result = invocation.result
            return result if isinstance(result, int) else 0
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.ClickException as exc:
            if not r_session:
                exc.show()
                return exc.exit_code
            raise UsageError(exc.format_message(), [("i", "run(help = TRUE) lists the options.")]) from None
        except click.exceptions.Abort as exc:
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                raise KeyboardInterrupt from None  # click's word for Ctrl-C
            click.echo("Aborted.", err=True)
            return 1
    except MetaflowRError as exc:
        sys.stdout.flush()
        _last.error = exc
        if not r_session:
            click.echo(f"Error: {exc}", err=True)
        return exc.exit_code


def console_main() -> None:
    """The ``metaflow-r`` console script: ``metaflow-r [--spec FILE] COMMAND ...``."""
    argv = sys.argv[1:]
    spec_json = None
    if argv[:1] == ["--spec"] and len(argv) > 1:
        try:
            spec_json = Path(argv[1]).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            error = UsageError(f"Cannot read the flow description {argv[1]}: {exc}.",
                               [("i", "--spec takes a JSON file in UTF-8, as R's flow_spec() writes it.")])
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)
        argv = argv[2:]
    sys.exit(main(argv, spec_json))
