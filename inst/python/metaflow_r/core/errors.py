"""The exception hierarchy: every user-facing failure is a MetaflowRError with an exit code.

The catalogue (``data/errors.json``) is the one place that names each class: its R condition class, its
parent and its exit code; R's errors (R/errors.R) read the same table, so a mistake is the same class on
both sides. Each Python class below takes its ``r_class`` and ``exit_code`` from its entry, and its
Python base must be the entry's parent.

The CLI prints ``str(error)`` (a problem statement plus bullets) and exits with ``error.exit_code``;
nothing the user can cause is ever shown as a Python traceback. In R, the error becomes a condition of
its R classes, so ``tryCatch(..., metaflow_graph_error = ...)`` works on errors raised here.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, TypeVar

from metaflow_r.core import DATA_DIR

CATALOGUE: dict[str, Any] = json.loads((DATA_DIR / "errors.json").read_text(encoding="utf-8"))
_BY_PYTHON = {entry["python"]: entry for entry in CATALOGUE["conditions"] if entry["python"]}
TASK_FAILURES = frozenset(entry["class"] for entry in CATALOGUE["task_failures"])
_E = TypeVar("_E", bound=type)


def _catalogued(cls: _E) -> _E:
    """Give ``cls`` its catalogue entry's R class and exit code; its Python base must be the entry's parent."""
    entry = _BY_PYTHON[cls.__name__]
    base = cls.__mro__[1]
    parent = getattr(base, "r_class", None)
    if parent != entry["parent"]:
        raise TypeError(f"{cls.__name__} derives from {base.__name__}, but data/errors.json gives its parent as "
                        f"{entry['parent']}")
    cls.r_class = entry["class"]
    cls.exit_code = entry["exit_code"]
    return cls


@_catalogued
class MetaflowRError(Exception):
    """Base class. ``bullets`` are (kind, text) pairs; kind is "x" (what is wrong) or "i" (how to fix)."""

    exit_code: int
    r_class: str

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


@_catalogued
class UsageError(MetaflowRError):
    """A bad command line or call: unknown option, wrong value."""


@_catalogued
class ParameterError(UsageError):
    """A parameter defined the wrong way (a reserved name, an unknown type) or given a value it cannot take."""


@_catalogued
class NotDeployed(UsageError):
    """A command that needs the flow on AWS Step Functions, for a flow that is not deployed there."""


@_catalogued
class QuotaExceeded(UsageError):
    """A deployment that would break an AWS quota at the width it is planned for."""


@_catalogued
class AwsRuleError(UsageError):
    """A request that breaks a rule AWS documents for it (aws/requests/): refused before it is sent, and by the
    emulator when it receives one."""


@_catalogued
class GraphError(MetaflowRError):
    """The flow's graph is not a valid Metaflow graph."""


@_catalogued
class DecoratorError(GraphError):
    """A decorator that does not exist, decorates the wrong thing, or has a wrong argument."""


@_catalogued
class DatastoreError(MetaflowRError):
    """The datastore is missing, unreadable, or does not hold what was asked for."""


@_catalogued
class DamagedRecord(DatastoreError):
    """A record that exists but cannot be read; scans skip it and say so (``FlowDatastore.damaged``)."""


@_catalogued
class DiskFull(DatastoreError):
    """A write failed for want of room (ENOSPC, or EDQUOT: a quota), in the datastore or the run's scratch
    area; core/write_failures.py words it: what was being written, where, and how to make room."""


@_catalogued
class FileTooLarge(DatastoreError):
    """A file outgrew the file size limit (RLIMIT_FSIZE, ``ulimit -f``): EFBIG, or SIGXFSZ killed its writer."""


@_catalogued
class ConfigurationError(MetaflowRError):
    """A required setting (environment variable or config file entry) is missing or invalid."""


@_catalogued
class MissingRPackages(ConfigurationError):
    """The image a flow's Batch jobs run in lacks R packages its steps use (aws/batch/image_packages.py):
    found before any AWS call, rather than as "there is no package called ..." in a job's log."""


@_catalogued
class AwsError(MetaflowRError):
    """An AWS call failed; the message names the call and what to do. ``code`` is AWS's error code, if any."""

    code: str | None = None


@_catalogued
class InstallationError(MetaflowRError):
    """A part of the backend that is not installed, e.g. the emulator's moto (an optional extra)."""


@_catalogued
class ProtocolError(MetaflowRError):
    """A document between R and Python does not follow its schema: the two sides come from different versions."""


@_catalogued
class RunFailed(MetaflowRError):
    """A run finished with at least one failed task."""


@_catalogued
class RunInterrupted(RunFailed):
    """A run stopped by the user (Ctrl-C): its tasks were stopped and it is marked failed."""


@_catalogued
class ForeachError(MetaflowRError):
    """A foreach that cannot run as written (R's tasks raise it for a variable that cannot be split over)."""


@_catalogued
class ForeachTooWide(ForeachError):
    """A foreach produced more items than the deployment was planned for (--max-num-splits): every retry
    would produce as many, so its job exits with a status its retry strategy does not retry."""
