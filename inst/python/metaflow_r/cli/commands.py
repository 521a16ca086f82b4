"""The flow's other commands: ``show``, ``report``, and the backend's own (``emulator``, ``batch-task``)."""
from __future__ import annotations

import json

import click

from metaflow_r.cli.invocation import current


@click.command(help="Print the flow's steps and edges.")
@click.option("--mermaid", is_flag=True, help="Print the graph as mermaid text.")
def show(mermaid: bool) -> None:
    from metaflow_r.report.show import describe
    from metaflow_r.report.show import mermaid as mermaid_text

    graph = current().graph()
    click.echo(mermaid_text(graph) if mermaid else describe(graph))


@click.command("spec", hidden=True, help="Print the flow's description as R sends it (JSON), e.g. for "
                                         "metaflow-r --spec FILE.")
def spec_command() -> None:
    click.echo(json.dumps(current().raw_spec, indent=1))


@click.command(help="Write a run's report, one HTML file: its graph by step status, timings, errors, artifacts. "
                    "RUN_ID defaults to the latest run.")
@click.argument("run_id", required=False)
@click.option("--output", default=None, metavar="FILE",
              help="Where to write it (default: beside the run's data, or the temporary directory for S3).")
def report(run_id: str | None, output: str | None) -> None:
    from metaflow_r.datastore import locate
    from metaflow_r.report.writer import write_report

    invocation = current()
    ds = invocation.flow_datastore()
    name = invocation.graph().spec.name
    bare_id = run_id[len(name) + 1:] if run_id and run_id.startswith(f"{name}/") else run_id
    if bare_id not in (None, "latest") and not invocation.datastore_given:  # wherever that run is
        ds = locate.run_datastore(name, bare_id) or ds
    click.echo(write_report(ds, run_id, invocation.graph(), output))


@click.command(help="Run an offline AWS emulator (Step Functions, Batch, S3, DynamoDB) in the foreground.")
@click.option("--port", type=click.IntRange(0, 65535), default=5055, show_default=True,
              help="Port on 127.0.0.1; 0 picks a free one.")
@click.option("--env-file", default=None, help="Write the settings to use it here, as export lines.")
@click.option("--batch-runner", type=click.Choice(["local", "container"]), default="local", show_default=True,
              help="Run each Batch job as a local process, or in its job definition's image (docker or podman).")
@click.option("--image", default=None,
              help="The image deployed flows name (METAFLOW_BATCH_CONTAINER_IMAGE); with the container runner it "
                   "must exist locally (make image). Default with it: metaflow-r:latest.")
def emulator(port: int, env_file: str | None, batch_runner: str, image: str | None) -> None:
    from metaflow_r.emulator.server import serve

    serve(port, env_file, batch_runner, image)


@click.command("batch-task", hidden=True, help="Run one task inside an AWS Batch job.")
def batch_task() -> None:
    from metaflow_r.aws.batch.task import run_batch_task

    code = run_batch_task(rscript=current().rscript)
    if code:
        raise click.exceptions.Exit(code)
