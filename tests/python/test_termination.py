"""However a local run ends, it takes everything it started with it, says why, and can be resumed.

Real `Rscript flow.R run` processes, stopped by the signals users send them: Ctrl-C (SIGINT), kill
(SIGTERM), a closed terminal (SIGHUP) and kill -9 (SIGKILL). The step that is running never ends by
itself and has started background processes of its own: one in its process group, one in a session of
its own (``processx``, as ``callr::r_bg()`` starts one).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import alive, eventually

from metaflow_r.core import processes
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.storage import LocalStorage
from metaflow_r.runtime.reaper import RUNTIME_ENDED

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")

STUCK = """library(metaflow)
start <- function(self) self$x <- 1
stuck <- function(self) {
  if (file.exists("fixed")) return(invisible())
  system("sleep 600 & echo $! > background.pid")
  cat(processx::process$new("sleep", "600", cleanup = FALSE)$get_pid(), file = "escaped.pid")
  cat(Sys.getpid(), file = "task.pid")
  cat(tempdir(), file = "tempdir.path")
  cat("stuck for good\\n")
  repeat Sys.sleep(1)
}
end <- function(self) cat("x is", self$x, "\\n")
metaflow("StuckFlow") %>%
  step(step = "start", r_function = start, next_step = "stuck") %>%
  step(step = "stuck", r_function = stuck, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


class StuckRun:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.script = directory / "stuck.R"
        self.script.write_text(STUCK)
        self.tmp = directory / "tmp"
        self.tmp.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METAFLOW_"))}
        self.env = {**env, "TMPDIR": str(self.tmp)}
        self.ds = FlowDatastore(LocalStorage(directory / ".metaflow"), "StuckFlow")

    def start(self) -> subprocess.Popen:
        self.out = open(self.dir / "out.txt", "w")
        process = subprocess.Popen(["Rscript", str(self.script), "run"], cwd=self.dir, env=self.env,
                                   stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        assert eventually(lambda: "stuck for good" in self.output(), 120), self.output()
        assert eventually(lambda: (self.dir / "background.pid").exists() and (self.dir / "escaped.pid").exists())
        return process

    def output(self) -> str:
        return (self.dir / "out.txt").read_text()

    def pids(self) -> dict[str, int]:
        fork = int(re.search(r"stuck/\d+ \(pid (\d+)\)", self.output()).group(1))
        return {"fork": fork, "task": int((self.dir / "task.pid").read_text()),
                "background": int((self.dir / "background.pid").read_text()),
                "escaped": int((self.dir / "escaped.pid").read_text())}

    def task_tempdir(self) -> Path:
        return Path((self.dir / "tempdir.path").read_text())

    def resume(self) -> subprocess.CompletedProcess:
        (self.dir / "fixed").write_text("")
        return subprocess.run(["Rscript", str(self.script), "resume"], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP", "SIGKILL"])
def test_a_terminated_run_takes_its_tasks_with_it_and_can_be_resumed(tmp_path, signal_name):
    run = StuckRun(tmp_path)
    process = run.start()
    pids = run.pids()
    process.send_signal(getattr(signal, signal_name))
    process.wait(timeout=30)
    for what, pid in pids.items():
        assert eventually(lambda: not alive(pid)), f"the {what} ({pid}) outlived the run"
    (run_id,) = run.ds.run_ids()
    assert eventually(lambda: run.ds.run_status(run_id) is not None)
    status = run.ds.run_status(run_id)
    assert status["successful"] is False and status["reason"] == RUNTIME_ENDED
    assert eventually(lambda: not list(run.tmp.glob("metaflow-r-*")))  # its scratch went too
    assert not run.task_tempdir().exists()  # and the task's tempdir() with it

    resumed = run.resume()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Cloned from run" in resumed.stdout and "x is 1" in resumed.stdout


def mentioning(text: str) -> list[int]:
    """The processes whose command line holds ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def test_a_run_killed_all_at_once_reads_as_failed_and_resumes(tmp_path):
    """The runtime, its reaper and the task SIGKILLed together, as an out-of-memory or cgroup kill
    or a power loss does: nothing is left to record the run's end."""
    run = StuckRun(tmp_path)
    process = run.start()
    (scratch,) = run.tmp.glob("metaflow-r-*")
    (reaper,) = mentioning(str(scratch))  # the reaper is told the run's scratch directory
    (run_id,) = run.ds.run_ids()
    runtime = run.ds.run_record(run_id)["runtime"]["pid"]  # the backend's process running the run
    pids = {**run.pids(), "Rscript": process.pid, "runtime": runtime, "reaper": reaper}
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
    for what, pid in pids.items():
        assert eventually(lambda: not alive(pid)), f"the {what} ({pid}) survived SIGKILL"
    status = run.ds.run_status(run_id)
    assert status is not None, "the run reads as running, although every process of it is gone"
    assert status["successful"] is False
    assert f"the process running it (pid {runtime} on " in status["reason"]

    resumed = run.resume()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"Cloned from run {run_id}" in resumed.stdout and "x is 1" in resumed.stdout
    assert not scratch.exists()  # what the dead run left in the temporary directory, the next run removed
    assert not run.task_tempdir().exists()


def test_ctrl_c_stops_the_run_says_so_and_marks_it_interrupted(tmp_path):
    run = StuckRun(tmp_path)
    process = run.start()
    pids = run.pids()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, run.output()
    output = run.output()
    assert "Task was stopped because the run was interrupted." in output
    assert "was interrupted; its tasks were stopped" in output and "resume" in output
    assert "another task failed" not in output and "Traceback" not in output
    for what, pid in pids.items():
        assert eventually(lambda: not alive(pid)), f"the {what} ({pid}) outlived the run"
    (run_id,) = run.ds.run_ids()
    status = run.ds.run_status(run_id)
    assert status["successful"] is False and status["reason"] == "the run was interrupted"
    assert run.resume().returncode == 0


BACKGROUND = """library(metaflow)
start <- function(self) {
  system("sleep 600 & echo $! > background.pid")
  job <- parallel::mcparallel(Sys.sleep(600))
  cat(job$pid, file = "job.pid")
  # a session of its own, as callr::r_bg() starts one
  cat(processx::process$new("sleep", "600", cleanup = FALSE)$get_pid(), file = "escaped.pid")
}
end <- function(self) cat("tempdir still there:", dir.exists(tempdir()), "\\n")
metaflow("LeftoverFlow") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


def run_script(directory: Path, name: str, code: str, workers: int = 1) -> subprocess.CompletedProcess:
    """``Rscript NAME run --max-workers N``: every task forked from the script's R."""
    script = directory / name
    script.write_text(code)
    return subprocess.run(["Rscript", str(script), "run", "--max-workers", str(workers)], cwd=directory,
                          capture_output=True, text=True, timeout=300)


def test_what_a_step_leaves_running_ends_with_the_task(tmp_path):
    done = run_script(tmp_path, "leftover.R", BACKGROUND)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("background.pid", "job.pid", "escaped.pid"):
        pid = int((tmp_path / name).read_text())
        assert eventually(lambda: not alive(pid), 10), f"{name}: {pid} outlived its task"


SHARED_TEMPDIR = """library(metaflow)
start <- function(self) self$items <- 1:3
body <- function(self) {
  self$seen <- list.files(tempdir())
  writeLines("mine", file.path(tempdir(), paste0("task-", self$input)))
  self$tempdir <- tempdir()
}
join <- function(self, inputs) {
  self$seen <- gather_inputs(inputs, "seen")
  self$dirs <- unique(unlist(gather_inputs(inputs, "tempdir")))
}
metaflow("TempdirFlow") %>%
  step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%
  step(step = "body", r_function = body, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = function(self) cat("tempdirs:", length(self$dirs), "seen:", lengths(self$seen))) %>%
  run()
"""


@pytest.mark.parametrize("workers", [1, 3])
def test_no_task_sees_what_another_wrote_under_tempdir(tmp_path, workers):
    """Every task is forked from the script's R, one after another or at once: each has a tempdir() of its own."""
    done = run_script(tmp_path, "tempdir.R", SHARED_TEMPDIR, workers)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tempdirs: 3 seen: 0 0 0" in done.stdout, done.stdout


QUITS = """library(metaflow)
start <- function(self) self$items <- 1:3
body <- function(self) if (self$input == 2) quit(status = 0) else self$ok <- TRUE
join <- function(self, inputs) NULL
metaflow("QuitFlow") %>%
  step(step = "start", r_function = start, next_step = "body", foreach = "items") %>%
  step(decorator("catch", var = "problem"), step = "body", r_function = body, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = function(self) cat("tempdir there:", dir.exists(tempdir()), "\\n")) %>%
  run()
"""


def test_quit_in_a_step_is_an_error_that_says_so_and_harms_no_other_task(tmp_path):
    done = run_script(tmp_path, "quits.R", QUITS)
    assert done.returncode == 0, done.stdout + done.stderr  # decorator("catch") took the failure
    assert "Error in step 'body': Step \"body\" called `quit(status = 0)`." in done.stdout
    assert "exit status 1" in done.stdout and "tempdir there: TRUE" in done.stdout
    ds = FlowDatastore(LocalStorage(tmp_path / ".metaflow"), "QuitFlow")
    (run_id,) = ds.run_ids()
    failures = [a for t in ds.task_ids(run_id, "body") for a in ds.attempts(run_id, "body", t)
                if not a["successful"]]
    assert [f["exception"]["class"][0] for f in failures] == ["metaflow_quit_error"]


def test_stale_scratch_of_dead_runs_is_swept(tmp_path):
    scratch = Path(tempfile.gettempdir()) / "metaflow-r-123-stale"
    scratch.mkdir(exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = {**processes.identity(), "pid": dead.pid}  # on this host, and that process has ended
    (scratch / ".owners").write_text(json.dumps([gone, gone]))
    (scratch / "context.json").write_text(json.dumps({}))
    script = tmp_path / "quits.R"
    script.write_text(QUITS)
    subprocess.run(["Rscript", str(script), "run"], cwd=tmp_path, capture_output=True, timeout=300)
    assert not scratch.exists()
