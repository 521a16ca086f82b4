"""End to end on the offline emulator: a real moto server on 127.0.0.1, real Rscript tasks.

For each example flow, the artifacts of a run deployed with ``step-functions create`` and started with
``step-functions trigger`` must equal, hash for hash, those of a local run of the same script.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import emulated_env, s3_datastore
from metaflow_r.datastore import FlowDatastore
from metaflow_r.storage import LocalStorage

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")


def rscript(script: Path, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["Rscript", str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def local_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METAFLOW_"))}
    return {**env, "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path / "local")}


def artifacts_by_task(ds: FlowDatastore, run_id: str) -> dict[tuple[str, int], dict[str, str]]:
    """Every successful task's artifacts, keyed by (step, position among the step's tasks in split order)."""
    found = {}
    for step in ds.step_names(run_id):
        records = [ds.task_record(run_id, step, t) for t in ds.task_ids(run_id, step)]
        records = sorted((r for r in records if r and r["successful"]),
                         key=lambda r: [f["index"] for f in r["split_stack"]])
        for position, record in enumerate(records):
            found[(step, position)] = record["artifacts"]
    return found


def deploy_and_trigger(script: Path, cwd: Path, env: dict[str, str], run_id: str, *options: str) -> None:
    created = rscript(script, [*options, "step-functions", "create", "--max-workers", "2"], cwd, env)
    assert created.returncode == 0, created.stdout + created.stderr
    triggered = rscript(script, ["step-functions", "trigger", "--run-id", run_id, "--wait"], cwd, env)
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    assert f"run-id {run_id}" in triggered.stdout
    assert "SUCCEEDED" in triggered.stdout


@pytest.mark.parametrize("example, flow", [
    ("parameter_flow.R", "ParameterFlow"),
    ("scheduled_flow.R", "ScheduledFlow"),
    ("branch_flow.R", "BranchFlow"),
    ("foreach_flow.R", "ForeachFlow"),  # nested foreach, 3 x 2 tasks at --max-workers 2
])
def test_emulated_run_matches_a_local_run(emulator, tmp_path, example, flow):
    script = tmp_path / example
    shutil.copy(EXAMPLES / example, script)
    local = rscript(script, ["run", "--max-workers", "2"], tmp_path, local_env(tmp_path))
    assert local.returncode == 0, local.stdout + local.stderr
    local_ds = FlowDatastore(LocalStorage(tmp_path / "local" / ".metaflow"), flow)
    (local_run,) = local_ds.run_ids()

    run_id = f"e2e-{flow}"
    deploy_and_trigger(script, tmp_path, emulated_env(emulator), run_id)
    remote_ds = s3_datastore(emulator, flow)
    assert remote_ds.run_status(run_id)["successful"] is True
    assert artifacts_by_task(remote_ds, run_id) == artifacts_by_task(local_ds, local_run)
    assert any(tag.startswith("production:") for tag in remote_ds.run_record(run_id)["tags"])


FLAKY = """library(metaflow)
start <- function(self) {
  if (current("retry_count") == 0) stop("first attempt fails")
  self$attempt <- current("retry_count")
}
metaflow("FlakyFlow") %>%
  step(STEP_DECORATORS step = "start", r_function = start, next_step = "end") %>%
  step(step = "end") %>%
  run()
"""


def test_a_step_that_fails_once_succeeds_with_retry(emulator, tmp_path):
    script = tmp_path / "flaky.R"
    script.write_text(FLAKY.replace("STEP_DECORATORS ", ""))
    deploy_and_trigger(script, tmp_path, emulated_env(emulator), "flaky-retry", "--with", "retry")
    ds = s3_datastore(emulator, "FlakyFlow")
    attempts = list(ds.attempts("flaky-retry", "start", "start"))
    assert [a["successful"] for a in attempts] == [True, False]


def test_times_zero_fails_the_execution_and_names_the_step(emulator, tmp_path):
    script = tmp_path / "flaky.R"
    script.write_text(FLAKY.replace("STEP_DECORATORS ", 'decorator("retry", times = 0), '))
    env = emulated_env(emulator)
    created = rscript(script, ["--with", "retry", "step-functions", "create"], tmp_path, env)
    assert created.returncode == 0, created.stderr
    triggered = rscript(script, ["step-functions", "trigger", "--run-id", "flaky-never", "--wait"], tmp_path, env)
    assert triggered.returncode == 1
    assert "FAILED" in triggered.stdout
    assert "step 'start'" in triggered.stderr
    status = rscript(script, ["step-functions", "status", "flaky-never"], tmp_path, env)
    assert "failed in step 'start'" in status.stdout
    ds = s3_datastore(emulator, "FlakyFlow")
    assert [a["successful"] for a in ds.attempts("flaky-never", "start", "start")] == [False]
    assert ds.run_status("flaky-never")["successful"] is False
    # The production run's report, read from S3, names the failed step and shows the job's output.
    report = rscript(script, ["--datastore", "s3", "report", "flaky-never", "--output", "report.html"], tmp_path, env)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "report.html").read_text()
    assert 'data-step="start" data-status="failed"' in html and 'data-step="end" data-status="not reached"' in html
    assert "first attempt fails" in html


def test_the_console_input_with_an_escaped_json_string_works(emulator, tmp_path):
    import boto3

    script = tmp_path / "parameter_flow.R"
    shutil.copy(EXAMPLES / "parameter_flow.R", script)
    env = emulated_env(emulator)
    assert rscript(script, ["step-functions", "create"], tmp_path, env).returncode == 0
    sfn = boto3.client("stepfunctions", endpoint_url=emulator["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="emulated", aws_secret_access_key="emulated")
    arn = next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "ParameterFlow")
    sfn.start_execution(stateMachineArn=arn, name="console-run", input=json.dumps({"Parameters": "{\"alpha\": 0.5}"}))
    waited = rscript(script, ["step-functions", "status", "console-run", "--wait"], tmp_path, env)
    assert "SUCCEEDED" in waited.stdout, waited.stdout + waited.stderr
    logs = rscript(script, ["step-functions", "logs", "console-run/end"], tmp_path, env)
    assert "alpha still is 0.5" in logs.stdout


def test_catch_on_step_functions_records_the_error_and_the_execution_succeeds(emulator, tmp_path):
    script = tmp_path / "catch.R"
    script.write_text("""library(metaflow)
risky <- function(self) stop("the service is down")
end <- function(self) cat("caught:", class(self$problem)[1], conditionMessage(self$problem), "\\n")
metaflow("CatchFlow") %>%
  step(step = "start", next_step = "risky") %>%
  step(decorator("catch", var = "problem"), step = "risky", r_function = risky, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
""")
    deploy_and_trigger(script, tmp_path, emulated_env(emulator), "caught-run")
    ds = s3_datastore(emulator, "CatchFlow")
    assert [a["successful"] for a in ds.attempts("caught-run", "risky", "risky")] == [True, False]
    # the R condition itself: its class and message, as the failed attempt signalled it
    assert "caught: simpleError the service is down" in ds.read_log("caught-run", "end", "end", 0, "stdout")
    assert ds.task_record("caught-run", "risky", "risky")["successful"] is True
    failed = list(ds.attempts("caught-run", "risky", "risky"))[1]
    assert failed["exception"]["message"] == "the service is down"
    assert failed["exception"]["traceback"] == ["risky(self)", 'stop("the service is down")']


def test_a_timed_out_step_with_catch_goes_on_on_step_functions_too(emulator, tmp_path):
    script = tmp_path / "slow.R"
    script.write_text("""library(metaflow)
slow <- function(self) Sys.sleep(60)
end <- function(self) cat("caught:", class(self$problem)[1], conditionMessage(self$problem), "\\n")
metaflow("SlowCatchFlow") %>%
  step(step = "start", next_step = "slow") %>%
  step(decorator("timeout", seconds = 2), decorator("catch", var = "problem"),
       step = "slow", r_function = slow, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
""")
    deploy_and_trigger(script, tmp_path, emulated_env(emulator), "slow-run")
    log = s3_datastore(emulator, "SlowCatchFlow").read_log("slow-run", "end", "end", 0, "stdout")
    assert "caught: metaflow_timeout Step 'slow' timed out after 2 s." in log


SLOW_START = """library(metaflow)
start <- function(self) { self$x <- 1; Sys.sleep(20) }
metaflow("DeletedFlow") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = function(self) cat("end ran\\n")) %>%
  run()
"""


def test_deleting_a_flow_stops_its_running_runs_and_says_so(emulator, tmp_path):
    """As AWS does: a deleted state machine's executions end. The run then reads failed, and why, even
    though its task finishes afterwards."""
    from conftest import eventually

    script = tmp_path / "deleted.R"
    script.write_text(SLOW_START)
    env = emulated_env(emulator)
    assert rscript(script, ["step-functions", "create"], tmp_path, env).returncode == 0
    assert rscript(script, ["step-functions", "trigger", "--run-id", "doomed"], tmp_path, env).returncode == 0
    ds = s3_datastore(emulator, "DeletedFlow")
    assert eventually(lambda: ds.run_record("doomed") is not None, 120)  # its start task is running
    deleted = rscript(script, ["step-functions", "delete"], tmp_path, env)
    assert deleted.returncode == 0, deleted.stderr
    assert "1 run(s) of DeletedFlow still running will be stopped: doomed." in deleted.stderr
    status = ds.run_status("doomed")
    assert status["successful"] is False and status["reason"] == "stopped: the flow was deleted"
    assert eventually(lambda: ds.task_record("doomed", "start", "start") is not None, 60)  # start still ended
    time.sleep(5)  # time enough for the next state, had the execution gone on
    assert ds.task_ids("doomed", "end") == [] and ds.run_status("doomed") == status


def test_a_second_emulator_on_a_busy_port_fails_at_once_saying_so(emulator):
    from conftest import METAFLOW_R

    port = emulator["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]
    done = subprocess.run([METAFLOW_R, "emulator", "--port", port], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"The emulator cannot listen on 127.0.0.1:{port}: Address already in use." in done.stderr
