"""A run's report: the graph's layout, each step's status from the records, the HTML, and the report command.

The page as a browser shows it is tested in test_report_browser.py."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import BRANCH, FOREACH, LINEAR, RunRecords, as_json, foreach_frame, make_spec, step

from metaflow_r.cli.entry import main
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.storage import LocalStorage
from metaflow_r.report import dag_layout
from metaflow_r.report.html import render
from metaflow_r.report.run_view import read_run
from metaflow_r.report.writer import write_report


def graph_of(spec) -> FlowGraph:
    return FlowGraph(parse_spec(spec))


@pytest.fixture
def ds(storage_case) -> FlowDatastore:
    return FlowDatastore(storage_case.storage, "ForeachFlow")


def foreach_run(ds, *, body_ok=(True, True, True), finished: bool | None = True, **start_extra) -> RunRecords:
    """ForeachFlow: start splits into 3 body tasks; the body tasks succeed or fail as told; join and end follow
    when all succeeded."""
    run = RunRecords(ds)
    run.attempt("start", "1", 0, 1, num_splits=3, artifacts={"items": "a" * 64}, **start_extra)
    for i, ok in enumerate(body_ok):
        if ok is not None:
            run.attempt("body", str(2 + i), 1 + i, 2.5 + i, ok=ok, inputs=["start/1"], stack=[foreach_frame(i, 3)],
                        artifacts={"items": "a" * 64, "y": f"{i}" * 64} if ok else {})
    if all(body_ok):
        run.attempt("join", "5", 6, 7, inputs=["body/2", "body/3", "body/4"], artifacts={"ys": "c" * 64})
        run.attempt("end", "6", 7, 8, inputs=["join/5"], artifacts={"ys": "c" * 64})
    if finished is not None:
        run.end(finished)
    return run


def statuses(view) -> dict[str, str]:
    return {name: s.status for name, s in view.steps.items()}


# -- layout ----------------------------------------------------------------------------------------


def test_layers_put_a_join_below_its_longest_branch():
    edges = [("start", "a"), ("a", "a2"), ("a2", "join"), ("start", "b"), ("b", "join"), ("join", "end")]
    layers = dag_layout.layers(["start", "a", "a2", "b", "join", "end"], edges)
    assert layers == {"start": 0, "a": 1, "b": 1, "a2": 2, "join": 3, "end": 4}


def test_branches_sit_side_by_side_and_no_steps_overlap():
    nodes = ["start", "a", "b", "c", "join", "end"]
    edges = [("start", "a"), ("start", "b"), ("start", "c"), ("a", "join"), ("b", "join"), ("c", "join"),
             ("join", "end")]
    layout = dag_layout.layout(nodes, edges, {n: 90.0 for n in nodes})
    row = [layout.boxes[n] for n in ("a", "b", "c")]
    assert len({b.y for b in row}) == 1 and row[0].y > layout.boxes["start"].y
    assert all(left.x + left.width <= right.x for left, right in zip(row, row[1:]))
    assert layout.boxes["join"].center == pytest.approx(layout.boxes["b"].center)  # centred under its branches
    assert layout.width >= max(b.x + b.width for b in layout.boxes.values())


def test_a_long_edge_goes_around_the_steps_it_passes():
    nodes = ["start", "a", "a2", "b", "join", "end"]
    edges = [("start", "a"), ("a", "a2"), ("a2", "join"), ("start", "b"), ("b", "join"), ("join", "end")]
    layout = dag_layout.layout(nodes, edges, {n: 90.0 for n in nodes})
    route = next(r for r in layout.routes if (r.source, r.target) == ("b", "join"))
    assert len(route.points) == 3  # through a waypoint in a2's layer
    a2 = layout.boxes["a2"]
    assert not a2.x <= route.points[1][0] <= a2.x + a2.width
    assert route.points[0] == (layout.boxes["b"].center, layout.boxes["b"].y + dag_layout.NODE_HEIGHT)
    assert route.points[-1] == (layout.boxes["join"].center, layout.boxes["join"].y)


def test_steps_are_listed_parents_first_with_branches_in_next_step_order(tmp_path):
    ds = FlowDatastore(LocalStorage(tmp_path), "AsymFlow")
    spec = make_spec("AsymFlow", [step("start", ["a", "b"]), step("a", "a2"), step("a2", "join"), step("b", "join"),
                                  step("join", "end", join=True), step("end")])
    RunRecords(ds).attempt("start", "1", 0, 1)
    view = read_run(ds, "100", graph_of(spec))
    assert list(view.steps) == ["start", "a", "b", "a2", "join", "end"]
    html = render(view)
    x = {name: float(re.search(rf'data-step="{name}".*?<rect x="([\d.]+)"', html).group(1)) for name in ("a", "b")}
    assert x["a"] < x["b"]


def test_records_that_form_a_cycle_are_still_drawn():
    layout = dag_layout.layout(["a", "b"], [("a", "b"), ("b", "a")], {"a": 90.0, "b": 90.0})
    assert set(layout.boxes) == {"a", "b"}


# -- step statuses from the records -----------------------------------------------------------------


def test_a_successful_run(ds):
    run = foreach_run(ds)
    view = read_run(ds, run.run_id, graph_of(FOREACH))
    assert view.status == "succeeded" and view.failures == []
    assert statuses(view) == dict.fromkeys(["start", "body", "join", "end"], "succeeded")
    assert view.steps["body"].expected == 3 and [t.split_label for t in view.steps["body"].tasks] == ["0", "1", "2"]
    assert ("start", "body", "foreach items") in view.edges


def test_parameters_show_as_r_prints_them(ds):
    """Issue 21: parameter("n_folds", default = 5) is numeric, as in R, and shows as 5, not Python's 5.0."""
    run = RunRecords(ds, parameters={"n_folds": 5.0, "alpha": 0.1, "sizes": [1.0, 2.5]})
    run.attempt("start", "1", 0, 1)
    run.end(True)
    page = render(read_run(ds, run.run_id, None))
    assert "<code>n_folds</code> = <code>5</code>" in page
    assert "<code>alpha</code> = <code>0.1</code>" in page and "<code>[1, 2.5]</code>" in page


def test_a_failed_run_names_the_failing_task_with_its_exception_and_output(ds):
    run = foreach_run(ds, body_ok=(True, False, True), finished=False)
    exception = {"class": ["simpleError", "error", "condition"], "message": "non-numeric argument",
                 "call": "x + \"a\"", "traceback": ["body(self)", "x + \"a\""]}
    run.attempt("body", "3", 2, 3.5, ok=False, inputs=["start/1"], stack=[foreach_frame(1, 3)], attempt=1,
                exception=exception)
    ds.write_log(run.run_id, "body", "3", 1, "stderr", b"starting\nError in step 'body': non-numeric argument\n")
    view = read_run(ds, run.run_id, graph_of(FOREACH))
    assert view.status == "failed"
    assert statuses(view) == {"start": "succeeded", "body": "failed", "join": "not reached", "end": "not reached"}
    (failure,) = view.failures
    assert (failure.task.step, failure.task.task_id, len(failure.task.attempts)) == ("body", "3", 2)
    assert failure.exception == exception and failure.reason == "exit status 1"
    assert failure.log_tail.endswith("Error in step 'body': non-numeric argument")


def test_a_running_run(ds):
    foreach_run(ds, body_ok=(True, None, True), finished=None)
    view = read_run(ds, "100", graph_of(FOREACH))
    assert view.status == "running"
    assert statuses(view) == {"start": "succeeded", "body": "running", "join": "not reached", "end": "not reached"}


def test_a_failed_attempt_is_retrying_until_the_run_ends(ds):
    run = foreach_run(ds, body_ok=(True, False, True), finished=None)
    assert statuses(read_run(ds, run.run_id, graph_of(FOREACH)))["body"] == "running"
    run.attempt("body", "3", 4, 5, attempt=1, inputs=["start/1"], stack=[foreach_frame(1, 3)])
    view = read_run(ds, run.run_id, graph_of(FOREACH))
    assert statuses(view) == {"start": "succeeded", "body": "succeeded", "join": "running", "end": "not reached"}
    assert len(view.steps["body"].tasks[1].attempts) == 2 and view.failures == []


def test_tasks_cut_short_by_the_run_ending_are_stopped(ds):
    foreach_run(ds, body_ok=(True, None, True), finished=False)
    view = read_run(ds, "100", graph_of(FOREACH))
    assert statuses(view) == {"start": "succeeded", "body": "stopped", "join": "not reached", "end": "not reached"}
    assert view.failures == []
    assert "no task recorded a failure" in render(view)


def test_without_the_flow_the_graph_comes_from_the_records(ds):
    foreach_run(ds, body_ok=(True, False, True), finished=False)
    view = read_run(ds, "100", None)
    assert view.graph_source == "datastore"
    assert list(view.steps) == ["start", "body"]  # the steps the run reached
    assert view.edges == [("start", "body", "")]
    assert statuses(view) == {"start": "succeeded", "body": "failed"}


def test_a_step_the_flow_no_longer_has_is_still_shown(ds):
    foreach_run(ds)
    renamed = make_spec("ForeachFlow", [step("start", "body", foreach="items"), step("body", "gather"),
                                        step("gather", "end", join=True), step("end")])
    view = read_run(ds, "100", graph_of(renamed))
    assert list(view.steps) == ["start", "body", "gather", "end", "join"]
    assert ("body", "join", "") in view.edges and statuses(view)["join"] == "succeeded"


def test_a_resumed_run_times_only_the_tasks_it_ran(tmp_path):
    ds = FlowDatastore(LocalStorage(tmp_path), "ForeachFlow")
    run = RunRecords(ds, run_id="200", t0=1_700_000_900.0)
    run.attempt("start", "1", -900, -899, num_splits=1, cloned_from="100/start/1")  # the origin run's times
    run.attempt("body", "2", 1, 2, inputs=["start/1"], stack=[foreach_frame(0, 1)])
    run.end(False)
    view = read_run(ds, run.run_id, graph_of(FOREACH))
    assert view.steps["start"].status == "succeeded" and view.steps["start"].started_at is None
    html = render(view)
    assert html.count('class="a-ok"') == 1 and "1 done (1 cloned)" in html and "cloned from 100/start/1" in html


# -- the HTML --------------------------------------------------------------------------------------


def test_artifacts_show_type_size_and_preview_and_are_escaped(ds):
    info = {"items": {"type": "integer", "size": 1536, "preview": "<script>alert(1)</script> 1 2 3"}}
    foreach_run(ds, artifact_info=info)
    html = render(read_run(ds, "100", graph_of(FOREACH)))
    row = re.search(r'<tr><td class="mono">items</td>.*?</tr>', html).group(0)
    assert "<td>integer</td><td>1.5 KiB</td>" in row
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 1 2 3" in row and "<script" not in html
    # A record without artifact_info (older runs) shows "-", not an error.
    body_row = re.search(r'<tr><td class="mono">y</td>.*?</tr>', html).group(0)
    assert body_row.count("<td>-</td>") == 2


def test_the_exception_and_its_traceback_are_shown(ds):
    run = foreach_run(ds, body_ok=(True, True, False), finished=False)
    exception = {"class": ["simpleError"], "message": "bad <input>", "call": "f(x)", "traceback": ["g()", "f(x)"]}
    run.attempt("body", "4", 3, 4, ok=False, attempt=1, inputs=["start/1"], stack=[foreach_frame(2, 3)],
                exception=exception)
    html = render(read_run(ds, run.run_id, graph_of(FOREACH)))
    assert "simpleError: bad &lt;input&gt;" in html and "<code>f(x)</code>" in html and "1. g()\n2. f(x)" in html
    assert "2 attempts: exit status 1" in html


def test_the_page_loads_nothing(ds):
    foreach_run(ds)
    html = render(read_run(ds, "100", graph_of(FOREACH)))
    assert "default-src 'none'" in html
    assert not re.search(r"https?://|\bsrc=|<script|<link", html)


def test_a_wide_foreach_keeps_the_page_small(tmp_path):
    ds = FlowDatastore(LocalStorage(tmp_path), "ForeachFlow")
    run = RunRecords(ds)
    run.attempt("start", "1", 0, 1, num_splits=1000)
    for i in range(1000):
        start = 1 + (i // 16) * 0.5
        run.attempt("body", str(2 + i), start, start + 0.5, inputs=["start/1"], stack=[foreach_frame(i, 1000)],
                    artifacts={"y": "b" * 64})
    run.end(False)
    html = render(read_run(ds, run.run_id, graph_of(FOREACH)))
    assert len(html.encode()) < 400_000
    assert html.count('class="a-ok"') == 1001  # every attempt on the timeline
    assert "and 900 more tasks" in html  # but not every row in the table
    assert html.count("<details") == 2 and html.count("<details id=\"step-body\" open>") == 0


# -- writing it: the report command, the end of a run ------------------------------------------------


def cli(capsys, argv, spec, launch_dir):
    code = main(argv, as_json(spec), {"launch_dir": str(launch_dir), "rscript": "Rscript"})
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def local_ds(launch_dir) -> FlowDatastore:
    return FlowDatastore(LocalStorage(launch_dir / ".metaflow"), "ForeachFlow")


def test_report_writes_the_latest_run_beside_its_data(capsys, local_ds, launch_dir):
    foreach_run(local_ds)
    newer = RunRecords(local_ds, run_id="200", t0=1_800_000_000.0)
    newer.attempt("start", "1", 0, 1, ok=False)
    newer.end(False)
    code, out, err = cli(capsys, ["report"], FOREACH, launch_dir)
    assert code == 0, err
    path = Path(out.strip())
    assert path == launch_dir / ".metaflow" / "ForeachFlow" / "200" / "_report.html"
    html = path.read_text()
    assert "ForeachFlow/200" in html and 'data-step="start" data-status="failed"' in html
    assert oct(path.stat().st_mode & 0o077) != "0o0"  # readable like any file the user writes
    assert local_ds.step_names("200") == ["start"]  # the report is no step
    code, out, _ = cli(capsys, ["report", "latest"], FOREACH, launch_dir)
    assert Path(out.strip()) == path


def test_report_of_a_named_run_to_a_chosen_file(capsys, local_ds, launch_dir):
    foreach_run(local_ds)
    code, out, err = cli(capsys, ["report", "ForeachFlow/100", "--output", "out/run.html"], FOREACH, launch_dir)
    assert code == 0, err
    assert Path(out.strip()) == launch_dir / "out" / "run.html"
    assert 'data-step="join" data-status="succeeded"' in (launch_dir / "out" / "run.html").read_text()


def test_report_of_a_run_that_does_not_exist(capsys, local_ds, launch_dir):
    foreach_run(local_ds)
    code, out, err = cli(capsys, ["report", "999"], FOREACH, launch_dir)
    assert code == 4 and out == ""
    assert "Run ForeachFlow/999 does not exist" in err and "Known runs: 100" in err and "--datastore s3" in err
    assert "Traceback" not in err
    assert not list(launch_dir.rglob("*.html"))


def test_report_without_any_run(capsys, launch_dir):
    code, _, err = cli(capsys, ["report"], FOREACH, launch_dir)
    assert code == 4 and "Flow ForeachFlow has no run" in err


def test_report_to_a_directory_is_refused(capsys, local_ds, launch_dir):
    foreach_run(local_ds)
    (launch_dir / "reports").mkdir()
    code, _, err = cli(capsys, ["report", "--output", "reports"], FOREACH, launch_dir)
    assert code == 2 and "is a directory" in err and "report.html" in err
    assert not list(launch_dir.rglob("*.html"))


def test_report_of_a_production_run_on_s3(capsys, moto_aws, launch_dir, monkeypatch, tmp_path):
    from metaflow_r.datastore.s3 import S3Storage

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    ds = FlowDatastore(S3Storage(os.environ["METAFLOW_DATASTORE_SYSROOT_S3"]), "ForeachFlow")
    foreach_run(ds, body_ok=(True, True, None), finished=None)
    code, out, err = cli(capsys, ["--datastore", "s3", "report", "100"], FOREACH, launch_dir)
    assert code == 0, err
    path = Path(out.strip())
    assert path == tmp_path / "tmp" / "metaflow-r-reports" / "ForeachFlow" / "100" / "report.html"
    html = path.read_text()
    assert 'data-step="body" data-status="running"' in html and 'data-step="join" data-status="not reached"' in html
    assert not (launch_dir / ".metaflow").exists()
    code, _, err = cli(capsys, ["report", "100"], FOREACH, launch_dir)  # forgot --datastore s3
    assert code == 4 and "--datastore s3" in err


def test_a_run_record_holding_the_flow_draws_the_steps_not_reached(tmp_path):
    ds = FlowDatastore(LocalStorage(tmp_path), "ForeachFlow")
    run = foreach_run(ds, body_ok=(True, False, True), finished=False)
    record = ds.run_record(run.run_id)
    ds._write_json(f"ForeachFlow/{run.run_id}/_run.json", {**record, "spec": FOREACH})
    path = write_report(ds, run.run_id)
    html = Path(path).read_text()
    assert 'data-step="end" data-status="not reached"' in html and "The graph is the flow's." in html


def test_the_client_writes_the_report_for_r(local_ds, launch_dir, tmp_path):
    from metaflow_r.client import queries as client

    foreach_run(local_ds, body_ok=(True, False, True), finished=False)
    without_flow = Path(client.report("ForeachFlow", "100")).read_text()
    assert 'data-step="end"' not in without_flow
    with_flow = Path(client.report("ForeachFlow", "100", json.dumps(FOREACH), str(tmp_path / "r.html"))).read_text()
    assert 'data-step="end" data-status="not reached"' in with_flow


def test_every_local_run_ends_with_its_report(capsys, launch_dir, monkeypatch):
    """The runtime is replaced by one that records a failed task: what launch() prints is under test."""
    from metaflow_r.runtime import local_runtime

    class FailingRuntime:
        def __init__(self, graph, ds, run_id, *args, **kwargs):
            self.ds, self.run_id = ds, run_id
            self.failed = self.failed_record = None

        def execute(self):
            self.ds.write_attempt(self.run_id, "start", "1", 0, {
                "successful": False, "step": "start", "task_id": "1", "attempt": 0, "input_paths": [],
                "split_stack": [], "started_at": 1.0, "finished_at": 2.0, "artifacts": {}, "error": "exit status 1"})
            self.ds.finish_run(self.run_id, False)
            self.failed = type("Spec", (), {"step": "start", "pathspec": f"{self.run_id}/start/1"})()
            return False

    monkeypatch.setattr(local_runtime, "LocalRuntime", FailingRuntime)  # launch() imports it when it runs
    spec = {**LINEAR, "script": str(launch_dir / "flow.R")}
    code, out, err = cli(capsys, ["run"], spec, launch_dir)
    assert code == 1
    match = re.search(r"Report: (\S+_report\.html)", err)
    assert match and 'data-step="start" data-status="failed"' in Path(match.group(1)).read_text()


def test_a_report_that_cannot_be_written_does_not_hide_the_run(capsys, launch_dir, monkeypatch):
    from metaflow_r.report import writer
    from metaflow_r.runtime import local_runtime

    class Runtime:
        def __init__(self, graph, ds, run_id, *args, **kwargs):
            self.ds, self.run_id = ds, run_id

        def execute(self):
            self.ds.finish_run(self.run_id, True)
            return True

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(local_runtime, "LocalRuntime", Runtime)  # both imported when the run needs them
    monkeypatch.setattr(writer, "write_report", broken)
    code, out, err = cli(capsys, ["run"], {**BRANCH, "script": str(launch_dir / "flow.R")}, launch_dir)
    assert code == 0, err
    assert "succeeded" in out and "The run's report could not be written: disk full" in out
