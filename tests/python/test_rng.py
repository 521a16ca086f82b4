"""Each task's random-number stream (core/rng.py): fixed by the run's seed and the task's place in the graph."""
from __future__ import annotations

from metaflow_r.core.rng import SEED_LIMIT, new_run_seed, task_stream


def foreach(index: int, step: str = "start") -> dict:
    return {"kind": "foreach", "step": step, "index": index}


def test_a_foreach_takes_consecutive_streams_of_one_seed_as_parallel_gives_them():
    streams = [task_stream(7, "fit", [foreach(i)]) for i in range(5)]
    assert {s["seed"] for s in streams} == {streams[0]["seed"]}
    assert [s["stream"] for s in streams] == [1, 2, 3, 4, 5]
    assert task_stream(7, "start", []) == {"seed": task_stream(7, "start", [])["seed"], "stream": 0}


def test_steps_enclosing_foreaches_and_seeds_each_give_other_streams():
    seeds = {task_stream(7, "fit", [foreach(0)])["seed"], task_stream(7, "score", [foreach(0)])["seed"],
             task_stream(8, "fit", [foreach(0)])["seed"],
             task_stream(7, "fit", [foreach(1, "start"), foreach(0, "outer")])["seed"],
             task_stream(7, "fit", [foreach(2, "start"), foreach(0, "outer")])["seed"]}
    assert len(seeds) == 5
    # A branch frame is no foreach: its step's name already tells the branches apart.
    branch = {"kind": "branch", "step": "start", "index": 1}
    assert task_stream(7, "a", [branch]) == task_stream(7, "a", [])


def test_a_new_run_seed_is_one_set_seed_takes():
    assert all(1 <= new_run_seed() < SEED_LIMIT for _ in range(100))
    assert all(0 <= task_stream(s, "x", [])["seed"] < SEED_LIMIT for s in range(1, 200))
