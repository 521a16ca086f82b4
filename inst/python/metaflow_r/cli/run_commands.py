"""``run`` and ``resume``: a local run of the flow (its attempts local tasks, or Batch jobs with --with batch)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import click

from metaflow_r.cli.invocation import Invocation, current
from metaflow_r.core import processes, write_failures
from metaflow_r.core.config import current_user
from metaflow_r.core.errors import DiskFull, FileTooLarge, RunFailed, RunInterrupted, UsageError
from metaflow_r.core.params import parameter_values
from metaflow_r.core.rng import SEED_LIMIT, new_run_seed

if TYPE_CHECKING:  # a local run never loads AWS code; show and --help load no runtime either
    from metaflow_r.aws.batch.job_definitions import BatchJobs
    from metaflow_r.core.graph import FlowGraph
    from metaflow_r.datastore.flow import FlowDatastore
    from metaflow_r.runtime.local_runtime import LocalRuntime, RemoteLauncher
    from metaflow_r.runtime.resume import Clone

DEFAULT_MAX_WORKERS = 16
WITH_HELP = ("Add a decorator to every step: --with retry (or retry:times=2), --with batch (or "
             "batch:cpu=2,memory=8192) to run each step as an AWS Batch job.")
_RUN_OPTIONS = [
    click.option("--max-workers", type=click.IntRange(min=1), default=DEFAULT_MAX_WORKERS, show_default=True,
                 help="Run at most this many tasks at once."),
    click.option("--tag", "tags", multiple=True, help="Tag the run (repeatable)."),
    click.option("--run-id-file", default=None, help="Write the run id to this file as soon as it is known."),
    click.option("--with", "with_decorators", multiple=True, metavar="DECORATOR", help=WITH_HELP),
]


def run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_RUN_OPTIONS):
        command = option(command)
    return command


@click.command("run", help="Run the flow locally.")
@run_options
@click.option("--seed", type=click.IntRange(1, SEED_LIMIT - 1), default=None,
              help="The run's seed: every task draws from its own stream derived from it, the same however the "
                   "run is run (default: the flow's metaflow(seed =), or a new one, recorded with the run).")
def run(**options: Any) -> None:
    launch(current(), options, origin=None)


@click.command("resume", help="Run again from a step (default: the step that failed), reusing the finished tasks "
                              "before it.")
@click.argument("step", required=False)
@click.option("--origin-run-id", default=None, help="The run to resume (default: the latest).")
@run_options
def resume(step: str | None, origin_run_id: str | None, **options: Any) -> None:
    launch(current(), options, origin=(origin_run_id, step))


def launch(invocation: Invocation, options: dict[str, Any], origin: tuple[str | None, str | None] | None) -> None:
    """A run (``origin`` None) or a resume of ``origin`` (run id, step; either may be None), to its end."""
    from metaflow_r.runtime.local_runtime import LocalRuntime
    from metaflow_r.runtime.resume import resume_plan

    graph = _runnable(invocation)
    invocation.with_decorators += options.get("with_decorators", ())  # `run --with batch`, as Metaflow's tutorials
    withs = invocation.withs()
    batch_steps = _batch_steps(graph, withs.batch)
    jobs = _plan_batch_jobs(invocation, graph, withs.batch, batch_steps) if batch_steps else None
    ds = invocation.flow_datastore()
    if origin is None:
        clone = None
        params = parameter_values(graph.spec, {p.name: options.get(p.name) for p in graph.spec.parameters})
    else:
        clone, params = resume_plan(graph, ds, *origin)
        for note in clone.notes:
            click.echo(note)
    remote = _batch_launcher(jobs, graph) if jobs is not None else None  # AWS only once the inputs are good
    # A flow's own parameter named seed takes --seed; the run's seed then comes from metaflow(seed =).
    given = None if any(p.name == "seed" for p in graph.spec.parameters) else options.get("seed")
    seed = (clone.seed if clone else None) or given or graph.spec.seed or new_run_seed()
    run_id, run_record = _start_run(invocation, ds, params, clone, {**options, "seed": seed})
    source = (clone and clone.seed and f"run {clone.origin_run_id}") or \
        (given and ("run(seed =)" if invocation.r_session else "--seed")) or (graph.spec.seed and "metaflow(seed =)")
    if source:  # a seed drawn at random is recorded with the run (and its report) all the same
        click.echo(f"Seed {seed} (from {source}): each task draws from its own stream of it.")
    with _holding(run_record):
        runtime = LocalRuntime(graph, ds, run_id, run_record, script=graph.spec.script,
                               launch_dir=invocation.launch_dir, rscript=invocation.rscript,
                               max_workers=options["max_workers"],
                               retries={node.name: node.spec.retries(withs.retry) for node in graph}, clone=clone,
                               remote=remote, remote_steps=batch_steps, task_channel=invocation.task_channel)
        where = f"{ds.storage.root}/{graph.spec.name}/{run_id}"
        with _resuming(ds, clone, run_id):
            try:
                succeeded = runtime.execute()
            except KeyboardInterrupt:
                raise RunInterrupted(f"Run {graph.spec.name}/{run_id} was interrupted; its tasks were stopped.",
                                     [("i", f"Its data is in {where}."),
                                      ("i", f"Continue it with: {invocation.hint('resume')}")],
                                     data={"run_id": run_id, "flow": graph.spec.name}) from None
    _tell_outcome(invocation, ds, graph, run_id, runtime, succeeded, where)


def _runnable(invocation: Invocation) -> FlowGraph:
    graph = invocation.graph()
    if not graph.spec.script:
        raise UsageError("The flow's script is unknown: tasks run it.",
                         [("i", "Save the flow in a file, then source() it in R, or run Rscript flow.R run.")])
    return graph


def _start_run(invocation: Invocation, ds: FlowDatastore, params: dict[str, Any], clone: Clone | None,
               options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Claim the run's id and write its record (the flow's spec with it, for a report read without the script)."""
    namespace = f"user:{current_user()}"
    # The runtime is this process: once it is gone the run has ended, recorded or not (datastore/flow.py).
    try:
        run_id = ds.new_run([namespace, *options.get("tags", ())], params, current_user(),
                            extra={"namespace": namespace, "origin_run_id": clone.origin_run_id if clone else None,
                                   "spec": invocation.raw_spec, "seed": options["seed"],
                                   "runtime": processes.hold()})
    except (DiskFull, FileTooLarge) as exc:  # the run never began: there is nothing to resume
        raise write_failures.about(exc, then=write_failures.AGAIN) from None
    for damaged in dict.fromkeys(ds.damaged):
        click.echo(f"Warning: skipped a damaged record: {damaged}", err=True)
    if options.get("run_id_file"):
        Path(options["run_id_file"]).write_text(run_id)
    click.echo(f"Workflow starting (run-id {run_id}), {ds.flow} in {namespace}:")
    return run_id, ds.run_record(run_id)


@contextmanager
def _holding(run_record: dict[str, Any]) -> Iterator[None]:
    """The run is this process's until it ends: then, in an R session that lives on, it reads as ended even
    when its end could not be stored."""
    try:
        yield
    finally:
        processes.release(run_record.get("runtime"))


@contextmanager
def _resuming(ds: FlowDatastore, clone: Clone | None, run_id: str) -> Iterator[None]:
    """One resume at a time of a run, in the datastore they share (a production run resumed into a local
    datastore cannot be cloned by another resume: nothing to claim there)."""
    claim = clone is not None and clone.origin.storage.root == ds.storage.root
    if claim:
        try:
            ds.claim_resume(clone.origin_run_id, run_id)
        except UsageError:
            ds.finish_run(run_id, False, reason="another resume of the same run was in progress")
            raise
    try:
        yield
    finally:
        if claim:
            ds.release_resume(clone.origin_run_id, run_id)


def _tell_outcome(invocation: Invocation, ds: FlowDatastore, graph: FlowGraph, run_id: str, runtime: LocalRuntime,
                  succeeded: bool, where: str) -> None:
    from metaflow_r.runtime.task import failure_message

    name = graph.spec.name
    report = _report_line(ds, run_id, graph)
    if not succeeded:
        failed = runtime.failed
        message = failure_message(runtime.failed_record)
        raise RunFailed(f"Run {name}/{run_id} failed in step {failed.step!r} (task {name}/{failed.pathspec}).",
                        [*([("x", message)] if message else []), ("i", f"Its data is in {where}."), ("i", report),
                         ("i", f"Fix the step, then: {invocation.hint('resume')}")],
                        data={"flow": name, "run_id": run_id, "step": failed.step,
                              "pathspec": f"{name}/{failed.pathspec}", "error_message": message})
    invocation.result = {"kind": "run", "flow": name, "run_id": run_id}
    click.echo(f"Done! Run {name}/{run_id} succeeded; its data is in {where}")
    click.echo(report)


def _report_line(ds: FlowDatastore, run_id: str, graph: FlowGraph) -> str:
    """The line naming the run's report. However the report fails, the run's own outcome is still told."""
    from metaflow_r.report.writer import write_report

    try:
        return f"Report: {write_report(ds, run_id, graph)}"
    except Exception as exc:  # noqa: BLE001 - a report is never worth hiding how the run went
        return f"The run's report could not be written: {exc}"


def _batch_steps(graph: FlowGraph, with_batch: dict[str, Any] | None) -> frozenset[str]:
    """The steps whose attempts are Batch jobs: every one with --with batch; otherwise those carrying
    decorator("batch"), as Metaflow and Metaflow R run a @batch step of a local run."""
    return frozenset(n.name for n in graph if with_batch is not None or n.spec.decorator("batch") is not None)


def _plan_batch_jobs(invocation: Invocation, graph: FlowGraph, with_batch: dict[str, Any] | None,
                     steps: frozenset[str]) -> "BatchJobs":
    """For ``--with batch`` or decorator("batch"): every setting checked, the code package built and the job
    definitions named, as step-functions create does, without AWS; the run's datastore becomes the S3 one."""
    from metaflow_r.aws.batch.job_definitions import plan_batch_jobs
    from metaflow_r.aws.settings import DeploySettings

    why = "--with batch" if with_batch is not None else \
        f"decorator(\"batch\") on step{'s' if len(steps) > 1 else ''} {', '.join(sorted(steps))}"
    if invocation.datastore_given and invocation.datastore != "s3":
        raise UsageError(f"{why} stores the run in S3; --datastore {invocation.datastore} cannot hold it.",
                         [("i", "Leave out --datastore, or write --datastore s3.")])
    settings = DeploySettings.for_batch_runs(f"Running steps on AWS Batch ({why}) needs")
    jobs = plan_batch_jobs(graph, invocation.raw_spec, settings, versions=invocation.versions,
                           package_suffixes=invocation.package_suffixes, with_batch=with_batch, batch_retries=False,
                           steps=steps)
    invocation.datastore, invocation.datastore_root = "s3", settings.s3_root
    return jobs


def _batch_launcher(jobs: "BatchJobs", graph: FlowGraph) -> RemoteLauncher:
    """The code package uploaded and the job definitions registered (each only if missing), then a launcher
    submitting each attempt as a job."""
    from metaflow_r.aws.batch.job_definitions import prepare_batch_jobs
    from metaflow_r.aws.batch.launcher import BatchLauncher
    from metaflow_r.aws.session import client
    from metaflow_r.cli.step_functions import describe_package
    from metaflow_r.datastore.s3 import S3Storage

    describe_package(jobs.package)
    prepare_batch_jobs(jobs, S3Storage(jobs.settings.s3_root), client("batch"), click.echo)
    return lambda watch: BatchLauncher(jobs, graph.spec.name, watch)
