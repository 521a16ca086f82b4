"""Which attempt a Batch job of a local run (``run --with batch``) runs: told explicitly, in its environment.

A Step Functions task derives its identity from the execution (step_functions/task_identity.py); a local run's runtime has
already decided everything, so it tells the job: run id, step, task id, parents, split index, retry count
and, for the fallback attempt of decorator("catch"), the error it records. Batch caps a SubmitJob request
at 30 KiB, so the parents are written compactly (a foreach join's task ids as ranges: ``body/3-102``) and
the caught error is shortened to fit.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

from metaflow_r.aws.batch import environment as env
from metaflow_r.core.errors import UsageError
from metaflow_r.runtime import task as tasks

# SubmitJob's whole request must stay under 30 KiB (AWS Batch quotas); the job's identity gets this much.
MAX_IDENTITY_BYTES = 16 * 1024
MAX_CAUGHT_BYTES = 8 * 1024


def job_environment(spec: tasks.AttemptSpec) -> dict[str, str]:
    """The variables that tell a job its attempt (``told_attempt`` reads them back)."""
    values = {env.RUN_ID: spec.run_id, env.STEP: spec.step, env.TASK_ID: spec.task_id,
              env.INPUT_PATHS: compact_paths(spec.run_id, spec.input_paths),
              env.SPLIT_INDEX: "" if spec.split_index is None else str(spec.split_index),
              env.RETRY_COUNT: str(spec.retry_count)}
    if spec.caught is not None:
        values[env.CAUGHT] = json.dumps(shortened(spec.caught), separators=(",", ":"))
    size = sum(len(k) + len(v.encode()) for k, v in values.items())
    if size > MAX_IDENTITY_BYTES:
        raise UsageError(f"Task {spec.pathspec} has too many parents to tell its Batch job ({size:,} bytes; a "
                         f"Batch job accepts about {MAX_IDENTITY_BYTES:,}).",
                         [("i", "Run the flow without --with batch, or deploy it with step-functions create.")])
    return values


def told_attempt(environ: Mapping[str, str] = os.environ) -> tasks.AttemptSpec | None:
    """The attempt a job was told to run, or None for a job of a Step Functions execution."""
    task_id = environ.get(env.TASK_ID)
    if not task_id:
        return None
    run_id = environ[env.RUN_ID]
    split = environ.get(env.SPLIT_INDEX, "")
    caught = environ.get(env.CAUGHT)
    return tasks.AttemptSpec(run_id, environ[env.STEP], task_id,
                          expand_paths(run_id, environ.get(env.INPUT_PATHS, "")),
                          int(split) if split else None, int(environ.get(env.RETRY_COUNT, "0")),
                          json.loads(caught) if caught else None)


def compact_paths(run_id: str, paths: list[str]) -> str:
    """``run/body/3, run/body/4, run/body/5, run/other/9`` as ``body/3-5;other/9`` (order kept)."""
    groups: list[tuple[str, list[str]]] = []
    for path in paths:
        run, step, task_id = path.split("/")
        if run != run_id:
            raise ValueError(f"{path} is not a task of run {run_id}")
        if groups and groups[-1][0] == step:
            groups[-1][1].append(task_id)
        else:
            groups.append((step, [task_id]))
    return ";".join(f"{step}/{_ranges(ids)}" for step, ids in groups)


def expand_paths(run_id: str, text: str) -> list[str]:
    paths = []
    for group in filter(None, text.split(";")):
        step, _, ids = group.partition("/")
        for part in ids.split(","):
            first, dash, last = part.partition("-")
            if dash and first.isdigit() and last.isdigit():
                paths += [f"{run_id}/{step}/{i}" for i in range(int(first), int(last) + 1)]
            else:
                paths.append(f"{run_id}/{step}/{part}")
    return paths


def _ranges(ids: list[str]) -> str:
    """Runs of consecutive numeric ids as ``first-last``; any other id as it is (a resumed production
    run's clones keep ids such as ``body-3``, which hold a dash)."""
    parts: list[str] = []
    start = previous = None
    for task_id in [*ids, None]:
        if task_id is not None and task_id.isdigit() and previous is not None and int(task_id) == previous + 1:
            previous = int(task_id)
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = previous = None
        if task_id is None:
            break
        if task_id.isdigit():
            start = previous = int(task_id)
        else:
            parts.append(task_id)
    return ",".join(parts)


def shortened(error: dict[str, Any]) -> dict[str, Any]:
    """A task error document small enough for a job's environment: the message cut, the traceback's
    innermost frames kept."""
    error = dict(error, message=str(error.get("message", ""))[:2000])
    traceback = list(error.get("traceback") or [])
    while traceback and len(json.dumps(dict(error, traceback=traceback))) > MAX_CAUGHT_BYTES:
        traceback = traceback[1:]
    return dict(error, traceback=[str(frame)[:500] for frame in traceback])
