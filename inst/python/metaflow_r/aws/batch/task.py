"""The Batch job's entry point (``metaflow-r batch-task``): one task attempt, against the S3 datastore.

Everything comes from the environment the job definition and the submitter set, in one of two ways:
  * a Step Functions execution gives the step, the execution (run id), the foreach indices (split path)
    and the code package; the task finds its own id and its parents' from those alone (step_functions/task_identity.py). A
    failed attempt exits non-zero so that Batch's own retry strategy runs the next one; the fallback of
    decorator("catch") runs in the same job.
  * a local run (``run --with batch``) tells the job its whole attempt (identity.py); the job runs
    exactly that attempt and exits, and the local runtime decides what comes next.
Either way the attempt engine (attempt.py) runs the task exactly as a local task runs, as a plain
``Rscript flow.R task`` process, and commits it to S3.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any

from metaflow_r.aws.batch import environment as env
from metaflow_r.aws.batch.identity import told_attempt
from metaflow_r.aws.code_package import extract_package
from metaflow_r.aws.step_functions.compile import task_id
from metaflow_r.aws.step_functions.foreach_width import publish_foreach_width
from metaflow_r.aws.step_functions.task_identity import resolve_split_path, task_identity
from metaflow_r.core.errors import ConfigurationError, MetaflowRError, ParameterError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.params import values_from_json
from metaflow_r.core.procenv import subprocess_env
from metaflow_r.core.rng import SEED_KEY, SEED_LIMIT, new_run_seed
from metaflow_r.core.spec import parse_spec
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.s3 import S3Storage
from metaflow_r.runtime import task as tasks
from metaflow_r.runtime.attempt import Attempt, AttemptEngine, AttemptOutcome
from metaflow_r.runtime.process import SubprocessLauncher


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"The Batch job has no {name}.",
                                 [("i", "Batch jobs are started by the deployed state machine; redeploy the flow.")])
    return value


STOPPED = "AWS Batch stopped its job (SIGTERM: the job's timeout, TerminateJob, or its instance reclaimed)"


class JobStopped(BaseException):
    """SIGTERM reached the job. As the container's PID 1 it would otherwise be ignored until SIGKILL, 30 s
    later, and the attempt would leave no record."""


def _stopped_by_batch(signum, frame) -> None:
    raise JobStopped()


def run_batch_task(rscript: str = "Rscript", storage: S3Storage | None = None, dynamodb=None) -> int:
    workdir = tempfile.mkdtemp(prefix="metaflow-r-task-")
    in_main = threading.current_thread() is threading.main_thread()  # in-process callers (tests) may not be
    previous = signal.signal(signal.SIGTERM, _stopped_by_batch) if in_main else None
    try:
        return _run_in(workdir, rscript, storage, dynamodb)
    except JobStopped:
        print(f"The task did not start: {STOPPED}.", file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM
    except Exception as exc:  # noqa: BLE001 - whatever stopped the task before it ran is recorded
        return _record_setup_failure(exc, storage)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)


def _attempt(engine: AttemptEngine, spec: tasks.AttemptSpec) -> tuple[AttemptOutcome, bool]:
    """``engine.run(spec)``, and whether Batch stopped the job meanwhile: then the attempt is recorded as
    stopped, its logs so far kept."""
    try:
        return engine.run(spec), False
    except JobStopped:
        (outcome,) = engine.stop_recording(STOPPED)
        return outcome, True


def _record_setup_failure(exc: Exception, storage: S3Storage | None) -> int:
    """A job that failed before its task could start (no code package, a broken image, S3 refusing) leaves
    a failed attempt record naming the error, so the Client API and resume see why: the task's id follows
    from the job's environment alone, even when the flow's graph could not be read."""
    code = exc.exit_code if isinstance(exc, MetaflowRError) else 1
    text = str(exc) if isinstance(exc, MetaflowRError) else "".join(traceback.format_exception(exc)).rstrip()
    print(f"The task could not start: {text}", file=sys.stderr, flush=True)
    try:
        flow = _require(env.FLOW_NAME)
        ds = FlowDatastore(storage or S3Storage(_require(env.DATASTORE_ROOT)), flow)
        spec = told_attempt() or _sfn_attempt(None, None)
        error = tasks.task_error("metaflow_task_setup_error", f"The task could not start: "
                                                              f"{type(exc).__name__}: {exc}"[:4000])
        ds.write_log(spec.run_id, spec.step, spec.task_id, spec.retry_count, "stderr", (text + "\n").encode())
        tasks.record_failure(ds, spec, tasks.Prepared({"split_stack": []}, {}), time.time(),
                             f"the task could not start: {type(exc).__name__}", error,
                             os.environ.get(env.JOB_ID))
    except Exception as unrecorded:  # noqa: BLE001 - nothing more can be done than saying so
        print(f"Its failure could not be recorded either: {unrecorded}", file=sys.stderr, flush=True)
    return code or 1


def _sfn_attempt(graph: FlowGraph | None, ds: FlowDatastore | None) -> tasks.AttemptSpec:
    """The attempt of a Step Functions task, from its step, split path and Batch attempt; without a graph
    (it could not be read), the task's id alone."""
    step, run_id = _require(env.STEP), _require(env.RUN_ID)
    split_path = resolve_split_path(os.environ.get(env.SPLIT_PATH, ""))  # an array child's too
    # Batch's attempt number, unless the state machine retries the step itself (minutes_between_retries).
    told = os.environ.get(env.RETRY_COUNT)
    attempt = int(told) if told else int(os.environ.get(env.JOB_ATTEMPT, "1")) - 1
    if graph is None or ds is None:
        return tasks.AttemptSpec(run_id, step, task_id(step, split_path.split("-") if split_path else []),
                              retry_count=attempt)
    own_id, inputs, split_index = task_identity(graph, ds, run_id, step, split_path)
    return tasks.AttemptSpec(run_id, step, own_id, inputs, split_index, attempt)


def _run_in(workdir: str, rscript: str, storage: S3Storage | None, dynamodb) -> int:
    told = told_attempt()
    storage = storage or S3Storage(_require(env.DATASTORE_ROOT))
    code_key = _require(env.CODE_URL)[len(storage.root) + 1:]
    manifest = extract_package(storage.read_bytes(code_key) or b"", _require(env.CODE_SHA), workdir)
    raw_spec = manifest["spec"]
    script = os.path.join(workdir, manifest["script"])
    graph = FlowGraph(parse_spec({**raw_spec, "script": script}))
    ds = FlowDatastore(storage, graph.spec.name)
    if told is not None:
        if ds.run_record(told.run_id) is None:
            raise ConfigurationError(f"Run {graph.spec.name}/{told.run_id} has no record in {storage.root}.",
                                     [("i", "The job was submitted by a local run (--with batch) that "
                                            "stores its runs elsewhere.")])
        return _run_told(graph, ds, told, rscript, script, workdir)
    step, run_id = _require(env.STEP), _require(env.RUN_ID)
    if step == "start" and ds.run_record(run_id) is None:
        deployment = ds.deployment() or {}
        given = json.loads(os.environ.get(env.PARAMETERS) or "{}")
        seed = _given_seed(given.pop(SEED_KEY, None)) or graph.spec.seed or new_run_seed()
        namespace = deployment.get("namespace", "production:unknown")
        ds.new_run([namespace, "runtime:step-functions"], values_from_json(graph.spec, given),
                   deployment.get("owner", "production"), run_id=run_id,
                   extra={"namespace": namespace, "execution": run_id, "spec": raw_spec, "seed": seed})
    spec = _sfn_attempt(graph, ds)
    attempts = int(os.environ.get(env.BATCH_ATTEMPTS, "1"))
    launcher = SubprocessLauncher(rscript, script, workdir, subprocess_env())
    engine = AttemptEngine(graph, ds, ds.run_record(run_id) or {}, launcher, retries={step: attempts - 1},
                           echo=_echo, scratch=workdir, batch_job_id=os.environ.get(env.JOB_ID))
    try:
        outcome, stopped = _attempt(engine, spec)
        if outcome.decision == "catch" and not stopped:  # the last attempt failed: record it, the run goes on
            outcome, stopped = _attempt(engine, outcome.next)
    finally:
        launcher.close()
    if outcome.decision != "succeeded":
        # A stopped job's fallback cannot run: the execution fails. A retry is Batch's to make (or not).
        if outcome.decision == "failed" or (stopped and outcome.decision == "catch"):
            ds.finish_run(run_id, False)
        return outcome.code
    if graph[step].is_foreach:
        publish_foreach_width(dynamodb, f"{run_id}/{step}/{spec.task_id}", outcome.record["num_splits"], storage=storage)
    if step == "end":
        ds.finish_run(run_id, True)
    return 0


def _given_seed(value: Any) -> int | None:
    """trigger --seed's value from the execution's Parameters (one typed in the console is checked too)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < SEED_LIMIT:
        raise ParameterError(f"The run's seed ({SEED_KEY} in Parameters) must be a whole number from 1 to "
                             f"{SEED_LIMIT - 1}.", [("x", f"It is {json.dumps(value)}.")])
    return value


def _run_told(graph: FlowGraph, ds: FlowDatastore, spec: tasks.AttemptSpec, rscript: str, script: str,
              workdir: str) -> int:
    """Exactly the attempt a local run told the job: no retry, no fallback, the run's end left to the runtime,
    which prints its own account of the attempt (so the engine's lines are not echoed here)."""
    launcher = SubprocessLauncher(rscript, script, workdir, subprocess_env())
    engine = AttemptEngine(graph, ds, ds.run_record(spec.run_id) or {}, launcher, retries={},
                           echo=_echo_task_only, scratch=workdir, batch_job_id=os.environ.get(env.JOB_ID))
    try:
        outcome, _ = _attempt(engine, spec)
    finally:
        launcher.close()
    return 0 if outcome.decision == "succeeded" else outcome.code


def _echo_task_only(attempt: Attempt, kind: str, text: str) -> None:
    if kind != "status":
        _echo(attempt, kind, text)


def _echo(attempt: Attempt, kind: str, text: str) -> None:
    """The task's stdout and stderr go to the job's own (CloudWatch keeps both); the engine's lines to stdout."""
    if kind == "stderr":
        print(text, file=sys.stderr, flush=True)
    elif kind == "stdout":
        print(text, flush=True)
    else:
        print(f"[{attempt.spec.pathspec}] {text}", flush=True)
