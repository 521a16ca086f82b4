"""The Batch job's entry point (``metaflow-r batch-task``): one task of a Step Functions execution.

Everything comes from the environment the state machine and the job definition set: which step, the
execution (run id), the foreach indices (split path), the code package. The task finds its own id and
its parents' from those alone (see compile.py), then runs the same ``Rscript flow.R task`` command as
a local run, against the S3 datastore.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from typing import Any

from . import task as tasks
from .datastore import FlowDatastore
from .errors import ConfigurationError, MetaflowRError
from .graph import FlowGraph
from .package import extract_package
from .params import values_from_json
from .procenv import subprocess_env
from .sfn_task import publish_foreach_width, task_identity
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
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
        deployment = json.loads(storage.read_bytes(f"{graph.spec.name}/_deployment.json") or b"{}")
        given = json.loads(os.environ.get("METAFLOW_PARAMETERS") or "{}")
        namespace = deployment.get("namespace", "production:unknown")
        ds.new_run([namespace, "runtime:step-functions"], values_from_json(graph.spec, given),
                   deployment.get("owner", "production"), run_id=run_id,
                   extra={"namespace": namespace, "execution": run_id})
    own_id, inputs, split_index = task_identity(graph, ds, run_id, step, split_path)
    spec = tasks.TaskSpec(run_id, step, own_id, inputs, split_index, attempt)
    code, context, output, started = _attempt(graph, ds, spec, rscript, script, workdir)
    if code != 0:
        tasks.record_failure(ds, spec, context, started, f"exit status {code}")
        final = attempt + 1 >= int(os.environ.get("METAFLOW_BATCH_ATTEMPTS", "1"))
        if not (final and graph[step].spec.decorator("catch") is not None):
            if final:
                ds.finish_run(run_id, False)
            print(f"[{spec.pathspec}] Task failed (exit status {code}).", flush=True)
            return code
        # The last attempt failed and the step has decorator("catch"): record the error, go on.
        print(f"[{spec.pathspec}] Task failed (exit status {code}); decorator(\"catch\") records the error "
              "and the run goes on.", flush=True)
        spec = replace(spec, retry_count=attempt + 1, caught=tasks.caught_error(output, f"exit status {code}"))
        code, context, output, started = _attempt(graph, ds, spec, rscript, script, workdir)
        if code != 0:
            tasks.record_failure(ds, spec, context, started, f"exit status {code}")
            ds.finish_run(run_id, False)
            return code
    record = tasks.commit(ds, spec, context, started)
    if graph[step].is_foreach:
        publish_foreach_width(dynamodb, f"{run_id}/{step}/{own_id}", record["num_splits"])
    if step == "end":
        ds.finish_run(run_id, True)
    print(f"[{spec.pathspec}] Task finished successfully.", flush=True)
    return 0


def _attempt(graph: FlowGraph, ds: FlowDatastore, spec: tasks.TaskSpec, rscript: str, script: str,
             workdir: str) -> tuple[int, dict[str, Any], bytes, float]:
    """Run one attempt of the task in R; its output is echoed (to CloudWatch) and kept in the datastore."""
    output_dir = tempfile.mkdtemp(prefix="out-", dir=workdir)
    started = time.time()
    context = tasks.prepare(graph, ds, spec, ds.run_record(spec.run_id) or {}, output_dir)
    context["batch_job_id"] = os.environ.get("AWS_BATCH_JOB_ID")
    context_file = os.path.join(output_dir, "context.json")
    tasks.write_context(context, context_file)
    print(f"[{spec.pathspec}] Task is starting (attempt {spec.retry_count + 1}).", flush=True)
    command = [rscript, script, "task", "--run-id", spec.run_id, "--step", spec.step, "--task-id", spec.task_id,
               "--retry-count", str(spec.retry_count), "--input-paths", ",".join(spec.input_paths),
               "--context", context_file]
    timeout = graph[spec.step].spec.timeout_seconds()
    code, output, timed_out = _run_and_echo(command, workdir, timeout)
    if timed_out:
        note = f"Error in step '{spec.step}': timed out after {timeout:g} s.\n"
        print(note, end="", flush=True)
        output += note.encode()
    ds.write_log(spec.run_id, spec.step, spec.task_id, spec.retry_count, "stdout", output)
    return code, context, output, started


def _run_and_echo(command: list[str], cwd: str, timeout: float | None = None) -> tuple[int, bytes, bool]:
    """Run the R task, passing its output on (to CloudWatch) and keeping a copy for the datastore.

    A task over its decorator("timeout") is killed here, so the job itself lives on to record it;
    the third value says whether that happened."""
    process = subprocess.Popen(command, cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, stop) if timeout else None
    if timer:
        timer.start()
    output = bytearray()
    assert process.stdout is not None
    try:
        for line in process.stdout:
            output += line
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        code = process.wait()
    finally:
        if timer:
            timer.cancel()
    return code, bytes(output), timed_out.is_set()


def main() -> int:
    try:
        return run_batch_task()
    except MetaflowRError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
