"""The environment of a flow's Batch jobs has one table (aws/batch/environment.py): each party that sets it
sets only the variables the table gives it, the job reads only variables of the table, and the image's
README shows the same table."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, Iterator

from conftest import make_spec, step, write_flow_script

from metaflow_r.aws.batch import environment as env
from metaflow_r.aws.batch.identity import job_environment
from metaflow_r.aws.batch.job_definitions import plan_batch_jobs
from metaflow_r.aws.settings import DeploySettings
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec
from metaflow_r.runtime.task import AttemptSpec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden")
VARIABLE = re.compile(r"^(METAFLOW|AWS_BATCH)_[A-Z0-9_]+$")  # AWS_DEFAULT_REGION is boto3's own as well


def overridden(states: dict[str, Any]) -> Iterator[str]:
    """The variable names every Task state of a definition passes to its job."""
    for state in states.values():
        for entry in state.get("Parameters", {}).get("ContainerOverrides", {}).get("Environment", []):
            yield entry["Name"]
        for branch in state.get("Branches", []):
            yield from overridden(branch["States"])
        if "ItemProcessor" in state:
            yield from overridden(state["ItemProcessor"]["States"])


def test_the_state_machine_sets_only_its_own_variables():
    names: set[str] = set()
    for golden in sorted(GOLDEN.glob("*.json")):
        names |= set(overridden(json.loads(golden.read_text())["States"]))
    assert names and names <= env.set_by(env.STATE_MACHINE), names - env.set_by(env.STATE_MACHINE)
    assert {env.STEP, env.RUN_ID, env.SPLIT_PATH, env.FOREACH_MODE, env.FOREACH_ITEMS_KEY} <= names


def test_a_job_definition_sets_only_its_own_variables(tmp_path):
    spec = make_spec("EnvFlow", [step("start", "end"), step("end")], script=write_flow_script(tmp_path))
    settings = DeploySettings("s3://bucket/mf", "queue", "arn:aws:iam::1:role/batch", "arn:aws:iam::1:role/sfn",
                              "table", "image", region="eu-west-1")
    jobs = plan_batch_jobs(FlowGraph(parse_spec(spec)), spec, settings, versions={})
    for definition in jobs.job_definitions.values():
        names = {e["name"] for e in definition["containerProperties"]["environment"]}
        assert names == env.set_by(env.JOB_DEFINITION)


def test_a_local_run_tells_its_job_only_its_own_variables():
    caught = {"class": ["simpleError"], "message": "no", "call": None, "traceback": []}
    told = job_environment(AttemptSpec("1", "join", "9", ["1/body/3", "1/body/4"], 2, 1, caught))
    launcher_adds = {env.CODE_URL, env.CODE_SHA}  # aws/batch/launcher.py, beside the attempt's identity
    assert set(told) | launcher_adds == env.set_by(env.LOCAL_RUN)


def test_no_module_names_a_job_variable_outside_the_table():
    """Every job variable the backend spells out is spelled in environment.py alone."""
    elsewhere = []
    for path in sorted((ROOT / "inst/python/metaflow_r").rglob("*.py")):
        if path.name == "environment.py" or "emulator" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.match(node.value) \
                    and node.value in env.TABLE:
                elsewhere.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert elsewhere == []


def test_the_images_readme_shows_the_table():
    readme = (ROOT / "inst/container/README.md").read_text()
    rows = re.findall(r"^\| `([A-Z_0-9]+)` \| ([^|]+) \| (.+) \|$", readme, re.M)
    assert [(name, setters.strip(), what.strip()) for name, setters, what in rows] == \
        [(name, ", ".join(parties), what) for name, (parties, what) in env.TABLE.items()]
