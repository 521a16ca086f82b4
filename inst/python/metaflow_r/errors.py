"""The exception hierarchy: every user-facing failure is a MetaflowRError with an exit code.

The CLI prints ``str(error)`` (a problem statement plus bullets) and exits with ``error.exit_code``;
nothing the user can cause is ever shown as a Python traceback.
"""
from __future__ import annotations

from typing import Iterable


class MetaflowRError(Exception):
    """Base class. ``bullets`` are (kind, text) pairs; kind is "x" (what is wrong) or "i" (how to fix)."""

    exit_code = 1

    def __init__(self, message: str, bullets: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.bullets = list(bullets)

    def __str__(self) -> str:
        marks = {"x": "\u2716", "i": "\u2139", "*": "\u2022"}
        lines = [self.message] + [f"{marks.get(kind, kind)} {text}" for kind, text in self.bullets]
        return "\n".join(lines)


class UsageError(MetaflowRError):
    """A bad command line: unknown option, wrong parameter value."""

    exit_code = 2


class GraphError(MetaflowRError):
    """The flow's graph is not a valid Metaflow graph."""

    exit_code = 3


class DatastoreError(MetaflowRError):
    """The datastore is missing, unreadable, or does not hold what was asked for."""

    exit_code = 4


class ConfigurationError(MetaflowRError):
    """A required setting (environment variable or config file entry) is missing or invalid."""

    exit_code = 5


class RunFailed(MetaflowRError):
    """A run finished with at least one failed task."""

    exit_code = 1
