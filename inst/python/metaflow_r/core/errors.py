"""The exception hierarchy: every user-facing failure is a MetaflowRError with an exit code.

The CLI prints ``str(error)`` (a problem statement plus bullets) and exits with ``error.exit_code``;
nothing the user can cause is ever shown as a Python traceback. In R, each class becomes an R condition
class (``r_class``), so `tryCatch(..., metaflow_graph_error = ...)` works on errors raised here.
"""
from __future__ import annotations

from typing import Any, Iterable


class MetaflowRError(Exception):
    """Base class. ``bullets`` are (kind, text) pairs; kind is "x" (what is wrong) or "i" (how to fix)."""

    exit_code = 1
    r_class = "metaflow_error"

    def __init__(self, message: str, bullets: Iterable[tuple[str, str]] = (),
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.bullets = list(bullets)
        self.data = dict(data or {})  # fields the R condition carries, e.g. a failed run's run_id and step

    def __str__(self) -> str:
        marks = {"x": "\u2716", "i": "\u2139", "*": "\u2022"}
        lines = [self.message] + [f"{marks.get(kind, kind)} {text}" for kind, text in self.bullets]
        return "\n".join(lines)

    @classmethod
    def r_classes(cls) -> list[str]:
        """The R condition classes of this error, most specific first (e.g. metaflow_graph_error, metaflow_error)."""
        found = [c.r_class for c in cls.__mro__ if "r_class" in c.__dict__]
        return list(dict.fromkeys(found))


class UsageError(MetaflowRError):
    """A bad command line: unknown option, wrong parameter value."""

    exit_code = 2
    r_class = "metaflow_usage_error"


class GraphError(MetaflowRError):
    """The flow's graph is not a valid Metaflow graph."""

    exit_code = 3
    r_class = "metaflow_graph_error"


class DatastoreError(MetaflowRError):
    """The datastore is missing, unreadable, or does not hold what was asked for."""

    exit_code = 4
    r_class = "metaflow_datastore_error"


class ConfigurationError(MetaflowRError):
    """A required setting (environment variable or config file entry) is missing or invalid."""

    exit_code = 5
    r_class = "metaflow_configuration_error"


class RunFailed(MetaflowRError):
    """A run finished with at least one failed task."""

    exit_code = 1
    r_class = "metaflow_run_failed"


class RunInterrupted(RunFailed):
    """A run stopped by the user (Ctrl-C): its tasks were stopped and it is marked failed."""

    exit_code = 130  # as a shell reports a command ended by SIGINT
    r_class = "metaflow_run_interrupted"


class AwsError(MetaflowRError):
    """An AWS call failed; the message names the call and what to do."""

    exit_code = 6
    r_class = "metaflow_aws_error"


class ProtocolError(MetaflowRError):
    """A document between R and Python does not follow its schema: the two sides come from different versions."""

    exit_code = 7
    r_class = "metaflow_protocol_error"
