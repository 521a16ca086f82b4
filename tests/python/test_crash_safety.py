"""Crash safety: a process SIGKILLed while a large artifact is being written leaves nothing half-written visible.

What a user must see after the crash: the run failed (exit status 1, ``_status.json`` not successful), no
successful attempt record for the killed task, every stored blob whole (its sha256 is its name), no
temporary file visible to readers; and ``resume`` finishes the run, reusing every task that had finished.
On the emulator: a Batch job that dies fails the execution, and S3 holds no successful record for it and
no blob that is not whole.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    assert_local_blobs_intact,
    assert_s3_blobs_intact,
    emulated_env,
    eventually,
    local_datastore_files,
    make_spec,
    r_values,
    s3_client,
    s3_datastore,
    step,
)

from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.storage import LocalStorage
from metaflow_r.runtime.reaper import RUNTIME_ENDED

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")

BIG = 50_000_000  # random bytes: saveRDS cannot compress them, so writing them takes a second or two

# A foreach whose join makes the large artifact. The join's task process (forked from the run's R)
# records its pid before it returns; its artifacts are written after it returns.
CRASH_FLOW = """library(metaflow)
start <- function(self) self$items <- 1:3
body <- function(self) self$sq <- self$input^2
join <- function(self, inputs) {
  self$total <- sum(unlist(gather_inputs(inputs, "sq")))
  self$big <- readBin("/dev/urandom", "raw", BIG_SIZE)
  self$big_sum <- sum(as.numeric(self$big))
  writeLines(as.character(Sys.getpid()), "PID_FILE")
}
end <- function(self) self$result <- self$total
metaflow("CrashFlow") %>%
  step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%
  step(step = "body", r_function = body, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
"""
CRASH_SPEC_STEPS = [step("start", "body", foreach="items"), step("body", "join"),
                    step("join", "end", join=True), step("end")]


class CrashFlow:
    def __init__(self, directory: Path, big: int = BIG) -> None:
        self.dir = directory
        self.script = directory / "crash_flow.R"
        self.pid_file = directory / "join.pid"
        self.script.write_text(CRASH_FLOW.replace("BIG_SIZE", str(big)).replace("PID_FILE", str(self.pid_file)))
        self.scratch = directory / "scratch"  # TMPDIR: where the runtime makes its task directories
        self.scratch.mkdir()
        self.root = directory / ".metaflow"
        self.ds = FlowDatastore(LocalStorage(self.root), "CrashFlow")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METAFLOW_"))}
        self.env = {**env, "TMPDIR": str(self.scratch), "METAFLOW_USER": "tester"}

    def popen(self, *argv: str) -> subprocess.Popen:
        log = open(self.dir / "run.log", "w")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(list(argv), cwd=self.dir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def output(self) -> str:
        return (self.dir / "run.log").read_text()

    def rscript_r(self, code: str) -> subprocess.CompletedProcess:
        """R code run with the package loaded, where the flow was run (the Client API's namespace is the user's)."""
        return subprocess.run(["Rscript", "-e", f"library(metaflow); {code}"], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=300)

    def rscript(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["Rscript", str(self.script), *args], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=300)


def wait_until(condition, timeout: float, process: subprocess.Popen, what: str, output) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}:\n{output()}"
        assert time.time() < deadline, f"no {what} after {timeout} s:\n{output()}"
        time.sleep(0.005)


def check_nothing_partial_is_visible(flow: CrashFlow, run_id: str, big: int = BIG) -> None:
    ds = flow.ds
    for task_id in ds.task_ids(run_id, "join"):
        assert not any(r["successful"] for r in ds.attempts(run_id, "join", task_id))
    assert ds.task_ids(run_id, "end") == []
    done = local_datastore_files(flow.root)["done"]
    assert not any(json.loads(Path(p).read_text())["successful"] for p in done if "/join/" in p)
    assert assert_local_blobs_intact(flow.root) > 0  # every blob's sha256 is its name
    for path in local_datastore_files(flow.root)["blobs"]:
        assert os.path.getsize(path) < big, f"{path}: the big artifact, or a part of it, was stored"
    for step_name in ds.step_names(run_id):  # what is committed is whole: every blob a record names exists
        for task_id in ds.task_ids(run_id, step_name):
            for record in ds.attempts(run_id, step_name, task_id):
                assert all(Path(ds.blob_path(sha)).is_file() for sha in record["artifacts"].values())


def check_resume_reuses_and_completes(flow: CrashFlow, origin: str, big: int = BIG) -> str:
    ds = flow.ds
    resumed = flow.rscript("resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (run_id,) = [r for r in ds.run_ids() if r != origin]
    assert ds.run_record(run_id)["origin_run_id"] == origin
    assert ds.run_status(run_id)["successful"] is True
    finished = [(s, t, ds.task_record(origin, s, t)) for s in ("start", "body") for t in ds.task_ids(origin, s)]
    assert len(finished) == 4 and all(r["successful"] for _, _, r in finished)
    for step_name, task_id, record in finished:  # every finished task reused as it was ...
        clone = ds.task_record(run_id, step_name, task_id)
        assert clone["cloned_from"] == f"{origin}/{step_name}/{task_id}"
        assert clone["artifacts"] == record["artifacts"]
    started = [line for line in resumed.stdout.splitlines() if "Task is starting" in line]
    assert sorted(line.split("/")[1] for line in started) == ["end", "join"]  # ... and only the rest ran
    (end_id,) = ds.task_ids(run_id, "end")
    end = ds.task_record(run_id, "end", end_id)
    assert r_values([ds.blob_path(end["artifacts"]["result"])]) == ["14"]  # 1 + 4 + 9
    big_path, sum_path = ds.blob_path(end["artifacts"]["big"]), ds.blob_path(end["artifacts"]["big_sum"])
    check = subprocess.run(["Rscript", "-e", "x <- readRDS(commandArgs(TRUE)[1]); "
                            "cat(length(x), sum(as.numeric(x)) == readRDS(commandArgs(TRUE)[2]))",
                            big_path, sum_path],
                           capture_output=True, text=True, timeout=120)
    assert check.stdout == f"{big} TRUE", check.stdout + check.stderr
    assert assert_local_blobs_intact(flow.root) > 0
    return run_id


def test_a_task_killed_while_writing_a_large_artifact_leaves_nothing_visible(tmp_path):
    """SIGKILL the join's task process while its 50 MB artifact file is half written; then resume."""
    flow = CrashFlow(tmp_path)
    process = flow.popen("Rscript", str(flow.script), "run", "--max-workers", "2")
    partial: list[str] = []

    def big_artifact_being_written() -> bool:
        partial[:] = glob.glob(str(flow.scratch / "metaflow-r-*" / "join-*" / "artifact-2.rds"))
        return bool(partial) and flow.pid_file.exists() and os.path.getsize(partial[0]) > 0

    try:
        wait_until(big_artifact_being_written, 120, process, "join writing its artifact", flow.output)
        os.kill(int(flow.pid_file.read_text()), signal.SIGKILL)
        size_at_kill = os.path.getsize(partial[0])
        finished_at_kill = os.path.exists(os.path.join(os.path.dirname(partial[0]), "outputs.json"))
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert 0 < size_at_kill < BIG and not finished_at_kill  # it was killed mid-write
    output = flow.output()
    assert code == 1, output
    assert "failed in step 'join'" in output and "Traceback" not in output
    (run_id,) = flow.ds.run_ids()
    assert flow.ds.run_status(run_id)["successful"] is False
    check_nothing_partial_is_visible(flow, run_id)
    assert local_datastore_files(flow.root)["temp"] == []
    assert list(flow.scratch.glob("metaflow-r-*")) == []  # the half-written file went with its task directory

    check_resume_reuses_and_completes(flow, run_id)
    assert local_datastore_files(flow.root)["temp"] == []


# Runs the local runtime exactly as `Rscript flow.R run` does (cli.main), but the first copy of an artifact
# over 1 MB into the datastore writes half the file, then FAULT happens: "kill" SIGKILLs the runtime process,
# "full" raises the error a full disk raises. The task's directory is made to look like another filesystem
# than the datastore's, so that its artifact files are copied, not renamed into place (a rename cannot be
# half done). With FAULT "status", only the run's status cannot be stored, as on a disk that filled up
# just then.
FAULTY_RUNTIME = """
import errno, os, shutil, signal, sys
from metaflow_r.cli.entry import main
from metaflow_r.datastore.storage import LocalStorage

real_copyfile, real_replace = shutil.copyfile, os.replace
real_create = LocalStorage.create
faults = []

def replace_across_filesystems(src, dst, *args, **kwargs):
    if os.path.basename(src).startswith("artifact-"):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src)
    return real_replace(src, dst, *args, **kwargs)

def create_unless_status(self, key, data):
    if os.environ["FAULT"] == "status" and key.endswith("/_status.json"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_create(self, key, data)

def copy_half_then_fail(src, dst, *args, **kwargs):
    size = os.path.getsize(src)
    if size > 1_000_000 and not faults and os.environ["FAULT"] != "status":
        faults.append(src)
        with open(src, "rb") as source, open(dst, "wb") as target:
            target.write(source.read(size // 2))
        if os.environ["FAULT"] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
    return real_copyfile(src, dst, *args, **kwargs)

shutil.copyfile = copy_half_then_fail
os.replace = replace_across_filesystems
LocalStorage.create = create_unless_status
spec_file, *argv = sys.argv[1:]
sys.exit(main(argv, open(spec_file).read(), {"launch_dir": os.getcwd(), "rscript": "Rscript"}))
"""


def run_faulty_runtime(flow: CrashFlow, fault: str) -> int:
    spec_file = flow.dir / "spec.json"
    spec_file.write_text(json.dumps(make_spec("CrashFlow", CRASH_SPEC_STEPS, script=str(flow.script))))
    driver = flow.dir / "faulty_runtime.py"
    driver.write_text(FAULTY_RUNTIME)
    flow.env["FAULT"] = fault
    process = flow.popen(sys.executable, str(driver), str(spec_file), "run", "--max-workers", "2")
    try:
        return process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        del flow.env["FAULT"]


SMALL_BIG = 5_000_000


def test_the_runtime_killed_while_storing_a_large_artifact_leaves_nothing_visible(tmp_path):
    """The runtime itself dies halfway through copying a 5 MB blob into the datastore; then resume."""
    flow = CrashFlow(tmp_path, big=SMALL_BIG)
    assert run_faulty_runtime(flow, "kill") == -signal.SIGKILL, flow.output()
    (run_id,) = flow.ds.run_ids()
    # its reaper marked it: failed, and why
    assert eventually(lambda: flow.ds.run_status(run_id) is not None)
    assert flow.ds.run_status(run_id)["reason"] == RUNTIME_ENDED
    (temp,) = local_datastore_files(flow.root)["temp"]  # the half-copied blob, under a temporary name ...
    assert "/CrashFlow/data/" in temp and 0 < os.path.getsize(temp) < SMALL_BIG
    temp_dir = os.path.relpath(os.path.dirname(temp), flow.root)

    def listed_there() -> list[str]:  # other blobs may share the directory: only whole ones, by their hash
        listed = flow.ds.storage.list_children(temp_dir)
        assert all(re.fullmatch(r"[0-9a-f]{64}", name) for name in listed), listed
        return listed

    assert os.path.basename(temp) not in listed_there()  # ... which no reader lists
    check_nothing_partial_is_visible(flow, run_id, SMALL_BIG)

    check_resume_reuses_and_completes(flow, run_id, SMALL_BIG)
    assert os.path.basename(temp) not in listed_there()


def test_a_failed_write_of_a_large_artifact_fails_the_task_cleanly(tmp_path):
    """The disk fills up halfway through storing a 5 MB blob: the task fails, the run too; then resume."""
    flow = CrashFlow(tmp_path, big=SMALL_BIG)
    assert run_faulty_runtime(flow, "full") == 1, flow.output()
    output = flow.output()
    assert "failed in step 'join'" in output and "Traceback" not in output
    assert "The disk is full: artifact 'big' of step 'join' could not be written to" in output
    assert "METAFLOW_DATASTORE_SYSROOT_LOCAL" in output
    (run_id,) = flow.ds.run_ids()
    assert flow.ds.run_status(run_id)["successful"] is False
    (join_id,) = flow.ds.task_ids(run_id, "join")
    (failure,) = flow.ds.attempts(run_id, "join", join_id)
    assert failure["successful"] is False and "The disk is full" in failure["error"]
    assert failure["exception"]["class"][0] == "metaflow_disk_full"
    check_nothing_partial_is_visible(flow, run_id, SMALL_BIG)
    assert local_datastore_files(flow.root)["temp"] == []  # the failed write removed its temporary file

    check_resume_reuses_and_completes(flow, run_id, SMALL_BIG)


def test_a_run_whose_status_could_not_be_stored_reads_as_ended_and_resumes(tmp_path):
    """The disk fills up just as the run's status is written: once space is freed, the advice it gives works."""
    flow = CrashFlow(tmp_path, big=SMALL_BIG)
    flow.script.write_text(flow.script.read_text().replace('writeLines(', 'if (!file.exists("fixed")) stop("not yet")\n  writeLines('))
    assert run_faulty_runtime(flow, "status") == 4, flow.output()
    output = flow.output()
    assert "Run CrashFlow/" in output and "failed, but its status could not be stored: [Errno 28]" in output
    assert "Free some space in the datastore, then resume the run." in output and "Traceback" not in output
    (run_id,) = flow.ds.run_ids()
    status = flow.ds.run_status(run_id)  # its runtime is gone: the run has ended, however it was recorded
    assert status["successful"] is False and "ended without recording how the run ended" in status["reason"]
    listed = flow.rscript_r(f'print(run_client$new("CrashFlow/{run_id}"))')
    assert f"<run_client> CrashFlow/{run_id}: failed" in listed.stdout, listed.stdout + listed.stderr

    (tmp_path / "fixed").write_text("")
    check_resume_reuses_and_completes(flow, run_id, SMALL_BIG)
    named = flow.rscript("resume", "--origin-run-id", run_id)
    assert named.returncode == 0, named.stdout + named.stderr


# -- emulated: a Batch job that dies ---------------------------------------------------------------

DYING_JOB_FLOW = """library(metaflow)
start <- function(self) self$x <- 1L
work <- function(self) {
  self$big <- readBin("/dev/urandom", "raw", 5e6)
  self$y <- self$x + 1L
  if (self$kill == "job") {  # the whole job: the batch-task process that would record the failure, too
    ppid <- sub("PPid:\\\\s*", "", grep("^PPid:", readLines("/proc/self/status"), value = TRUE))
    tools::pskill(as.integer(ppid), 9)
  }
  tools::pskill(Sys.getpid(), 9)
  Sys.sleep(30)
}
end <- function(self) self$z <- self$y
metaflow("DyingJobFlow") %>%
  parameter("kill", default = "task") %>%
  step(step = "start", r_function = start, next_step = "work") %>%
  step(step = "work", r_function = work, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


@pytest.fixture(scope="module")
def dying_job_flow(emulator, tmp_path_factory):
    directory = tmp_path_factory.mktemp("dying-job")
    script = directory / "dying_job_flow.R"
    script.write_text(DYING_JOB_FLOW)
    env = emulated_env(emulator)
    created = subprocess.run(["Rscript", str(script), "step-functions", "create"], cwd=directory, env=env,
                             capture_output=True, text=True, timeout=300)
    assert created.returncode == 0, created.stdout + created.stderr
    return script, env


@pytest.mark.parametrize("kill", ["task", "job"])
def test_a_batch_job_that_dies_fails_the_execution_and_stores_nothing_partial(emulator, dying_job_flow, kill):
    script, env = dying_job_flow
    run_id = f"dying-{kill}"
    triggered = subprocess.run(["Rscript", str(script), "step-functions", "trigger", "--run-id", run_id,
                                "--kill", kill, "--wait"], cwd=script.parent, env=env, capture_output=True,
                               text=True, timeout=300)
    assert triggered.returncode == 1, triggered.stdout + triggered.stderr
    assert f"Run DyingJobFlow/{run_id}: FAILED" in triggered.stdout
    assert "step 'work'" in triggered.stderr
    ds = s3_datastore(emulator, "DyingJobFlow")
    assert ds.task_record(run_id, "start", "start")["successful"] is True
    attempts = [a["successful"] for a in ds.attempts(run_id, "work", "work")]
    # The task's death is recorded by the batch-task process around it; a dead job records nothing.
    assert attempts == ([False] if kill == "task" else [])
    assert ds.task_ids(run_id, "end") == []
    status = ds.run_status(run_id)
    assert status["successful"] is False and isinstance(status["finished_at"], float)
    if kill == "job":  # nothing in the job survived to say why: the state machine ended the run itself
        assert "the Step Functions execution failed (States.TaskFailed) without a task recording why" \
            in status["reason"]
    sizes = assert_s3_blobs_intact(emulator, "DyingJobFlow")  # every blob's sha256 is its key
    assert sizes and max(sizes.values()) < 5_000_000  # the big artifact was never stored
    bucket = emulator["METAFLOW_DATASTORE_SYSROOT_S3"][len("s3://"):].split("/")[0]
    assert s3_client(emulator).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
