"""The written protocol between R and Python: the documents that cross the language boundary.

Each document has one JSON Schema in ``data/schemas/<name>.json``, and the constants both sides use (file
names, the variable naming the task channel) are in ``data/protocol.json``; R reads the same files. Python checks
what R wrote before trusting it and what it writes before R reads it, so a drift between the two sides is
one clear error naming the document and the field, never a wrong result.

    spec        R -> Python   the flow's graph, parameters and decorators (``flow_spec()`` in R/run.R)
    context     Python -> R   one task attempt's inputs (``task.prepare``; read by R/task.R)
    outputs     R -> Python   what a task that ended well produced (R/task.R; committed by ``task.commit``)
    task_error  R -> Python   why a task failed: class, message, call, traceback (R/task.R)
    attempt     Python -> R   a committed attempt record, DONE.json (read by the Client API)
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from metaflow_r.core import DATA_DIR
from metaflow_r.core.errors import ProtocolError

SCHEMA_DIR = DATA_DIR / "schemas"
DOCUMENTS = ("spec", "context", "outputs", "task_error", "attempt")


@lru_cache(maxsize=1)
def constants() -> dict[str, Any]:
    return json.loads((DATA_DIR / "protocol.json").read_text(encoding="utf-8"))


# Names the file descriptors of the task channel (runtime/forks.py) a worker R inherits: "requests,replies".
TASK_CHANNEL_VARIABLE: str = constants()["task_channel_variable"]
# The first line a task prints on stdout, once R runs it: its timeout counts from here, not from R's start-up.
TASK_START_MARKER: bytes = constants()["task_start_marker"].encode()
# Set by the task to its output directory: every process it starts inherits it, and ends with the task.
TASK_PROCESS_MARK: str = constants()["task_process_mark"]
CONTEXT_FILE: str = constants()["files"]["context"]
OUTPUTS_FILE: str = constants()["files"]["outputs"]
TASK_ERROR_FILE: str = constants()["files"]["task_error"]


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _validator(name: str):
    # jsonschema is imported on first use: a command that crosses no document never pays for it.
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    registry = Registry().with_resources(
        (f"{other}.json", Resource.from_contents(schema(other))) for other in DOCUMENTS)
    return Draft202012Validator(schema(name), registry=registry)


def problems(name: str, document: Any) -> list[str]:
    """Every way ``document`` breaks the ``name`` schema, as "where: what" lines (none when it is valid)."""
    found = []
    for error in sorted(_validator(name).iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(part) for part in error.absolute_path) or "(the document)"
        found.append(f"{where}: {error.message[:300]}")
    return found


def check(name: str, document: Any, source: str) -> Any:
    """``document`` itself when it follows the ``name`` schema; ProtocolError naming ``source`` otherwise."""
    found = problems(name, document)
    if found:
        raise ProtocolError(
            f"The {name} document {source} does not follow the protocol between R and Python.",
            [("x", line) for line in found[:5]]
            + [("i", "The R package and the Python backend must come from the same version: after installing the "
                     "package, run metaflow::install_metaflow() (in a clone: make setup; for Batch: rebuild the "
                     "image).")])
    return document


def read(name: str, path: str | Path) -> Any:
    """Read and check a document a task left in a file."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"The {name} document {path} cannot be read: {exc}.") from None
    return check(name, document, str(path))


def write(name: str, document: Any, path: str | Path) -> None:
    """Check a document, then write it for R to read."""
    check(name, document, str(path))
    Path(path).write_text(json.dumps(document), encoding="utf-8")
