"""The Batch job's entry point (``metaflow-r batch-task``): one task of a Step Functions execution.

Everything comes from the environment the state machine and the job definition set: which step, the
execution (run id), the foreach indices (split path), the code package. The task finds its own id and
its parents' from those alone (sfn_task.py); the attempt engine (attempt.py) then runs it exactly as a
local task runs, against the S3 datastore, as a plain ``Rscript flow.R task`` process. A failed attempt
exits non-zero so that Batch's own retry strategy runs the next one.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback

from . import task as tasks
from .attempt import Attempt, AttemptEngine
from .compile import task_id
from .datastore import FlowDatastore
from .errors import ConfigurationError, MetaflowRError
from .graph import FlowGraph
from .launchers import SubprocessLauncher
from .package import extract_package
from .params import values_from_json
from .procenv import subprocess_env
from .sfn_task import publish_foreach_width, resolve_split_path, task_identity
from .spec import parse_spec
from .storage import S3Storage


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"The Batch job has no {name}.",
                                 [("i", "Batch jobs are started by the deployed state machine; redeploy the flow.")])
    return value


def run_batch_task(rscript: str = "Rscript", storage: S3Storage | None = None, dynamodb=None) -> int:
    workdir = tempfile.mkdtemp(prefix="metaflow-r-task-")
    try:
        return _run_in(workdir, rscript, storage, dynamodb)
    except Exception as exc:  # noqa: BLE001 - whatever stopped the task before it ran is recorded
        return _record_setup_failure(exc, storage)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _record_setup_failure(exc: Exception, storage: S3Storage | None) -> int:
    """A job that failed before its task could start (no code package, a broken image, S3 refusing) leaves
    a failed attempt record naming the error, so the Client API and resume see why: the task's id follows
    from the step and split path alone, even when the flow's graph could not be read."""
    code = exc.exit_code if isinstance(exc, MetaflowRError) else 1
    text = str(exc) if isinstance(exc, MetaflowRError) else "".join(traceback.format_exception(exc)).rstrip()
    print(f"The task could not start: {text}", file=sys.stderr, flush=True)
    try:
        step, run_id, flow = _require("METAFLOW_STEP"), _require("METAFLOW_RUN_ID"), _require("METAFLOW_FLOW_NAME")
        ds = FlowDatastore(storage or S3Storage(_require("METAFLOW_DATASTORE_SYSROOT_S3")), flow)
        split_path = resolve_split_path(os.environ.get("METAFLOW_SPLIT_PATH", ""))  # an array child's too
        attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT", "1")) - 1
        spec = tasks.TaskSpec(run_id, step, task_id(step, split_path.split("-") if split_path else []),
                              retry_count=attempt)
        error = tasks.task_error("metaflow_task_setup_error", f"The task could not start: "
                                                              f"{type(exc).__name__}: {exc}"[:4000])
        ds.write_log(run_id, step, spec.task_id, attempt, "stderr", (text + "\n").encode())
        tasks.record_failure(ds, spec, tasks.Prepared({"split_stack": []}, {}), time.time(),
                             f"the task could not start: {type(exc).__name__}", error,
                             os.environ.get("AWS_BATCH_JOB_ID"))
    except Exception as unrecorded:  # noqa: BLE001 - nothing more can be done than saying so
        print(f"Its failure could not be recorded either: {unrecorded}", file=sys.stderr, flush=True)
    return code or 1


def _run_in(workdir: str, rscript: str, storage: S3Storage | None, dynamodb) -> int:
    step = _require("METAFLOW_STEP")
    run_id = _require("METAFLOW_RUN_ID")
    split_path = os.environ.get("METAFLOW_SPLIT_PATH", "")
    attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT", "1")) - 1
    storage = storage or S3Storage(_require("METAFLOW_DATASTORE_SYSROOT_S3"))
    code_key = _require("METAFLOW_CODE_URL")[len(storage.root) + 1:]
    manifest = extract_package(storage.read_bytes(code_key) or b"", _require("METAFLOW_CODE_SHA"), workdir)
    raw_spec = manifest["spec"]
    script = os.path.join(workdir, manifest["script"])
    graph = FlowGraph(parse_spec({**raw_spec, "script": script}))
    ds = FlowDatastore(storage, graph.spec.name)
    if step == "start" and ds.run_record(run_id) is None:
        deployment = ds.deployment() or {}
        given = json.loads(os.environ.get("METAFLOW_PARAMETERS") or "{}")
        namespace = deployment.get("namespace", "production:unknown")
        ds.new_run([namespace, "runtime:step-functions"], values_from_json(graph.spec, given),
                   deployment.get("owner", "production"), run_id=run_id,
                   extra={"namespace": namespace, "execution": run_id, "spec": raw_spec})
    own_id, inputs, split_index = task_identity(graph, ds, run_id, step, split_path)
    spec = tasks.TaskSpec(run_id, step, own_id, inputs, split_index, attempt)
    attempts = int(os.environ.get("METAFLOW_BATCH_ATTEMPTS", "1"))
    launcher = SubprocessLauncher(rscript, script, workdir, subprocess_env())
    engine = AttemptEngine(graph, ds, ds.run_record(run_id) or {}, launcher, retries={step: attempts - 1},
                           echo=_echo, scratch=workdir, batch_job_id=os.environ.get("AWS_BATCH_JOB_ID"))
    try:
        outcome = engine.run(spec)
        if outcome.decision == "catch":  # the last attempt failed: record the error, and the run goes on
            outcome = engine.run(outcome.next)
    finally:
        launcher.close()
    if outcome.decision != "succeeded":
        if outcome.decision == "failed":
            ds.finish_run(run_id, False)
        return outcome.code
    if graph[step].is_foreach:
        publish_foreach_width(dynamodb, f"{run_id}/{step}/{own_id}", outcome.record["num_splits"], storage=storage)
    if step == "end":
        ds.finish_run(run_id, True)
    return 0


def _echo(attempt: Attempt, kind: str, text: str) -> None:
    """The task's stdout and stderr go to the job's own (CloudWatch keeps both); the engine's lines to stdout."""
    if kind == "stderr":
        print(text, file=sys.stderr, flush=True)
    elif kind == "stdout":
        print(text, flush=True)
    else:
        print(f"[{attempt.spec.pathspec}] {text}", flush=True)
