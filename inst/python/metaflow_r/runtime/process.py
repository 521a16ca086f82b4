"""Each attempt a process of its own: ``Rscript flow.R task --context FILE`` (inside a Batch job)."""
from __future__ import annotations

import subprocess
from typing import Any

from metaflow_r.runtime.events import Event, Exited, task_line
from metaflow_r.runtime.pipes import STREAMS, Pipes, close_pipes, kill_group, kill_task_processes


class SubprocessLauncher:
    """Each attempt is ``Rscript flow.R task --context FILE``, a process of its own."""

    cleanup_command = None  # each process leads its own process group, which is killed with it

    def __init__(self, rscript: str, script: str, cwd: str, env: dict[str, str]) -> None:
        self.command = [rscript, script, "task", "--context"]
        self.cwd = cwd
        self.env = env
        self.pipes = Pipes()
        self.processes: dict[int, tuple[subprocess.Popen, Any]] = {}

    def launch(self, attempt: Any, context_file: str | None) -> str:
        assert context_file is not None
        process = subprocess.Popen([*self.command, context_file], cwd=self.cwd, env=self.env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        self.processes[process.pid] = (process, attempt)
        self.pipes.watch(process, process.pid)
        return f"pid {process.pid}"

    def poll(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        for pid, stream in self.pipes.ready(timeout):
            process, attempt = self.processes[pid]
            events += [task_line(attempt, stream, line) for line in self.pipes.read(process, stream)]
        for pid, (process, attempt) in list(self.processes.items()):
            code = process.poll()
            if code is None:
                continue
            # The task ended: what it started ends with it (a background process holding its pipes would
            # otherwise hold the attempt open), and all it wrote is in its pipes.
            del self.processes[pid]
            kill_group(process)
            kill_task_processes(attempt)
            for stream in STREAMS:
                events += [task_line(attempt, stream, line) for line in self.pipes.read(process, stream, drain=True)]
            events.append(Exited(attempt, code if code >= 0 else 128 - code))
        return events

    def kill(self, attempt: Any) -> None:
        for process, running in self.processes.values():
            if running is attempt:
                kill_group(process)
                kill_task_processes(attempt)

    def close(self) -> None:
        for process, attempt in list(self.processes.values()):
            kill_group(process)
            kill_task_processes(attempt)
            process.wait()
            close_pipes(process)
        self.processes.clear()
        self.pipes.close()
