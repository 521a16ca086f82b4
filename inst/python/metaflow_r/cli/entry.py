"""The command line every entry point shares: ``Rscript flow.R <command>``, ``run()`` in R, ``metaflow-r``.

R calls ``main(argv, spec_json, info)`` through reticulate; the ``metaflow-r`` console script calls
``console_main``. Both return an exit code instead of raising: a MetaflowRError becomes its message on
stderr and its exit code, never a traceback.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from metaflow_r.datastore import locate
from metaflow_r.report import show as show_module
from metaflow_r.core.config import current_user, default_datastore
from metaflow_r.datastore.flow import FlowDatastore, find_local_root, storage_for
from metaflow_r.aws.step_functions.deploy import BatchJobs, aws_error
from metaflow_r.core.errors import MetaflowRError, RunFailed, RunInterrupted, UsageError
from metaflow_r.core.graph import FlowGraph, check_names
from metaflow_r.core.params import parameter_options, parameter_values
from metaflow_r.report.writer import write_report
from metaflow_r.runtime.local_runtime import Clone, LocalRuntime, RemoteLauncher
from metaflow_r.cli.step_functions import step_functions_group
from metaflow_r.core.spec import FlowSpec, parse_spec
from metaflow_r.core.with_decorators import WithDecorators, parse_with

DEFAULT_MAX_WORKERS = 16
INTERRUPTED_EXIT = RunInterrupted.exit_code
WITH_HELP = ("Add a decorator to every step: --with retry (or retry:times=2), --with batch (or "
             "batch:cpu=2,memory=8192) to run each step as an AWS Batch job.")
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
    result: dict[str, Any] | None = None  # what the command made, for run() to return in R

    def hint(self, *command: str) -> str:
        """How the user runs ``command`` where they are: with run() in an R session, with Rscript in a shell."""
        if self.r_session and command in R_COMMANDS:
            return R_COMMANDS[command]
        script = Path(self.spec.script).name if self.spec and self.spec.script else "flow.R"
        return f"Rscript {script} {' '.join(command)}"

    def withs(self) -> WithDecorators:
        """What --with gives every step: retries, and Batch (with its attributes)."""
        return parse_with(self.with_decorators)

    def with_retry(self) -> int | None:
        """Retries --with retry[:times=N] gives every step without its own retry decorator."""
        return self.withs().retry

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


def _invocation() -> Invocation:
    return click.get_current_context().find_object(Invocation)


def build_cli(spec: FlowSpec | None) -> click.Group:
    @click.group(help=f"Flow {spec.name}." if spec else "The metaflow R backend.")
    @click.option("--with", "with_decorators", multiple=True, metavar="DECORATOR", help=WITH_HELP)
    @click.option("--datastore", type=click.Choice(["local", "s3"]), default=None,
                  help="Where artifacts are stored (default: METAFLOW_DEFAULT_DATASTORE or local).")
    @click.option("--datastore-root", default=None, help="Override the datastore's root directory or s3:// URL.")
    @click.option("--package-suffixes", default=None, metavar=".R,.csv",
                  help="Also put files with these suffixes, beside the script, in the code package Batch runs.")
    @click.pass_context
    def group(ctx: click.Context, with_decorators: tuple[str, ...], datastore: str | None,
              datastore_root: str | None, package_suffixes: str | None) -> None:
        invocation = ctx.ensure_object(Invocation)
        invocation.with_decorators = list(with_decorators)
        invocation.package_suffixes = tuple(filter(None, (package_suffixes or "").split(",")))
        invocation.datastore = datastore or default_datastore()
        invocation.datastore_given = datastore is not None
        invocation.datastore_root = datastore_root

    @group.command(help="Print the flow's steps and edges.")
    @click.option("--mermaid", is_flag=True, help="Print the graph as mermaid text.")
    def show(mermaid: bool) -> None:
        graph = _invocation().graph()
        click.echo(show_module.mermaid(graph) if mermaid else show_module.describe(graph))

    @group.command("spec", hidden=True, help="Print the flow's description as R sends it (JSON), e.g. for "
                                              "metaflow-r --spec FILE.")
    def spec_command() -> None:
        click.echo(json.dumps(_invocation().raw_spec, indent=1))

    run_options = [
        click.Option(["--max-workers"], type=click.IntRange(min=1), default=DEFAULT_MAX_WORKERS, show_default=True,
                     help="Run at most this many tasks at once."),
        click.Option(["--tag", "tags"], multiple=True, help="Tag the run (repeatable).", show_default=False),
        click.Option(["--run-id-file"], default=None, help="Write the run id to this file as soon as it is known."),
        click.Option(["--with", "with_decorators"], multiple=True, metavar="DECORATOR", help=WITH_HELP),
    ]

    def run_command(**options: Any) -> None:
        _launch(_invocation(), options, origin=None)

    group.add_command(click.Command(
        "run", callback=run_command, params=run_options + (parameter_options(spec) if spec else []),
        help="Run the flow locally.",
    ))

    def resume_command(step: str | None, origin_run_id: str | None, **options: Any) -> None:
        _launch(_invocation(), options, origin=(origin_run_id, step))

    group.add_command(click.Command(
        "resume", callback=resume_command,
        params=[click.Argument(["step"], required=False),
                click.Option(["--origin-run-id"], default=None, help="The run to resume (default: the latest).")]
        + run_options,
        help="Run again from a step (default: the step that failed), reusing the finished tasks before it.",
    ))
    group.add_command(step_functions_group(spec, _invocation))

    @group.command(help="Write a run's report, one HTML file: its graph by step status, timings, errors, "
                        "artifacts. RUN_ID defaults to the latest run.")
    @click.argument("run_id", required=False)
    @click.option("--output", default=None, metavar="FILE",
                  help="Where to write it (default: beside the run's data, or the temporary directory for S3).")
    def report(run_id: str | None, output: str | None) -> None:
        invocation = _invocation()
        ds = invocation.flow_datastore()
        name = invocation.graph().spec.name
        bare_id = run_id[len(name) + 1:] if run_id and run_id.startswith(f"{name}/") else run_id
        if bare_id not in (None, "latest") and not invocation.datastore_given:  # wherever that run is
            ds = locate.run_datastore(name, bare_id) or ds
        click.echo(write_report(ds, run_id, invocation.graph(), output))

    @group.command(help="Run an offline AWS emulator (Step Functions, Batch, S3, DynamoDB) in the foreground.")
    @click.option("--port", type=click.IntRange(0, 65535), default=5055, show_default=True,
                  help="Port on 127.0.0.1; 0 picks a free one.")
    @click.option("--env-file", default=None, help="Write the settings to use it here, as export lines.")
    @click.option("--batch-runner", type=click.Choice(["local", "container"]), default="local", show_default=True,
                  help="Run each Batch job as a local process, or in its job definition's image (docker or podman).")
    @click.option("--image", default=None,
                  help="The image deployed flows name (METAFLOW_BATCH_CONTAINER_IMAGE); with the container "
                       "runner it must exist locally (make image). Default with it: metaflow-r:latest.")
    def emulator(port: int, env_file: str | None, batch_runner: str, image: str | None) -> None:
        from metaflow_r.emulator.server import serve

        serve(port, env_file, batch_runner, image)

    @group.command("batch-task", hidden=True, help="Run one task inside an AWS Batch job.")
    def batch_task() -> None:
        from metaflow_r.aws.batch.task import run_batch_task

        code = run_batch_task(rscript=_invocation().rscript)
        if code:
            raise click.exceptions.Exit(code)

    return group


def _retries(graph: FlowGraph, forced: int | None) -> dict[str, int]:
    return {node.name: node.spec.retries(forced) for node in graph}


def _launch(invocation: Invocation, options: dict[str, Any], origin: tuple[str | None, str | None] | None) -> None:
    graph = invocation.graph()
    spec = graph.spec
    if not spec.script:
        raise UsageError("The flow's script is unknown: tasks run it.",
                         [("i", "Save the flow in a file, then source() it in R, or run Rscript flow.R run.")])
    invocation.with_decorators += options.get("with_decorators", ())  # `run --with batch`, as Metaflow's tutorials
    withs = invocation.withs()
    retries = _retries(graph, withs.retry)
    jobs = _plan_batch_jobs(invocation, graph, withs.batch) if withs.batch is not None else None
    ds = invocation.flow_datastore()
    clone = None
    if origin is None:
        params = parameter_values(spec, {p.name: options.get(p.name) for p in spec.parameters})
    else:
        clone, params = _resume_plan(graph, ds, *origin)
    remote = _batch_launcher(jobs, graph) if jobs is not None else None
    user = current_user()
    namespace = f"user:{user}"
    run_id = ds.new_run([namespace, *options.get("tags", ())], params, user,
                        extra={"namespace": namespace, "origin_run_id": clone.origin_run_id if clone else None,
                               "spec": invocation.raw_spec})  # the graph, for a report read without the script
    # One resume at a time of a run, in the datastore they share (a production run resumed into a local
    # datastore cannot be cloned by another resume: nothing to claim there).
    claim = clone is not None and clone.origin.storage.root == ds.storage.root
    if claim:
        try:
            ds.claim_resume(clone.origin_run_id, run_id)
        except UsageError:
            ds.finish_run(run_id, False, reason="another resume of the same run was in progress")
            raise
    for damaged in dict.fromkeys(ds.damaged):
        click.echo(f"Warning: skipped a damaged record: {damaged}", err=True)
    if options.get("run_id_file"):
        Path(options["run_id_file"]).write_text(run_id)
    run_record = ds.run_record(run_id)
    click.echo(f"Workflow starting (run-id {run_id}), {graph.spec.name} in {namespace}:")
    runtime = LocalRuntime(graph, ds, run_id, run_record, script=spec.script, launch_dir=invocation.launch_dir,
                           rscript=invocation.rscript, max_workers=options["max_workers"], retries=retries,
                           clone=clone, remote=remote)
    where = f"{ds.storage.root}/{spec.name}/{run_id}"
    try:
        succeeded = runtime.execute()
    except KeyboardInterrupt:
        raise RunInterrupted(f"Run {spec.name}/{run_id} was interrupted; its tasks were stopped.",
                             [("i", f"Its data is in {where}."),
                              ("i", f"Continue it with: {invocation.hint('resume')}")],
                             data={"run_id": run_id, "flow": spec.name}) from None
    finally:
        if claim:
            ds.release_resume(clone.origin_run_id, run_id)
    report = _report_line(ds, run_id, graph)
    if not succeeded:
        failed = runtime.failed
        raise RunFailed(f"Run {spec.name}/{run_id} failed in step {failed.step!r} (task {failed.pathspec}).",
                        [("i", f"Its data is in {where}."), ("i", report),
                         ("i", f"Fix the step, then: {invocation.hint('resume')}")],
                        data={"flow": spec.name, "run_id": run_id, "step": failed.step,
                              "pathspec": f"{spec.name}/{failed.pathspec}"})
    invocation.result = {"kind": "run", "flow": spec.name, "run_id": run_id}
    click.echo(f"Done! Run {spec.name}/{run_id} succeeded; its data is in {where}")
    click.echo(report)


def _plan_batch_jobs(invocation: Invocation, graph: FlowGraph, with_batch: dict[str, Any]) -> BatchJobs:
    """For ``--with batch``: every setting checked, the code package built and the job definitions named, as
    step-functions create does, without AWS; the run's datastore becomes the S3 one."""
    from metaflow_r.aws.step_functions.deploy import DeploySettings, plan_batch_jobs

    if invocation.datastore_given and invocation.datastore != "s3":
        raise UsageError(f"--with batch stores the run in S3; --datastore {invocation.datastore} cannot hold it.",
                         [("i", "Leave out --datastore, or write --datastore s3.")])
    settings = DeploySettings.for_batch_runs()
    jobs = plan_batch_jobs(graph, invocation.raw_spec, settings, versions=invocation.versions,
                           package_suffixes=invocation.package_suffixes, with_batch=with_batch, batch_retries=False)
    invocation.datastore, invocation.datastore_root = "s3", settings.s3_root
    return jobs


def _batch_launcher(jobs: BatchJobs, graph: FlowGraph) -> RemoteLauncher:
    """The code package uploaded and the job definitions registered (each only if missing), then a launcher
    submitting each attempt as a job."""
    from metaflow_r.aws.batch.launcher import BatchLauncher
    from metaflow_r.aws.step_functions.deploy import Deployer, aws_session
    from metaflow_r.cli.step_functions import describe_package

    describe_package(jobs.package)
    session = aws_session()
    Deployer(session, echo=click.echo).prepare_batch_jobs(jobs)
    return lambda watch: BatchLauncher(session, jobs, graph.spec.name, watch)


def _report_line(ds: FlowDatastore, run_id: str, graph: FlowGraph) -> str:
    """The line naming the run's report. However the report fails, the run's own outcome is still told."""
    try:
        return f"Report: {write_report(ds, run_id, graph)}"
    except Exception as exc:  # noqa: BLE001 - a report is never worth hiding how the run went
        return f"The run's report could not be written: {exc}"


def _resume_plan(graph: FlowGraph, ds: FlowDatastore, origin_run_id: str | None,
                 step: str | None) -> tuple[Clone, dict[str, Any]]:
    """What resume reuses. By default the origin is the user's newest run that has ended: a run still going
    (or another resume in progress) is never cloned. A run named by id may be in another datastore: a
    production run is resumed locally from S3."""
    namespace = f"user:{current_user()}"
    records = sorted((r for r in (ds.readable(ds.run_record, run_id) for run_id in ds.run_ids()) if r),
                     key=lambda r: r["created_at"])
    source = ds
    if origin_run_id is None:
        ended = [r["run_id"] for r in records if namespace in r.get("tags", [])
                 and ds.readable(ds.run_status, r["run_id"]) is not None]
        if not ended:
            raise UsageError(f"Flow {graph.spec.name} has no ended run of yours ({namespace}) to resume.",
                             [("i", "Start one with: run"), ("i", "Or name one: resume --origin-run-id ID")])
        origin_run_id = ended[-1]
    elif ds.readable(ds.run_record, origin_run_id) is None:
        source = locate.run_datastore(graph.spec.name, origin_run_id) or ds
    record = source.run_record(origin_run_id)
    if record is None:
        known = [r["run_id"] for r in records][-5:]
        raise UsageError(f"Run {graph.spec.name}/{origin_run_id} does not exist.",
                         [("i", f"Known runs: {', '.join(known) or 'none'}.")])
    if source.run_status(origin_run_id) is None:
        raise UsageError(f"Run {graph.spec.name}/{origin_run_id} has not ended: it cannot be resumed yet.",
                         [("i", "Wait for it to end. A run whose process was killed is marked ended by its "
                                "reaper within seconds.")])
    if source is ds:
        ds.check_not_being_resumed(origin_run_id)
    if step is None:
        step = _failed_step(graph, source, origin_run_id)
    if step not in graph.nodes:
        raise UsageError(f"The flow has no step {step!r} to resume from.", [("i", f"Steps: {', '.join(graph.order)}.")])
    rerun = graph.descendants(step)
    return Clone(origin_run_id, {s for s in graph.order if s not in rerun}, source), record.get("parameters", {})


def _failed_step(graph: FlowGraph, ds: FlowDatastore, run_id: str) -> str:
    for name in graph.order:
        for task_id in ds.task_ids(run_id, name):
            record = ds.task_record(run_id, name, task_id)
            if record is None or not record.get("successful"):
                return name
        if not ds.task_ids(run_id, name):
            return name
    raise UsageError(f"Run {graph.spec.name}/{run_id} has no failed step.",
                     [("i", "Name the step to resume from: resume STEP.")])


@dataclass
class Outcome:
    """How the last command ended, for run() in R: what it made, or the error to signal there."""

    result: dict[str, Any] | None = None
    error: MetaflowRError | None = None


_last = Outcome()


def last_outcome() -> Outcome:
    return _last


def main(argv: list[str], spec_json: str | None = None, info: dict[str, Any] | None = None) -> int:
    """Run one command; returns its exit code. With ``info["r_session"]`` (run() in an interactive R session)
    an error is not printed but kept in ``last_outcome()``, for R to signal as a condition."""
    global _last
    info = info or {}
    _last = Outcome()
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
                                    versions=dict(info.get("versions") or {}), r_session=r_session)
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
        except Exception as exc:
            # An AWS call no command wrapped gets the same clear message. (Matched by module, so local runs
            # never import botocore.)
            if isinstance(exc, MetaflowRError) or not type(exc).__module__.startswith("botocore"):
                raise
            raise aws_error("an AWS request", exc) from None
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
