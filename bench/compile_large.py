"""Validate and compile a generated 1,000-step flow (a chain with a branch and a foreach every 50 steps).

Target: under 1 s on this machine. Usage: .venv/bin/python bench/compile_large.py [steps]
"""
from __future__ import annotations

import json
import statistics
import sys
import time

from metaflow_r.aws.step_functions.compile import CompileSettings, compile_state_machine
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec


def generated_spec(steps: int) -> dict:
    """start -> s1 -> ... -> end; every 50th step opens a branch (two steps, then a join) or a foreach."""
    spec_steps = [{"name": "start", "next": []}]
    i = 1
    while len(spec_steps) < steps - 1:
        if i % 100 == 0:
            names = [f"b{i}a", f"b{i}b", f"j{i}"]
            spec_steps[-1]["next"] = names[:2]
            spec_steps += [{"name": names[0], "next": [names[2]]}, {"name": names[1], "next": [names[2]]},
                           {"name": names[2], "next": [], "join": True}]
        elif i % 50 == 0:
            names = [f"f{i}", f"fj{i}"]
            spec_steps[-1]["next"] = [names[0]]
            spec_steps[-1]["foreach"] = "items"
            spec_steps += [{"name": names[0], "next": [names[1]]}, {"name": names[1], "next": [], "join": True}]
        else:
            name = f"s{i}"
            spec_steps[-1]["next"] = [name]
            spec_steps.append({"name": name, "next": []})
        i += 1
    spec_steps[-1]["next"] = ["end"]
    spec_steps.append({"name": "end", "next": []})
    # Every field the spec schema requires (as flow_spec() writes them).
    steps_out = [{"join": False, "foreach": None, "decorators": [], **s} for s in spec_steps]
    return {"name": "LargeFlow", "script": None, "parameters": [], "decorators": [], "steps": steps_out,
            "package_suffixes": []}


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    raw = generated_spec(steps)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        graph = FlowGraph(parse_spec(raw))
        definition = compile_state_machine(graph, CompileSettings(
            job_queue="queue", job_definitions={s["name"]: "job-definition" for s in raw["steps"]},
            code_url="s3://bucket/code.tgz", code_sha="0" * 64, dynamo_table="table",
            datastore_root="s3://bucket/metaflow"))
        size = len(json.dumps(definition, separators=(",", ":")))
        timings.append(time.perf_counter() - started)
    print(f"{len(raw['steps'])}-step flow: validate + compile median {statistics.median(timings) * 1000:.1f} ms "
          f"(target < 1000 ms); definition {size:,} bytes (AWS limit 1,048,576)")


if __name__ == "__main__":
    main()
