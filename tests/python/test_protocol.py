"""The contract between R and Python: every document R writes, from real flows run by real R, follows
its schema, and so does every document Python hands R or keeps for the Client API.

The schemas are checked here with jsonschema directly, not through protocol.py, so a change on either
side that a schema does not describe fails this test even if the runtime's own checks were loosened.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from metaflow_r.core import protocol
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.storage import LocalStorage
from metaflow_r.runtime import task as tasks

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.R"))

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup installs it)")

# A flow that uses every kind of parameter and decorator, a foreach, a branch, both kinds of join.
EVERYTHING = """library(metaflow)
start <- function(self) {
  self$items <- list(1, "two", c(3, 4))
  self$frame <- data.frame(a = 1:3, b = letters[1:3])
  cat("to stdout\\n"); message("to stderr")
}
body <- function(self) self$got <- self$input
join_items <- function(self, inputs) { self$gots <- gather_inputs(inputs, "got"); merge_artifacts(self, inputs, exclude = "got") }
left <- function(self) self$side <- "left"
right <- function(self) self$side <- "right"
join_sides <- function(self, inputs) self$sides <- gather_inputs(inputs, "side")
fails <- function(self) helper(self$alpha)
helper <- function(x) x + "a"
metaflow("EverythingFlow", decorator("schedule", cron = "0 10 * * ? *")) %>%
  parameter("alpha", help = "learning rate", default = 0.1) %>%
  parameter("n", default = 3L) %>%
  parameter("label", default = "x", required = TRUE) %>%
  parameter("loud", is_flag = TRUE) %>%
  parameter("sizes", default = c(1L, 2L), separator = ",") %>%
  step(decorator("retry", times = 2, minutes_between_retries = 0), decorator("timeout", minutes = 5),
       decorator("resources", cpu = 2, memory = 2048), decorator("environment", vars = list(STAGE = "test")),
       step = "start", r_function = start, next_step = "body", foreach = "items") %>%
  step(decorator("batch", image = "r:1", queue = "q", iam_role = "arn:role"), step = "body", r_function = body,
       next_step = "join_items") %>%
  step(step = "join_items", r_function = join_items, next_step = c("left", "right"), join = TRUE) %>%
  step(step = "left", r_function = left, next_step = "join_sides") %>%
  step(step = "right", r_function = right, next_step = "join_sides") %>%
  step(step = "join_sides", r_function = join_sides, next_step = "fails", join = TRUE) %>%
  step(decorator("catch", var = "problem", print_exception = FALSE), step = "fails", r_function = fails,
       next_step = "end") %>%
  step(step = "end") %>%
  run()
"""


def validator(name: str) -> jsonschema.Draft202012Validator:
    schemas = protocol.SCHEMA_DIR
    registry = Registry().with_resources(
        (path.name, Resource.from_contents(json.loads(path.read_text()))) for path in schemas.glob("*.json"))
    schema = json.loads((schemas / f"{name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def assert_follows(name: str, document: Any) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(name).iter_errors(document)]
    assert not errors, f"{name} document breaks its schema:\n" + "\n".join(errors)


def spec_from_r(script: Path) -> dict[str, Any]:
    done = subprocess.run(["Rscript", str(script), "spec"], cwd=script.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("script", EXAMPLES + ["everything"], ids=lambda s: getattr(s, "name", s))
def test_the_spec_r_sends_follows_its_schema(script, tmp_path):
    if script == "everything":
        script = tmp_path / "everything.R"
        script.write_text(EVERYTHING)
    spec = spec_from_r(Path(script))
    assert_follows("spec", spec)
    parse_spec(spec)  # and the backend reads it


class DirectRun:
    """Runs a flow's tasks one by one the way a launcher does (prepare, write the context, run the R task
    command, commit), keeping every document each attempt exchanged."""

    def __init__(self, script: Path, tmp_path: Path) -> None:
        self.script = script
        self.graph = FlowGraph(parse_spec(spec_from_r(script)))
        self.ds = FlowDatastore(LocalStorage(tmp_path / "ds"), self.graph.spec.name)
        self.run_id = self.ds.new_run(["user:tester"], self.parameters(), "tester",
                                      extra={"namespace": "user:tester"})
        self.run_record = self.ds.run_record(self.run_id)
        self.work = tmp_path / "work"
        self.documents: dict[str, list[Any]] = {name: [] for name in protocol.DOCUMENTS}

    def parameters(self) -> dict[str, Any]:
        from metaflow_r.core.params import values_from_json

        return values_from_json(self.graph.spec, {"label": "given"})

    def attempt(self, spec: tasks.AttemptSpec) -> tuple[int, dict[str, Any]]:
        out = self.work / f"{spec.step}-{spec.task_id}-{spec.retry_count}"
        out.mkdir(parents=True)
        prepared = tasks.prepare(self.graph, self.ds, spec, self.run_record, str(out))
        context_file = out / protocol.CONTEXT_FILE
        context_file.write_text(json.dumps(prepared.context))
        self.documents["context"].append(prepared.context)
        done = subprocess.run(["Rscript", str(self.script), "task", "--context", str(context_file)],
                              cwd=self.script.parent, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            self.documents["outputs"].append(json.loads((out / protocol.OUTPUTS_FILE).read_text()))
            record = tasks.commit(self.ds, spec, prepared, 0.0)
        else:
            error = json.loads((out / protocol.TASK_ERROR_FILE).read_text())
            self.documents["task_error"].append(error)
            record = tasks.record_failure(self.ds, spec, prepared, 0.0, "exit status 1", error)
        self.documents["attempt"].append(json.loads(self.ds.storage.read_bytes(
            f"{self.ds.flow}/{self.run_id}/{spec.step}/{spec.task_id}/{spec.retry_count}/DONE.json")))
        return done.returncode, record

    def task(self, step: str, task_id: str, inputs: list[str], split: int | None = None) -> str:
        code, record = self.attempt(tasks.AttemptSpec(self.run_id, step, task_id, inputs, split))
        if code != 0:  # the step's catch decorator runs its fallback attempt with the error R reported
            caught = self.documents["task_error"][-1]
            code, record = self.attempt(tasks.AttemptSpec(self.run_id, step, task_id, inputs, split, 1, caught))
        assert code == 0, f"task {step} failed"
        return f"{self.run_id}/{step}/{task_id}"


def test_every_document_of_a_real_run_follows_its_schema(tmp_path):
    script = tmp_path / "everything.R"
    script.write_text(EVERYTHING)
    run = DirectRun(script, tmp_path)
    start = run.task("start", "1", [])
    bodies = [run.task("body", str(2 + i), [start], i) for i in range(3)]
    joined = run.task("join_items", "5", bodies)
    sides = [run.task(side, str(6 + i), [joined]) for i, side in enumerate(("left", "right"))]
    both = run.task("join_sides", "8", sides)
    caught = run.task("fails", "9", [both])
    run.task("end", "10", [caught])

    for name in ("context", "outputs", "task_error", "attempt"):
        assert run.documents[name], f"no {name} document was exchanged"
        for document in run.documents[name]:
            assert_follows(name, document)
    error = run.documents["task_error"][0]
    assert error["message"] == "non-numeric argument to binary operator"
    assert error["call"] == 'x + "a"'
    assert error["traceback"] == ["fails(self)", "helper(self$alpha)"]
    frame = run.documents["outputs"][0]["artifacts"]["frame"]
    assert frame["type"] == "data.frame" and frame["preview"].startswith("'data.frame':")
    end = run.ds.task_record(run.run_id, "end", "10")
    assert end["artifact_info"]["problem"]["type"] == "simpleError"  # the caught condition, passed on


@pytest.mark.parametrize("name", protocol.DOCUMENTS)
def test_a_changed_field_breaks_the_contract(name, tmp_path):
    """The schemas have teeth: a document with a field R does not send, or without one it must send, fails."""
    schema = protocol.schema(name)
    document = {key: None for key in schema["required"]}
    document["a_field_nobody_sends"] = 1
    with pytest.raises(protocol.ProtocolError, match="does not follow the protocol"):
        protocol.check(name, document, "under test")
