"""The report and the Mermaid diagram as a user sees them: Debian's Chromium, headless, through playwright-core.

tests/browser/look.mjs opens the page and returns what is on screen (text, each graph step's colour, the
error boxes, the requests made); these tests assert on that, not on the HTML source."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import (
    BRANCH,
    BROWSER_LOOK,
    FOREACH,
    LINEAR,
    NESTED_FOREACH,
    RunRecords,
    foreach_frame,
    make_spec,
    needs_browser,
    require_npm_tool,
    step,
)
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.report.show import mermaid
from metaflow_r.report.writer import write_report

ROOT = Path(__file__).resolve().parents[2]
pytestmark = needs_browser

GREEN, RED, BLUE, GREY = "rgb(46, 125, 50)", "rgb(198, 40, 40)", "rgb(21, 101, 192)", "rgb(238, 238, 238)"


def look(mode: str, *paths: Path | str) -> list:
    """What look.mjs saw, one entry per file, all in one Chromium."""
    done = subprocess.run(["node", str(BROWSER_LOOK), mode, *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def graph_steps(page: dict) -> dict[str, dict]:
    return {s["name"]: s for s in page["steps"]}


def assert_no_overlap(page: dict) -> None:
    boxes = [s["box"] for s in page["steps"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                     or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])
            assert apart, (a, b)


FLOW_SCRIPT = """library(metaflow)
start <- function(self) self$xs <- 1:3
body <- function(self) {
  self$y <- if (self$input == self$fail_at) self$input + "a" else self$input^2
}
join <- function(self, inputs) self$ys <- unlist(gather_inputs(inputs, "y"))
end <- function(self) print(self$ys)
metaflow("SquareFlow") %>%
  parameter("fail_at", default = 0, type = "int") %>%
  step(step = "start", r_function = start, next_step = "body", foreach = "xs") %>%
  step(step = "body", r_function = body, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
"""


def rscript(launch_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["Rscript", "flow.R", *args], cwd=launch_dir, capture_output=True, text=True, timeout=300)


def test_a_failed_local_run_shows_the_failing_step_in_red_with_its_error(launch_dir):
    (launch_dir / "flow.R").write_text(FLOW_SCRIPT)
    done = rscript(launch_dir, "run", "--fail_at", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    path = re.search(r"Report: (\S+)", done.stderr).group(1)
    (page,) = look("report", path)
    steps = graph_steps(page)
    assert list(steps) == ["start", "body", "join", "end"]
    assert all(s["visible"] for s in steps.values())
    assert (steps["start"]["fill"], steps["start"]["subtitle"]) == (GREEN, "succeeded")
    assert steps["body"]["fill"] == RED and steps["body"]["subtitle"].startswith("failed")
    assert [(steps[s]["fill"], steps[s]["subtitle"]) for s in ("join", "end")] == [(GREY, "not reached")] * 2
    assert steps["start"]["box"]["y"] < steps["body"]["box"]["y"] < steps["join"]["box"]["y"]
    assert_no_overlap(page)
    (error,) = page["errors"]
    assert error["visible"]
    assert "Step body failed" in error["text"] and "index 1" in error["text"]
    assert "non-numeric argument to binary operator" in error["text"]
    rows = {r["step"]: (r["status"], r["badge"]) for r in page["rows"]}
    assert rows["body"] == ("failed", RED) and rows["end"][0] == "not reached"
    assert "fail_at = 2" in page["text"] and page["title"].endswith(": failed")
    assert page["requests"] == [Path(path).as_uri()]  # the page itself, nothing else

    # The report command writes the same run's report again, to the same file.
    again = rscript(launch_dir, "report")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == path


def test_a_successful_local_run_is_all_green_with_every_task_on_the_timeline(launch_dir):
    (launch_dir / "flow.R").write_text(FLOW_SCRIPT)
    done = rscript(launch_dir, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    path = re.search(r"^Report: (\S+)$", done.stdout, re.M).group(1)
    (page,) = look("report", path)
    assert {s["name"]: s["fill"] for s in page["steps"]} == dict.fromkeys(["start", "body", "join", "end"], GREEN)
    assert graph_steps(page)["body"]["subtitle"] == "succeeded \u00b7 3 tasks"
    assert page["bars"] == 6 and page["errors"] == []
    assert "foreach xs" in page["text"]


def production_run(ds: FlowDatastore, *, ended: bool | None) -> RunRecords:
    """A run as Batch jobs commit it, with the attempt fields the R task records: artifact_info, exception."""
    run = RunRecords(ds, run_id="sfn-42", parameters={"alpha": 0.5})
    info = {"items": {"type": "integer", "size": 2100, "preview": "int [1:3] 1 2 3"},
            "alpha": {"type": "numeric", "size": 61, "preview": "0.5"}}
    run.attempt("start", "1", 0, 2, num_splits=3, artifacts={"items": "a" * 64, "alpha": "b" * 64},
                artifact_info=info)
    run.attempt("body", "2", 2, 4, inputs=["start/1"], stack=[foreach_frame(0, 3)],
                artifacts={"items": "a" * 64, "alpha": "b" * 64, "y": "c" * 64},
                artifact_info={**info, "y": {"type": "numeric", "size": 58, "preview": "1"}})
    if ended is not None:
        run.attempt("body", "3", 2, 5, ok=False, inputs=["start/1"], stack=[foreach_frame(1, 3)], exception={
            "class": ["simpleError", "error", "condition"], "message": "non-numeric argument to binary operator",
            "call": "self$input + \"a\"", "traceback": ["body(self)", "self$input + \"a\""]})
        run.end(ended)
    return run


def test_a_production_run_on_s3(moto_aws, tmp_path):
    from metaflow_r.datastore.s3 import S3Storage

    ds = FlowDatastore(S3Storage(os.environ["METAFLOW_DATASTORE_SYSROOT_S3"]), "ForeachFlow")
    production_run(ds, ended=False)
    running = FlowDatastore(S3Storage(os.environ["METAFLOW_DATASTORE_SYSROOT_S3"]), "RunningFlow")
    production_run(running, ended=None)
    graph = FlowGraph(parse_spec(FOREACH))
    page, running_page = look("report", write_report(ds, "sfn-42", graph, str(tmp_path / "failed.html")),
                              write_report(running, "sfn-42", graph, str(tmp_path / "running.html")))
    steps = graph_steps(page)
    assert (steps["body"]["fill"], steps["join"]["subtitle"]) == (RED, "not reached")
    (error,) = page["errors"]
    assert "simpleError: non-numeric argument to binary operator" in error["text"]
    assert 'In self$input + "a"' in error["text"] and '2. self$input + "a"' in error["text"]
    assert re.search(r"items\tinteger\t2\.1 KiB\tint \[1:3\] 1 2 3\tset here", page["text"])
    assert re.search(r"alpha\tnumeric\t61 B\t0\.5\tparameter", page["text"])

    steps = graph_steps(running_page)
    assert (steps["start"]["fill"], steps["body"]["fill"], steps["join"]["fill"]) == (GREEN, BLUE, GREY)
    assert steps["body"]["subtitle"] == "running \u00b7 1/3" and running_page["title"].endswith(": running")


def test_mermaid_renders_every_graph_shape(tmp_path):
    require_npm_tool(ROOT / ".tools" / "node_modules" / "mermaid", "mermaid (npm)")
    keywords = make_spec("KeywordFlow", [step("start", ["graph", "style", "o_step"]), step("graph", "subgraph"),
                                         step("subgraph", "class"), step("style", "class"), step("o_step", "class"),
                                         step("class", "end", join=True), step("end")])
    specs = [LINEAR, BRANCH, FOREACH, NESTED_FOREACH, keywords]
    graphs = [FlowGraph(parse_spec(s)) for s in specs]
    diagrams = [mermaid(g) for g in graphs] + ["flowchart TD\n    start --> end"]  # the old text, which broke
    (tmp_path / "diagrams.json").write_text(json.dumps(diagrams))
    (results,) = look("mermaid", tmp_path / "diagrams.json")
    for graph, result in zip(graphs, results):
        assert result["ok"], (graph.spec.name, result)
        assert sorted(result["labels"]) == sorted(graph.order)
        assert result["edges"] == sum(len(node.next) for node in graph)
    assert not results[-1]["ok"] and "end" in results[-1]["error"]
