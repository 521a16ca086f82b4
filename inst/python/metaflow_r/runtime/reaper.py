"""A local run's reaper: ends what the run started when the process running it ends without finishing.

``Rscript flow.R run`` may be killed (SIGKILL), terminated (SIGTERM) or lose its terminal (SIGHUP); none
of these lets it clean up. So each local run starts this small process, in a session of its own, with a
pipe from the runtime on its stdin. The runtime names each task's fork as it starts (a worker R's process
group too, and each job of a launcher whose attempts run elsewhere, such as ``run --with batch``'s Batch
jobs, as it is submitted) and says ``done`` when the run ended normally. When the pipe closes without
``done``, however the runtime died, the reaper kills every fork and everything the tasks started (by pid,
process group, and the tasks' mark), runs the launcher's cleanup command with the jobs still going
(which terminates them), marks the run failed with the reason, and removes the run's scratch directory,
so nothing keeps running and ``resume`` continues it.
The reaper knows no AWS: the command comes from the launcher.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from typing import Any

from metaflow_r.core.processes import kill_marked
from metaflow_r.core.protocol import TASK_PROCESS_MARK

RUNTIME_ENDED = "interrupted: the process running it ended before the run did (killed, or its terminal closed)"


class Reaper:
    """The runtime's end of the pipe."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    @classmethod
    def start(cls, storage_kind: str, storage_root: str, flow: str, run_id: str, scratch: str,
              env: dict[str, str], cleanup_command: list[str] | None = None) -> "Reaper":
        """``cleanup_command``: run with the ids of the jobs still going if the runtime dies."""
        job = json.dumps({"storage": storage_kind, "root": storage_root, "flow": flow, "run_id": run_id,
                          "scratch": scratch, "cleanup": cleanup_command})
        process = subprocess.Popen([sys.executable, "-c", "import sys; from metaflow_r.runtime.reaper import main; "
                                    "sys.exit(main())", job], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
        return cls(process)

    def tell(self, line: str) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(line.encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reaper itself is gone: nothing more to tell it

    def fork_started(self, pid: int) -> None:
        self.tell(f"fork {pid}")

    def fork_ended(self, pid: int) -> None:
        self.tell(f"fork-gone {pid}")

    def group_started(self, pgid: int) -> None:
        self.tell(f"group {pgid}")

    def group_ended(self, pgid: int) -> None:
        self.tell(f"gone {pgid}")

    def job_submitted(self, job_id: str) -> None:
        self.tell(f"job {job_id}")

    def job_finished(self, job_id: str) -> None:
        self.tell(f"job-gone {job_id}")

    def done(self) -> None:
        """The run ended normally: the reaper leaves without touching anything."""
        self.tell("done")
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


def reap(job: dict[str, Any], lines) -> bool:
    """Follow the runtime's messages; True when it said it was done, False after cleaning up for it."""
    groups: set[int] = set()
    forks: set[int] = set()
    jobs: set[str] = set()
    for line in lines:
        word, _, value = line.strip().partition(" ")
        if word == "done":
            return True
        if word == "group":
            groups.add(int(value))
        elif word == "gone":
            groups.discard(int(value))
        elif word == "fork":
            forks.add(int(value))
        elif word == "fork-gone":
            forks.discard(int(value))
        elif word == "job":
            jobs.add(value)
        elif word == "job-gone":
            jobs.discard(value)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in forks:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    kill_marked(TASK_PROCESS_MARK, job["scratch"])  # what tasks started in sessions of their own
    if jobs and job.get("cleanup"):
        subprocess.run([*job["cleanup"], *sorted(jobs)], stdin=subprocess.DEVNULL, check=False)
    from metaflow_r.datastore.flow import FlowDatastore, storage_for

    FlowDatastore(storage_for(job["storage"], job["root"]), job["flow"]).finish_run(job["run_id"], False,
                                                                                    reason=RUNTIME_ENDED)
    shutil.rmtree(job["scratch"], ignore_errors=True)
    return False


def main() -> int:
    # The terminal's signals are for the runtime, not for the process that cleans up after it.
    for name in ("SIGINT", "SIGHUP", "SIGTERM"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    reap(json.loads(sys.argv[1]), sys.stdin)
    return 0


