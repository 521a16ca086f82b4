"""End to end on the offline emulator: a real moto server on 127.0.0.1, real Rscript tasks, and every
Batch job in the production image (`make image`, built first if its inputs changed), as AWS Batch runs
it. Where no container engine answers, the jobs run as local processes and the session says so loudly
(conftest.NO_ENGINE); test_image_e2e.py's image-only checks are then skipped.

For each example flow, the artifacts of a run deployed with ``step-functions create`` and started with
``step-functions trigger`` must equal, hash for hash, those of a local run of the same script.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from conftest import (EXAMPLES, READS_DATA, artifacts_by_task, deploy_and_trigger, emulated_env, rscript,
                      s3_datastore, seeded_foreach)

from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.storage import LocalStorage

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")


@pytest.fixture(scope="module")
def emulator(image_emulator):
    return image_emulator


@pytest.mark.parametrize("example, flow", [
    ("parameter_flow.R", "ParameterFlow"),
    ("scheduled_flow.R", "ScheduledFlow"),
    ("branch_flow.R", "BranchFlow"),
    ("foreach_flow.R", "ForeachFlow"),  # nested foreach, 3 x 2 tasks at --max-workers 2
])
def test_emulated_run_matches_a_local_run(emulator, tmp_path, local_example_run, example, flow):
    script = tmp_path / example
    shutil.copy(EXAMPLES / example, script)
    run_id = f"e2e-{flow}"
    deploy_and_trigger(script, tmp_path, emulated_env(emulator), run_id)
    remote_ds = s3_datastore(emulator, flow)
    assert remote_ds.run_status(run_id)["successful"] is True
    assert artifacts_by_task(remote_ds, run_id) == local_example_run(example, flow)
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


def test_a_step_that_waits_between_retries_is_retried_by_the_state_machine(emulator, tmp_path):
    """minutes_between_retries: Batch does not retry the job (it would at once); the Task state's retrier
    does, after the delay, and the new job learns its attempt from the state's retry count."""
    script = tmp_path / "flaky.R"
    script.write_text(FLAKY.replace("STEP_DECORATORS ", 'decorator("retry", times = 1, minutes_between_retries = 0.01), '))
    deploy_and_trigger(script, tmp_path, emulated_env(emulator), "flaky-waits")
    ds = s3_datastore(emulator, "FlakyFlow")
    attempts = list(ds.attempts("flaky-waits", "start", "start"))
    assert [(a["successful"], a["attempt"]) for a in attempts] == [(True, 1), (False, 0)]
    assert attempts[0]["batch_job_id"] != attempts[1]["batch_job_id"]  # two jobs, one attempt each


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


def test_an_emulator_without_its_image_refuses_to_start_and_says_how_to_build_it(tmp_path):
    from conftest import METAFLOW_R, NO_ENGINE

    from metaflow_r.emulator.containers import container_engine

    if container_engine() is None:
        pytest.skip(NO_ENGINE)
    env_file = tmp_path / "aws.env"
    done = subprocess.run([METAFLOW_R, "emulator", "--port", "0", "--env-file", str(env_file), "--batch-runner",
                           "container", "--image", "metaflow-r:no-such-tag"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "The image metaflow-r:no-such-tag is not in" in done.stderr and "make image" in done.stderr
    assert "Traceback" not in done.stderr and not env_file.exists()


FIXABLE = """library(metaflow)
start <- function(self) self$n <- 41
check <- function(self) {
  if (!file.exists("FIXED")) stop("not fixed yet")
  self$answer <- self$n + 1
}
end <- function(self) cat("answer is", self$answer, "\\n")
metaflow("FixableFlow") %>%
  step(step = "start", r_function = start, next_step = "check") %>%
  step(step = "check", r_function = check, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


def test_a_failed_production_run_is_resumed_locally_from_its_s3_data(emulator, tmp_path):
    """With the settings a deployment needs and nothing more (no METAFLOW_DEFAULT_DATASTORE), resume finds
    the production run in S3, reuses its finished tasks and their artifacts, and runs the rest locally."""
    fixed = tmp_path / "fixed"
    script = tmp_path / "fixable.R"
    script.write_text(FIXABLE.replace('"FIXED"', f'"{fixed}"'))
    env = emulated_env(emulator)
    assert "METAFLOW_DEFAULT_DATASTORE" not in env
    assert rscript(script, ["step-functions", "create"], tmp_path, env).returncode == 0
    failed = rscript(script, ["step-functions", "trigger", "--run-id", "sfn-broken", "--wait"], tmp_path, env)
    assert failed.returncode == 1 and "step 'check'" in failed.stderr

    fixed.write_text("")
    resumed = rscript(script, ["resume", "--origin-run-id", "sfn-broken"], tmp_path, env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Cloned from run sfn-broken." in resumed.stdout and "answer is 42" in resumed.stdout
    local = FlowDatastore(LocalStorage(tmp_path / ".metaflow"), "FixableFlow")
    (run_id,) = local.run_ids()
    start = local.task_record(run_id, "start", "start")  # the production task's id, cloned
    assert start["cloned_from"] == "sfn-broken/start/start"
    assert local.blob_intact(start["artifacts"]["n"])  # its artifact came along from S3
    assert local.run_status(run_id)["successful"] is True


def test_data_beside_the_script_reaches_batch_only_with_its_suffix(emulator, tmp_path):
    script = tmp_path / "data_flow.R"
    script.write_text(READS_DATA)
    (tmp_path / "data.csv").write_text("n\n40\n2\n")
    env = emulated_env(emulator)
    created = rscript(script, ["step-functions", "create"], tmp_path, env)
    assert created.returncode == 0, created.stderr
    assert "data.csv" in created.stderr and "--package-suffixes=.R,.csv" in created.stderr
    failed = rscript(script, ["step-functions", "trigger", "--run-id", "no-data", "--wait"], tmp_path, env)
    assert failed.returncode == 1 and "step 'start'" in failed.stderr
    ds = s3_datastore(emulator, "DataFlow")
    assert "cannot open file 'data.csv'" in ds.read_log("no-data", "start", "start", 0, "stderr")

    created = rscript(script, ["--package-suffixes=.R,.csv", "step-functions", "create"], tmp_path, env)
    assert created.returncode == 0, created.stderr
    assert "data.csv" in created.stdout and "Warning" not in created.stderr
    triggered = rscript(script, ["step-functions", "trigger", "--run-id", "with-data", "--wait"], tmp_path, env)
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    assert "total is 42" in ds.read_log("with-data", "end", "end", 0, "stdout")




def test_a_seeded_flow_draws_the_same_numbers_locally_with_batch_and_on_step_functions(emulator, tmp_path):
    """Issue 21: each task's stream follows from the run's seed and its place in the graph, not from where
    it runs: a local run, a run --with batch and a Step Functions run store the same draws, all distinct."""
    script = tmp_path / "seeded.R"
    script.write_text(seeded_foreach("SeededFlow", 10, seed=7))
    env = emulated_env(emulator)
    local = rscript(script, ["--datastore", "local", "run"], tmp_path, {**env, "METAFLOW_DATASTORE_SYSROOT_LOCAL":
                                                                         str(tmp_path / "local")})
    assert local.returncode == 0, local.stdout + local.stderr
    local_ds = FlowDatastore(LocalStorage(tmp_path / "local" / ".metaflow"), "SeededFlow")
    (local_run,) = local_ds.run_ids()
    draws = artifacts_by_task(local_ds, local_run)
    assert len({artifacts["u"] for (step, _), artifacts in draws.items() if step == "draw"}) == 10
    with_batch = rscript(script, ["run", "--with", "batch", "--max-workers", "4"], tmp_path, env)
    assert with_batch.returncode == 0, with_batch.stdout + with_batch.stderr
    remote_ds = s3_datastore(emulator, "SeededFlow")
    (batch_run,) = remote_ds.run_ids()
    assert artifacts_by_task(remote_ds, batch_run) == draws
    deploy_and_trigger(script, tmp_path, env, "e2e-seeded")
    assert artifacts_by_task(remote_ds, "e2e-seeded") == draws
    assert remote_ds.run_record("e2e-seeded")["seed"] == local_ds.run_record(local_run)["seed"] == 7
    # trigger --seed, as run --seed, gives a production run its seed: recorded, and its draws are that seed's.
    reseeded = rscript(script, ["step-functions", "trigger", "--run-id", "e2e-reseeded", "--seed", "8", "--wait"],
                       tmp_path, env)
    assert reseeded.returncode == 0, reseeded.stdout + reseeded.stderr
    assert remote_ds.run_record("e2e-reseeded")["seed"] == 8
    local_8 = rscript(script, ["--datastore", "local", "run", "--seed", "8"], tmp_path,
                      {**env, "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path / "local")})
    assert local_8.returncode == 0, local_8.stdout + local_8.stderr
    [run_8] = [r for r in local_ds.run_ids() if local_ds.run_record(r)["seed"] == 8]
    assert artifacts_by_task(remote_ds, "e2e-reseeded") == artifacts_by_task(local_ds, run_8) != draws
