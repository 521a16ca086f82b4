"""Each task's random-number stream: the same draws in a task however the run is run, independent across tasks.

A run has a seed (``run --seed``, ``metaflow(seed =)``, or one drawn at random and recorded with the run). A
task's stream follows from that seed and the task's position in the graph, never from which process or
job runs it, or when: its step, and the foreach indices of the splits it is in. The tasks of one foreach
take consecutive L'Ecuyer-CMRG streams, as ``parallel::nextRNGStream`` gives them (R: task-rng.R): one base
seed per foreach (the run's seed, the step and the indices of the enclosing foreaches, hashed), and stream
``index + 1`` from it for the task at ``index``.
"""
from __future__ import annotations

import hashlib
import secrets
from typing import Any

SEED_LIMIT = 2**31 - 1  # set.seed() takes an R integer
# `step-functions trigger --seed N` passes the run's seed to its start task in the execution's Parameters,
# under a key no parameter can have (a parameter's name is letters, digits and underscores).
SEED_KEY = "metaflow.seed"


def new_run_seed() -> int:
    """A seed for a run given none: its tasks' streams stay independent from run to run, and the recorded
    seed reproduces them."""
    return secrets.randbelow(SEED_LIMIT - 1) + 1


def task_stream(run_seed: int, step: str, split_stack: list[dict[str, Any]]) -> dict[str, int]:
    """``{"seed": s, "stream": k}``: the task's stream is ``set.seed(s, kind = "L'Ecuyer-CMRG")`` advanced by
    ``k`` streams."""
    indices = [int(frame["index"]) for frame in split_stack if frame.get("kind") == "foreach"]
    enclosing, own = (indices[:-1], indices[-1] + 1) if indices else ([], 0)
    identity = f"{run_seed}/{step}/{','.join(map(str, enclosing))}"
    digest = hashlib.sha256(identity.encode()).digest()
    return {"seed": int.from_bytes(digest[:4], "big") % SEED_LIMIT, "stream": own}
