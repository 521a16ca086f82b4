"""Nothing a Batch job or the emulator started outlives it, with the local runner and in the image.

A step starts a background process in its own process group (``system("sleep 600 &")``) and one in a
session of its own (``processx``, as ``callr::r_bg()`` does), then ends, or loops forever. When the step
ends, both end with it; when the emulator is stopped (SIGTERM, Ctrl-C), every job it was running stops,
its task and their processes with it, and no container stays up. ``emulator_stop()`` from R is
tests/testthat/test-emulator.R's. The local runs' own cases are test_termination.py's.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import boto3
import pytest
from conftest import EmulatorProcess, alive, emulated_env, eventually, image_runner_options, rscript

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")

BACKGROUND_JOB = """library(metaflow)
start <- function(self) {
  system(sprintf("sleep 600 & echo $! > %s/background.pid", self$piddir))
  escaped <- processx::process$new("sleep", "600", cleanup = FALSE)  # a session of its own
  cat(escaped$get_pid(), file = file.path(self$piddir, "escaped.pid"))
  cat(Sys.getpid(), file = file.path(self$piddir, "task.pid"))
  cat("background processes started\\n")
  if (self$forever) repeat Sys.sleep(1)
}
metaflow("BackgroundJobFlow") %>%
  parameter("piddir", default = "/tmp") %>%
  parameter("forever", default = FALSE) %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end") %>%
  run()
"""


def started_emulator(home: Path, image: str | None) -> EmulatorProcess:
    options, env = image_runner_options(image)
    return EmulatorProcess(home, *options, env=env)


def deployed(emulator: EmulatorProcess, directory: Path) -> tuple[Path, dict[str, str]]:
    script = directory / "background_job.R"
    script.write_text(BACKGROUND_JOB)
    env = emulated_env(emulator.settings)
    created = rscript(script, ["step-functions", "create"], directory, env)
    assert created.returncode == 0, created.stdout + created.stderr
    return script, env


def batch(settings: dict[str, str], service: str = "batch"):
    return boto3.client(service, endpoint_url=settings["AWS_ENDPOINT_URL"], region_name=settings["AWS_REGION"],
                        aws_access_key_id="emulated", aws_secret_access_key="emulated")


def job_ids(settings: dict[str, str], status: str) -> list[str]:
    listed = batch(settings).list_jobs(jobQueue=settings["METAFLOW_BATCH_JOB_QUEUE"], jobStatus=status)
    return [job["jobId"] for job in listed["jobSummaryList"]]


def job_lines(settings: dict[str, str], job_id: str) -> list[str]:
    (job,) = batch(settings).describe_jobs(jobs=[job_id])["jobs"]
    stream = job["container"].get("logStreamName")
    if not stream:
        return []
    events = batch(settings, "logs").get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    return [event["message"] for event in events]


def containers_of(job_id: str, image: str | None) -> list[str]:
    """The containers (running or not) of the job's attempts; none when jobs run as local processes."""
    if image is None:
        return []
    from metaflow_r.core.procenv import engine_env
    from metaflow_r.emulator.containers import container_engine

    engine = container_engine()
    listed = subprocess.run([engine, "ps", "-a", "--filter", f"name=metaflow-r-{job_id}", "--format", "{{.Names}}"],
                            capture_output=True, text=True, env=engine_env(engine), check=True)
    return listed.stdout.split()


def pids_in(directory: Path) -> dict[str, int]:
    return {name: int((directory / f"{name}.pid").read_text()) for name in ("task", "background", "escaped")}


@pytest.fixture(scope="module", params=["local", "image"])
def runner_image(request, batch_image_tag) -> str | None:
    """None: jobs as local processes; else the image they run in (skipped, saying why, without an engine)."""
    if request.param == "local":
        return None
    if batch_image_tag is None:
        from conftest import NO_ENGINE

        pytest.skip(NO_ENGINE)
    return batch_image_tag


def test_what_a_batch_task_starts_ends_with_it(runner_image, tmp_path):
    emulator = started_emulator(tmp_path / "emulator", runner_image)
    try:
        script, env = deployed(emulator, tmp_path)
        piddir = tmp_path if runner_image is None else Path("/tmp")  # the container's own /tmp otherwise
        done = rscript(script, ["step-functions", "trigger", "--run-id", "background", "--piddir", str(piddir),
                                "--wait"], tmp_path, env)
        assert done.returncode == 0, done.stdout + done.stderr
        (start_job,) = [j for j in job_ids(emulator.settings, "SUCCEEDED")
                        if "background processes started" in job_lines(emulator.settings, j)]
        if runner_image is None:
            for what, pid in pids_in(tmp_path).items():
                assert eventually(lambda: not alive(pid)), f"the {what} ({pid}) outlived its Batch task"
        assert eventually(lambda: containers_of(start_job, runner_image) == [])
    finally:
        emulator.stop()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_emulator_stops_every_job_it_runs(runner_image, tmp_path, how):
    if runner_image is not None and how == signal.SIGINT:
        pytest.skip("the container runner is stopped one way: SIGTERM (Ctrl-C ends the same code path)")
    emulator = started_emulator(tmp_path / "emulator", runner_image)
    try:
        script, env = deployed(emulator, tmp_path)
        piddir = tmp_path if runner_image is None else Path("/tmp")
        triggered = rscript(script, ["step-functions", "trigger", "--run-id", "forever", "--piddir", str(piddir),
                                     "--forever", "true"], tmp_path, env)
        assert triggered.returncode == 0, triggered.stdout + triggered.stderr

        def running_job() -> list[str]:
            return [j for j in job_ids(emulator.settings, "RUNNING")
                    if "background processes started" in job_lines(emulator.settings, j)]

        assert eventually(running_job, 180), "the step never started"
        (job,) = running_job()
        assert containers_of(job, runner_image) != [] or runner_image is None
    finally:
        output = emulator.stop(how)
    assert "It stopped the 1 Batch job(s) still running." in output
    assert "Its state is in memory only: when it stops, it forgets every deployment" in output  # said at start
    if runner_image is None:
        for what, pid in pids_in(tmp_path).items():
            assert eventually(lambda: not alive(pid)), f"the {what} ({pid}) outlived the emulator"
    assert containers_of(job, runner_image) == []  # none left Up, nor stopped: --rm removed it
