"""A launcher for a run whose steps run in two places: the steps with decorator("batch") as Batch jobs, the
others in forks of the run's warm R, as Metaflow runs a @batch step of a local run."""
from __future__ import annotations

from typing import Any, Collection

from metaflow_r.runtime.events import AttemptLauncher, Event


class StepRouter:
    """Sends each attempt to the launcher of its step, and merges what both report."""

    def __init__(self, local: AttemptLauncher, remote: AttemptLauncher, remote_steps: Collection[str]) -> None:
        self.local = local
        self.remote = remote
        self.remote_steps = frozenset(remote_steps)
        self.cleanup_command = remote.cleanup_command  # the forks the reaper kills itself

    def _of(self, attempt: Any) -> AttemptLauncher:
        return self.remote if attempt.spec.step in self.remote_steps else self.local

    def launch(self, attempt: Any, context_file: str | None) -> str | None:
        return self._of(attempt).launch(attempt, context_file)

    def poll(self, timeout: float) -> list[Event]:
        # Each waits half the time when it has nothing to say, so neither holds up the other's news.
        return self.local.poll(timeout / 2) + self.remote.poll(timeout / 2)

    def kill(self, attempt: Any) -> None:
        self._of(attempt).kill(attempt)

    def close(self) -> None:
        try:
            self.local.close()
        finally:
            self.remote.close()
