"""A disk that fills up, and a file size limit (``ulimit -f``) below an artifact's size, during a local run.

Each case runs ``Rscript flow.R run`` against a real small filesystem (a tmpfs of a few MB, mounted for the
test: it needs root) holding the run's scratch area (``TMPDIR``) or its datastore
(``METAFLOW_DATASTORE_SYSROOT_LOCAL``), or under a real ``RLIMIT_FSIZE``. What a user must read: one error
naming what was being written and where, that the disk is full (or the limit, in bytes), and how to fix
it; a non-zero exit, the run marked failed, nothing half written, and ``resume`` finishing the run once
the fix is made.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import assert_local_blobs_intact, local_datastore_files

from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.storage import LocalStorage

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")

BIG = 3_000_000  # random bytes: saveRDS cannot compress them
FLOW = """library(metaflow)
start <- function(self) {
  self$small <- 1:10
  self$big <- readBin("/dev/urandom", "raw", BIG_SIZE)
}
end <- function(self) cat("big has", length(self$big), "bytes\\n")
metaflow("DiskFlow") %>%
  step(step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
"""


class SmallDisk:
    """A tmpfs of ``size`` bytes at ``path``; ``fill()`` leaves about ``free`` bytes of it free."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        path.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a small filesystem (needs root): {mounted.stderr.strip()}")
        self.filler = path / "filler"

    def fill(self, free: int = 0) -> None:
        with open(self.filler, "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        os.truncate(self.filler, max(0, os.path.getsize(self.filler) - free))

    def free_space(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def disks(tmp_path):
    made: list[SmallDisk] = []

    def make(name: str, size: int) -> SmallDisk:
        made.append(SmallDisk(tmp_path / name, size))
        return made[-1]

    yield make
    for disk in made:
        disk.unmount()


class DiskFlow:
    def __init__(self, directory: Path, *, scratch: Path | None = None, datastore: Path | None = None) -> None:
        self.dir = directory
        self.script = directory / "disk_flow.R"
        self.script.write_text(FLOW.replace("BIG_SIZE", str(BIG)))
        self.scratch = scratch or directory / "scratch"
        self.scratch.mkdir(exist_ok=True)
        self.sysroot = datastore or directory
        self.root = self.sysroot / ".metaflow"
        self.ds = FlowDatastore(LocalStorage(self.root), "DiskFlow")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METAFLOW_"))}
        self.env = {**env, "TMPDIR": str(self.scratch), "METAFLOW_USER": "tester",
                    "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(self.sysroot)}

    def rscript(self, *args: str, limit: int | None = None, wrap: list[str] | None = None,
                ) -> subprocess.CompletedProcess:
        def limited() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        result = subprocess.run([*(wrap or []), "Rscript", str(self.script), *args], cwd=self.dir, env=self.env,
                                capture_output=True, text=True, timeout=300, preexec_fn=limited)
        self.output = result.stdout + result.stderr
        return result


def check_failed_cleanly(flow: DiskFlow) -> str:
    """The run failed in start, nothing of it half written; returns its id."""
    assert "Traceback" not in flow.output
    (run_id,) = flow.ds.run_ids()
    assert flow.ds.run_status(run_id)["successful"] is False
    assert not any(r["successful"] for t in flow.ds.task_ids(run_id, "start") for r in flow.ds.attempts(run_id, "start", t))
    assert local_datastore_files(flow.root)["temp"] == []
    assert_local_blobs_intact(flow.root)
    for blob in local_datastore_files(flow.root)["blobs"]:
        assert os.path.getsize(blob) < BIG
    return run_id


def check_resume_completes(flow: DiskFlow, origin: str) -> None:
    resumed = flow.rscript("resume")
    assert resumed.returncode == 0, flow.output
    assert f"big has {BIG} bytes" in flow.output
    (run_id,) = [r for r in flow.ds.run_ids() if r != origin]
    assert flow.ds.run_status(run_id)["successful"] is True


def test_a_full_datastore_at_the_start_of_a_run_is_one_error_naming_it(tmp_path, disks):
    disk = disks("datastore", 1 << 20)
    disk.fill()
    flow = DiskFlow(tmp_path, datastore=disk.path)
    result = flow.rscript("run")
    assert result.returncode == 4, flow.output
    assert "Traceback" not in flow.output
    assert "The disk is full" in flow.output and f"{disk.path}/.metaflow/DiskFlow/" in flow.output
    assert "the run's record" in flow.output
    assert "METAFLOW_DATASTORE_SYSROOT_LOCAL" in flow.output and "then start the run again" in flow.output


def test_a_datastore_that_fills_up_while_an_artifact_is_stored_fails_the_task_naming_it(tmp_path, disks):
    disk = disks("datastore", 8 << 20)
    flow = DiskFlow(tmp_path, datastore=disk.path)
    disk.fill(free=BIG // 2)  # room for the records, not for the big artifact
    result = flow.rscript("run")
    assert result.returncode == 1, flow.output
    assert "The disk is full" in flow.output and "artifact 'big' of step 'start'" in flow.output
    assert f"{disk.path}/.metaflow/DiskFlow/data/" in flow.output
    assert "METAFLOW_DATASTORE_SYSROOT_LOCAL" in flow.output and "then resume the run" in flow.output
    run_id = check_failed_cleanly(flow)
    (task_id,) = flow.ds.task_ids(run_id, "start")
    (failure,) = flow.ds.attempts(run_id, "start", task_id)
    assert failure["exception"]["class"][0] == "metaflow_disk_full"
    disk.free_space()
    check_resume_completes(flow, run_id)


def test_a_full_scratch_area_fails_the_task_naming_the_artifact_r_was_writing(tmp_path, disks):
    disk = disks("scratch", 8 << 20)
    flow = DiskFlow(tmp_path, scratch=disk.path)
    disk.fill(free=BIG // 2)
    result = flow.rscript("run")
    assert result.returncode == 1, flow.output
    assert "The disk is full" in flow.output and 'artifact "big" of step "start"' in flow.output
    assert f"{disk.path}/metaflow-r-" in flow.output  # the file R was writing, in the run's scratch area
    assert "TMPDIR" in flow.output and "then resume the run" in flow.output
    assert "error.json" not in flow.output and "outputs.json" not in flow.output
    run_id = check_failed_cleanly(flow)
    (task_id,) = flow.ds.task_ids(run_id, "start")
    (failure,) = flow.ds.attempts(run_id, "start", task_id)
    assert failure["exception"]["class"][0] == "metaflow_disk_full"
    (tmp_path / "roomy").mkdir()
    flow.env["TMPDIR"] = str(tmp_path / "roomy")  # the fix the message gives: a scratch area with room
    check_resume_completes(flow, run_id)


def test_a_full_scratch_area_before_the_backend_starts_is_one_error_naming_it(tmp_path, disks):
    """``Rscript flow.R run`` hands its command to the backend in a file under R's tempdir(), in TMPDIR."""
    disk = disks("scratch", 1 << 20)
    disk.fill()
    flow = DiskFlow(tmp_path, scratch=disk.path)
    result = flow.rscript("run")
    assert result.returncode != 0, flow.output
    assert "Traceback" not in flow.output and "JSONDecodeError" not in flow.output
    assert "The disk is full: the document" in flow.output and "TMPDIR" in flow.output
    assert "then start the run again" in flow.output
    assert "closing unused connection" not in flow.output
    assert flow.ds.run_ids() == []  # nothing started


def test_a_scratch_area_too_full_for_the_task_logs_says_so(tmp_path, disks):
    """The scratch area fills with the task's own output: its log could not be kept there."""
    disk = disks("scratch", 2 << 20)
    flow = DiskFlow(tmp_path, scratch=disk.path)
    flow.script.write_text(flow.script.read_text().replace(
        "self$small <- 1:10", 'for (i in 1:40000) cat(strrep("x", 99), "\\n")\n  self$small <- 1:10')
        .replace("BIG_SIZE", "10"))
    result = flow.rscript("run")
    assert result.returncode == 1, flow.output
    assert "The disk is full" in flow.output and "the output of step 'start'" in flow.output
    assert f"{disk.path}/metaflow-r-" in flow.output and "TMPDIR" in flow.output


def test_a_file_size_limit_below_an_artifact_says_which_limit_and_what_was_written(tmp_path):
    """``ulimit -f``: R is killed by SIGXFSZ writing the artifact; the failure says why, not "exit status 1"."""
    flow = DiskFlow(tmp_path)
    limit = 2_000_000
    result = flow.rscript("run", limit=limit)
    assert result.returncode == 1, flow.output
    assert "file size limit (ulimit -f) of 2,000,000 bytes" in flow.output
    assert "step 'start'" in flow.output and "artifact-2.rds" in flow.output
    assert "exit status 1" not in flow.output
    run_id = check_failed_cleanly(flow)
    (task_id,) = flow.ds.task_ids(run_id, "start")
    (failure,) = flow.ds.attempts(run_id, "start", task_id)
    assert failure["exception"]["class"][0] == "metaflow_file_too_large"
    check_resume_completes(flow, run_id)


def test_a_file_size_limit_met_by_a_writer_ignoring_sigxfsz_names_the_artifact(tmp_path):
    """R ignoring SIGXFSZ (its shell's ``trap '' XFSZ``) gets EFBIG writing an artifact: it says which one.
    (Local tasks do not ignore it: Python restores the signal for the processes it starts; see the test above.)"""
    code = ('options(cli.width = 10000); the <- metaflow:::the; the$task <- list(step = "start"); '
            'metaflow:::write_artifact(readBin("/dev/urandom", "raw", 3e6), "artifact-2.rds", "big")')
    result = subprocess.run(["sh", "-c", "trap '' XFSZ; ulimit -f 1953; exec \"$@\"", "sh", "Rscript", "-e", code],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "file size limit (ulimit -f) of 999,936 bytes" in output  # 1953 blocks of 512 bytes (sh counts so)
    assert 'Artifact "big" of step "start" could not be written to' in output and "artifact-2.rds" in output
    assert not (tmp_path / "artifact-2.rds").exists()  # nothing half written left
