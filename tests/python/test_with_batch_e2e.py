"""``Rscript flow.R run --with batch``, as Metaflow R's tutorials use it, on the emulator with every Batch job
in the image (`make image`).

The run stays local (its graph walk, retries, resume); each attempt is a Batch job that runs the task in
the image with the image's own Python and R and commits it to S3, its log lines come back to the console
while it runs, and the Client API reads the run back from S3.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
from conftest import EXAMPLES, emulated_env, local_env, rscript, s3_datastore, seeded_foreach

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")

FAILING = """library(metaflow)
start <- function(self) self$x <- 1
broken <- function(self) stop("no luck on Batch")
end <- function(self) cat("never here\\n")
metaflow("BrokenBatchFlow") %>%
  step(step = "start", r_function = start, next_step = "broken") %>%
  step(step = "broken", r_function = broken, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


@pytest.fixture(scope="module")
def emulator(image_emulator):
    return image_emulator


def run_id_of(output: str) -> str:
    return re.search(r"Workflow starting \(run-id ([^)]+)\)", output).group(1)


def test_a_run_with_batch_runs_each_attempt_as_a_job_in_the_image(emulator, tmp_path):
    shutil.copy(EXAMPLES / "production_check.R", tmp_path)
    (tmp_path / "numbers.csv").write_text("n\n3\n4\n")
    env = emulated_env(emulator)
    done = rscript(tmp_path / "production_check.R", ["--package-suffixes=.R,.csv", "run", "--with", "batch",
                                                     "--max-workers", "4"], tmp_path, env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # The jobs' own lines, stdout and stderr, streamed back from their CloudWatch logs while the run went on.
    assert re.search(r"AWS_BATCH_JOB_ID=\S+", output) and "AWS_BATCH_JQ_NAME=metaflow-r-queue" in output
    assert "a line on stderr reaches the log too" in output and "total of squares: 25" in output
    if emulator.get("METAFLOW_BATCH_CONTAINER_IMAGE", "").startswith("metaflow-r:"):
        assert re.search(r"image: user=\S+ uid=\d+ python=Python 3\.11\.2 R version", output), output  # Debian's
    # The data file travelled in the code package; square's first attempts failed and were retried
    # by the local runtime, each retry a job of its own.
    assert output.count("retrying") >= 2, output
    run_id = run_id_of(output)
    ds = s3_datastore(emulator, "ProductionCheckFlow")
    assert ds.run_status(run_id)["successful"] is True
    squares = ds.task_ids(run_id, "square")
    assert len(squares) == 2  # numbers.csv's two numbers: 3² + 4² = 25
    for task_id in squares:
        failed = ds.attempt_record(run_id, "square", task_id, 0)
        assert failed["successful"] is False and failed["batch_job_id"]
        assert "the first attempt fails on purpose" in ds.read_log(run_id, "square", task_id, 0, "stderr")
        assert ds.task_record(run_id, "square", task_id)["successful"]
    # The Client API finds the run in S3 without being told where.
    read = subprocess.run(["Rscript", "-e", f"library(metaflow); cat(run_client$new('ProductionCheckFlow/{run_id}')"
                                             f"$artifact('total'))"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert read.returncode == 0 and read.stdout.strip() == "25", read.stdout + read.stderr


def test_a_failed_job_fails_the_run_with_its_error_and_nothing_after_it_runs(emulator, tmp_path):
    (tmp_path / "broken.R").write_text(FAILING)
    done = rscript(tmp_path / "broken.R", ["run", "--with", "batch"], tmp_path, emulated_env(emulator))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Error in step 'broken': no luck on Batch" in output
    assert "failed in step 'broken'" in output
    run_id = run_id_of(output)
    ds = s3_datastore(emulator, "BrokenBatchFlow")
    assert ds.run_status(run_id)["successful"] is False
    assert ds.task_ids(run_id, "end") == []
    assert "never here" not in output


SLEEPY = """library(metaflow)
start <- function(self) self$x <- 1
nap <- function(self) {
  cat("napping\\n")
  Sys.sleep(600)
}
end <- function(self) NULL
metaflow("SleepyBatchFlow") %>%
  step(step = "start", r_function = start, next_step = "nap") %>%
  step(step = "nap", r_function = nap, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


def test_a_killed_run_takes_its_batch_jobs_with_it(emulator, tmp_path):
    """SIGKILL leaves the run no chance to clean up: its reaper terminates the job still running."""
    import boto3

    (tmp_path / "sleepy.R").write_text(SLEEPY)
    log = tmp_path / "console.log"
    with open(log, "w") as console:
        process = subprocess.Popen(["Rscript", "sleepy.R", "run", "--with", "batch"], cwd=tmp_path,
                                   env=emulated_env(emulator), stdout=console, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while "napping" not in log.read_text():
        assert process.poll() is None and time.time() < deadline, log.read_text()
        time.sleep(0.5)
    process.kill()
    process.wait()
    run_id = run_id_of(log.read_text())
    ds = s3_datastore(emulator, "SleepyBatchFlow")
    batch = boto3.client("batch", endpoint_url=emulator["AWS_ENDPOINT_URL"], region_name=emulator["AWS_REGION"],
                         aws_access_key_id="emulated", aws_secret_access_key="emulated")
    while True:
        status = ds.run_status(run_id)
        jobs = [job for state in ("RUNNING", "SUCCEEDED", "FAILED")
                for job in batch.list_jobs(jobQueue=emulator["METAFLOW_BATCH_JOB_QUEUE"], jobStatus=state)["jobSummaryList"]
                if job["jobName"] == "SleepyBatchFlow-nap"]
        if status and jobs and all(job["status"] == "FAILED" for job in jobs):
            break
        assert time.time() < deadline, (status, jobs)
        time.sleep(0.5)
    assert status["successful"] is False and "interrupted" in status["reason"]
    assert len(jobs) == 1 and "the local run that submitted it ended" in jobs[0]["statusReason"]
    # The job heard SIGTERM (as its container's PID 1) and recorded the attempt, with what it had printed.
    (task_id,) = ds.task_ids(run_id, "nap")
    stopped = ds.attempt_record(run_id, "nap", task_id, 0)
    assert stopped["successful"] is False and stopped["exception"]["class"][0] == "metaflow_job_stopped"
    assert "napping" in ds.read_log(run_id, "nap", task_id, 0, "stdout")
    (described,) = batch.describe_jobs(jobs=[jobs[0]["jobId"]])["jobs"]
    exit_code = described["attempts"][-1]["container"].get("exitCode")
    assert exit_code not in (None, 137, -9), described  # SIGTERM ended it, not SIGKILL after the grace


BATCH_STEP = """library(metaflow)
start <- function(self) self$start_job <- Sys.getenv("AWS_BATCH_JOB_ID")
train <- function(self) {
  self$train_job <- Sys.getenv("AWS_BATCH_JOB_ID")
  self$fit <- lm(mpg ~ wt, data = mtcars)
}
end <- function(self) cat("end ran in job", shQuote(Sys.getenv("AWS_BATCH_JOB_ID")), "\\n")
metaflow("BatchStepFlow") %>%
  step(step = "start", r_function = start, next_step = "train") %>%
  step(decorator("batch", memory = 2048), step = "train", r_function = train, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


def test_a_step_decorated_batch_runs_on_batch_in_a_local_run_and_the_others_locally(emulator, tmp_path):
    """Issue 21: decorator("batch") on a step was ignored by a local run; Metaflow runs that step on Batch."""
    (tmp_path / "flow.R").write_text(BATCH_STEP)
    done = rscript(tmp_path / "flow.R", ["run"], tmp_path, emulated_env(emulator))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"/start/1 \(pid \d+\)\]", output) and re.search(r"/train/2 \(job \w+\)\]", output), output
    assert "end ran in job '' " in output
    run_id = run_id_of(output)
    ds = s3_datastore(emulator, "BatchStepFlow")  # every task of the run stored in S3, where the job reads
    assert ds.run_status(run_id)["successful"] is True
    assert ds.attempt_record(run_id, "train", "2", 0)["batch_job_id"]
    assert not ds.attempt_record(run_id, "start", "1", 0).get("batch_job_id")
    assert not (tmp_path / ".metaflow").exists()


def test_a_step_decorated_batch_without_the_batch_settings_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "flow.R").write_text(BATCH_STEP)
    env = {**local_env(tmp_path), "METAFLOW_HOME": str(tmp_path / "no-config")}
    done = rscript(tmp_path / "flow.R", ["run"], tmp_path, env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert 'Running steps on AWS Batch (decorator("batch") on step train) needs settings that are missing' in output
    assert "METAFLOW_BATCH_JOB_QUEUE" in output and "METAFLOW_DATASTORE_SYSROOT_S3" in output
    assert "Workflow starting" not in output and "Traceback" not in output
    assert not (tmp_path / "local").exists()


def test_resume_with_batch_keeps_the_finished_jobs_and_draws_what_a_clean_run_draws(emulator, tmp_path):
    """Issue 21: a resume reuses the failed foreach's finished tasks (jobs not submitted again), and the
    task it runs again draws from the same stream as in a run that never failed."""
    (tmp_path / "wide.R").write_text(seeded_foreach("WideBatchFlow", 6, seed=11, failing_item=6))
    env = emulated_env(emulator)
    package = "--package-suffixes=.R,.txt"  # the fix is a file beside the script, in the code package
    failed = rscript(tmp_path / "wide.R", [package, "run", "--with", "batch", "--max-workers", "1"], tmp_path, env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    (tmp_path / "fixed.txt").write_text("")
    resumed = rscript(tmp_path / "wide.R", [package, "resume", "--with", "batch"], tmp_path, env)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output
    assert "Step 'draw' is unchanged since run" in output
    assert len(re.findall(r"/draw/\d+\] Cloned from run", output)) == 5
    assert len(re.findall(r"/draw/\d+ \(job \w+\)\] Task is starting", output)) == 1
    clean = rscript(tmp_path / "wide.R", [package, "run", "--with", "batch", "--max-workers", "2"], tmp_path, env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    ds = s3_datastore(emulator, "WideBatchFlow")
    joins = {run_id: ds.task_record(run_id, "join", ds.task_ids(run_id, "join")[0])["artifacts"]["us"]
             for run_id in (run_id_of(output), run_id_of(clean.stdout + clean.stderr))}
    assert len(set(joins.values())) == 1, joins
