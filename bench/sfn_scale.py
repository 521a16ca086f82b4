"""What one run of a foreach flow costs on AWS Step Functions, by width and construct, against Python Metaflow.

The flow is compare_metaflow.py's WideFlow: start makes N items, a one-step body runs per item, then a join
and end. For each width (10, 1,000, 100,000) and each construct this package compiles a foreach to (inline
Map, Batch array jobs, distributed Map, and what `--foreach-mode auto` picks), and for Python Metaflow's own
`step-functions create --only-json` (its default inline Map, and --use-distributed-map), it prints:

* state transitions of one run (what Standard workflows bill) and their price at $0.025 per 1,000;
* history events of the largest execution (the run's own, or a child execution of a distributed Map);
* Batch jobs run, and SubmitJob calls (an array job is one call for up to 10,000 jobs);
* the AWS quotas the run would break (history 25,000 events, state payload 256 KiB, DynamoDB item 400 KB).

All figures come from the quota model (inst/python/metaflow_r/quota.py), which walks a definition's success
path; tests/python/test_foreach_scale.py checks its counts against the emulator's execution histories.
Python Metaflow's definitions are made offline (bench/metaflow_sfn_json.py: its AWS clients talk to moto).

    .venv/bin/python bench/sfn_scale.py            # needs bench/.venv-metaflow (bench/compare_metaflow.sh
                                                   # makes it; this script adds moto to it)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from metaflow_r.aws.step_functions.compile import CompileSettings, compile_state_machine
from metaflow_r.aws.step_functions.deploy import DeploySettings, plan_deployment
from metaflow_r.aws.step_functions.quota import (
    DYNAMODB_ITEM_BYTES,
    HISTORY_EVENTS,
    MAX_PARAMETERS_BYTES,
    PRICE_PER_1000_TRANSITIONS,
    STATE_PAYLOAD_BYTES,
    QuotaExceeded,
    check,
    estimate,
    execution_costs,
    usd,
)
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec

HERE = Path(__file__).resolve().parent
WIDTHS = (10, 1_000, 100_000)
MAX_WORKERS = 100
SPEC = {"name": "WideFlow", "script": None, "parameters": [], "decorators": [], "package_suffixes": [], "steps": [
    {"name": "start", "next": ["body"], "join": False, "foreach": "items", "decorators": []},
    {"name": "body", "next": ["join"], "join": False, "foreach": None, "decorators": []},
    {"name": "join", "next": ["end"], "join": True, "foreach": None, "decorators": []},
    {"name": "end", "next": [], "join": False, "foreach": None, "decorators": []}]}
PY_FLOW = (HERE / "compare_metaflow.py").read_text().split('PY_FLOW = """\\\n', 1)[1].split('"""', 1)[0]
METAFLOW_SETTINGS = {
    "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_DATASTORE_SYSROOT_S3": "s3://mf-bench/metaflow",
    "METAFLOW_BATCH_JOB_QUEUE": "bench-queue", "METAFLOW_SFN_DYNAMO_DB_TABLE": "metaflow-bench",
    "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": "arn:aws:iam::123456789012:role/batch",
    "METAFLOW_ECS_FARGATE_EXECUTION_ROLE": "arn:aws:iam::123456789012:role/fargate",
    "METAFLOW_SFN_IAM_ROLE": "arn:aws:iam::123456789012:role/sfn", "METAFLOW_USER": "bench", "USERNAME": "bench",
}


def ours(mode: str, width: int) -> dict:
    graph = FlowGraph(parse_spec(dict(SPEC, script=str(HERE / "sfn_scale.py"))))
    if mode == "auto":
        settings = DeploySettings(s3_root="s3://bench/metaflow", job_queue="queue", batch_role="arn:batch",
                                  sfn_role="arn:sfn", dynamo_table="table", image="image")
        plan = plan_deployment(graph, dict(SPEC, script=str(HERE / "sfn_scale.py")), settings,
                               max_workers=MAX_WORKERS, with_retry=None, versions={}, max_num_splits=(str(width),))
        budget, label = plan.budget, f"auto: {plan.budget.modes['start']}"
    else:
        definition = compile_state_machine(graph, CompileSettings(
            job_queue="queue", job_definitions={n: n for n in graph.nodes}, code_url="s3://bench/code.tgz",
            code_sha="0" * 64, dynamo_table="table", max_workers=MAX_WORKERS, foreach_modes={"start": mode},
            max_num_splits={"start": width}, datastore_root="s3://bench/metaflow"))
        budget, label = estimate(definition, {"start": width}, {"start": mode}, MAX_WORKERS), mode
    try:
        check(budget)
        broken = ""
    except QuotaExceeded as exc:
        broken = "; ".join(q for q, word in (("history", "history events"), ("payload", "a state holds"),
                                             ("item", "an item holds")) if word in str(exc))
    return {"flow": "R package", "construct": label, "width": width, "transitions": budget.transitions,
            "history": budget.largest_history, "jobs": budget.batch_jobs, "submits": budget.submit_calls,
            "broken": broken}


def metaflow_definition(python: str, options: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as home:
        flow = Path(home, "wide_flow.py")
        flow.write_text(PY_FLOW)
        env = {"PATH": os.environ["PATH"], "HOME": home, "METAFLOW_HOME": home, **METAFLOW_SETTINGS}
        done = subprocess.run([python, str(HERE / "metaflow_sfn_json.py"), str(flow), *options], cwd=home, env=env,
                              capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"Python Metaflow's create --only-json failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def theirs(definition: dict, label: str, width: int) -> dict:
    costs = execution_costs(definition, lambda _: width)
    # Its Map reads the indices from the state ($.Result.Item.for_each_cardinality.NS), which the foreach task
    # wrote to DynamoDB as a number set: both grow with the width, whatever the Map's mode.
    indices = len(json.dumps([str(i) for i in range(1, width + 1)]))
    payload = indices + 2 * MAX_PARAMETERS_BYTES
    item = sum(2 + len(str(i)) // 2 for i in range(1, width + 1)) + 100
    broken = "; ".join(q for q, over in (("history", max(costs.run_history, costs.largest_child_history)
                                          > HISTORY_EVENTS), ("payload", payload > STATE_PAYLOAD_BYTES),
                                         ("item", item > DYNAMODB_ITEM_BYTES)) if over)
    return {"flow": "Python Metaflow", "construct": label, "width": width, "transitions": costs.transitions,
            "history": max(costs.run_history, costs.largest_child_history), "jobs": costs.batch_jobs,
            "submits": costs.batch_jobs, "broken": broken}


def main() -> int:
    python = os.environ.get("METAFLOW_PYTHON", str(HERE / ".venv-metaflow" / "bin" / "python"))
    rows = [ours(mode, width) for width in WIDTHS for mode in ("inline", "array", "distributed", "auto")]
    if Path(python).exists():
        inline = metaflow_definition(python, [])
        distributed = metaflow_definition(python, ["--use-distributed-map"])
        rows += [theirs(d, label, width) for width in WIDTHS
                 for d, label in ((inline, "inline (default)"), (distributed, "--use-distributed-map"))]
    else:
        print(f"No {python}: run bench/compare_metaflow.sh once to create it; Python Metaflow's rows are left out.")
    print(f"One run of WideFlow (a one-step foreach body), --max-workers {MAX_WORKERS}; price at "
          f"${PRICE_PER_1000_TRANSITIONS} per 1,000 state transitions (us-east-1, Standard workflows).\n")
    print("| flow | foreach as | width | state transitions | price | history events, largest execution "
          "| Batch jobs | SubmitJob calls | quotas broken |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in sorted(rows, key=lambda r: (r["width"], r["flow"] != "R package")):
        print(f"| {r['flow']} | {r['construct']} | {r['width']:,} | {r['transitions']:,} "
              f"| {usd(r['transitions'] * PRICE_PER_1000_TRANSITIONS / 1000)} | {r['history']:,} | {r['jobs']:,} "
              f"| {r['submits']:,} | {r['broken'] or 'none'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
