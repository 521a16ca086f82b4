"""Concurrency: many runs of one flow at once, sharing one datastore, each keeping its own artifacts.

Locally: 10 ``Rscript flow.R run`` processes started together in one directory (one ``.metaflow``).
On the emulator: 5 executions of one deployed flow triggered together. Every run succeeds, has its own
run id, ends with the value its own parameter determines, and every stored blob is whole.
"""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    assert_local_blobs_intact,
    assert_s3_blobs_intact,
    emulated_env,
    local_datastore_files,
    r_values,
    s3_datastore,
)

from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.storage import LocalStorage

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")

# More runs would take the suite minutes longer and show nothing more: already every write of a shared
# blob, every run record and every task directory is contended.
LOCAL_RUNS = 10
EMULATED_RUNS = 5

# Every run stores some artifacts that are the same in all runs (the flow's constants) and some that
# depend on its parameter n: concurrent writers of one blob, and of different blobs, in one datastore.
CONC_FLOW = """library(metaflow)
start <- function(self) {
  self$constant <- "the same in every run"
  self$items <- seq_len(3) * self$n
}
body <- function(self) self$sq <- self$input^2
join <- function(self, inputs) self$total <- sum(unlist(gather_inputs(inputs, "sq")))
end <- function(self) self$result <- c(n = self$n, total = self$total)
metaflow("ConcFlow") %>%
  parameter("n", default = 1L) %>%
  step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%
  step(step = "body", r_function = body, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
"""


def expected_result(n: int) -> str:
    return f"c(n = {n}, total = {14 * n * n})"  # (n)^2 + (2n)^2 + (3n)^2


def write_flow(directory: Path) -> Path:
    script = directory / "conc_flow.R"
    script.write_text(CONC_FLOW)
    return script


def wait_all(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.time() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.time())) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def end_record(ds: FlowDatastore, run_id: str) -> dict:
    (task_id,) = ds.task_ids(run_id, "end")
    return ds.task_record(run_id, "end", task_id)


def check_run_is_its_own(ds: FlowDatastore, run_id: str, n: int) -> None:
    """Its record holds its parameter, and every task of it read only its own run's tasks."""
    assert ds.run_record(run_id)["parameters"] == {"n": n}
    assert ds.run_status(run_id)["successful"] is True
    tasks = 0
    for step in ds.step_names(run_id):
        for task_id in ds.task_ids(run_id, step):
            record = ds.task_record(run_id, step, task_id)
            assert record["successful"], (run_id, step, task_id)
            assert all(path.startswith(f"{run_id}/") for path in record["input_paths"])
            tasks += 1
    assert tasks == 6  # start, 3 x body, join, end


def test_concurrent_local_runs_share_one_datastore(tmp_path):
    script = write_flow(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METAFLOW_"))}
    env.update(TMPDIR=str(scratch), METAFLOW_USER="tester")
    processes = []
    for n in range(1, LOCAL_RUNS + 1):
        log = open(tmp_path / f"run-{n}.log", "w")  # noqa: SIM115 - the child holds it
        processes.append(subprocess.Popen(
            ["Rscript", str(script), "run", "--max-workers", "1", "--n", str(n),
             "--run-id-file", str(tmp_path / f"run-{n}.id")],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()
    codes = wait_all(processes, timeout=240)
    for n, code in enumerate(codes, start=1):
        assert code == 0, (tmp_path / f"run-{n}.log").read_text()

    run_ids = {n: (tmp_path / f"run-{n}.id").read_text() for n in range(1, LOCAL_RUNS + 1)}
    assert len(set(run_ids.values())) == LOCAL_RUNS  # unique run ids
    ds = FlowDatastore(LocalStorage(tmp_path / ".metaflow"), "ConcFlow")
    assert sorted(ds.run_ids()) == sorted(run_ids.values())  # one datastore holds them all
    for n, run_id in run_ids.items():
        assert f"Run ConcFlow/{run_id} succeeded" in (tmp_path / f"run-{n}.log").read_text()
        check_run_is_its_own(ds, run_id, n)
    results = r_values([ds.blob_path(end_record(ds, run_ids[n])["artifacts"]["result"])
                        for n in range(1, LOCAL_RUNS + 1)])
    assert results == [expected_result(n) for n in range(1, LOCAL_RUNS + 1)]
    constants = {ds.task_record(run_id, "start", ds.task_ids(run_id, "start")[0])["artifacts"]["constant"]
                 for run_id in run_ids.values()}
    assert len(constants) == 1  # one blob, written by every run at once

    blobs = assert_local_blobs_intact(tmp_path / ".metaflow")  # every blob's sha256 is its name
    assert blobs >= 1 + 4 * LOCAL_RUNS  # constant, and per run: n, items, total, result (sq may coincide)
    files = local_datastore_files(tmp_path / ".metaflow")
    assert files["temp"] == []
    assert list(scratch.glob("metaflow-r-*")) == []  # every run removed its task directories
    # Blobs and records are created like any file the user writes (the umask decides), so the other users
    # whose runs share a datastore can read them: a blob is never rewritten by the next writer.
    umask = os.umask(0o022)
    os.umask(umask)
    for path in files["blobs"] + files["done"]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask, path


@pytest.fixture(scope="module")
def deployed_conc_flow(emulator, tmp_path_factory):
    directory = tmp_path_factory.mktemp("conc-flow")
    script = write_flow(directory)
    env = emulated_env(emulator)
    created = subprocess.run(["Rscript", str(script), "step-functions", "create", "--max-workers", "2"],
                             cwd=directory, env=env, capture_output=True, text=True, timeout=300)
    assert created.returncode == 0, created.stdout + created.stderr
    return script, env


def test_concurrent_emulated_executions_of_one_deployed_flow(emulator, deployed_conc_flow):
    import boto3

    script, env = deployed_conc_flow
    run_ids = {n: f"conc-{n}" for n in range(1, EMULATED_RUNS + 1)}
    triggers = [subprocess.Popen(["Rscript", str(script), "step-functions", "trigger", "--run-id", run_id,
                                  "--n", str(n)], cwd=script.parent, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
                for n, run_id in run_ids.items()]
    wait_all(triggers, timeout=120)
    for process in triggers:
        output = process.stdout.read()
        process.stdout.close()
        assert process.returncode == 0, output
        assert "triggered on Step Functions" in output

    sfn = boto3.client("stepfunctions", endpoint_url=emulator["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="emulated", aws_secret_access_key="emulated")
    arn = next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "ConcFlow")
    executions = {run_id: arn.replace(":stateMachine:", ":execution:") + f":{run_id}" for run_id in run_ids.values()}
    deadline = time.time() + 240
    statuses: dict[str, str] = {}
    while True:
        statuses = {r: sfn.describe_execution(executionArn=a)["status"] for r, a in executions.items()}
        if "RUNNING" not in statuses.values() or time.time() > deadline:
            break
        time.sleep(1)
    assert statuses == {run_id: "SUCCEEDED" for run_id in run_ids.values()}

    listed = subprocess.run(["Rscript", str(script), "step-functions", "list-runs", "--succeeded"],
                            cwd=script.parent, env=env, capture_output=True, text=True, timeout=120)
    assert all(f"{run_id}  SUCCEEDED" in listed.stdout for run_id in run_ids.values()), listed.stdout

    ds = s3_datastore(emulator, "ConcFlow")
    for n, run_id in run_ids.items():
        check_run_is_its_own(ds, run_id, n)
    results = r_values([ds.blob_path(end_record(ds, run_ids[n])["artifacts"]["result"])
                        for n in range(1, EMULATED_RUNS + 1)])
    assert results == [expected_result(n) for n in range(1, EMULATED_RUNS + 1)]
    assert len(assert_s3_blobs_intact(emulator, "ConcFlow")) >= 1 + 4 * EMULATED_RUNS
