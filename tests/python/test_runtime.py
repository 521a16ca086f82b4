"""End-to-end local runs: real R flow scripts, launched through ``main([... "run"], spec_json, info)``.

Each test writes a flow script and the spec R would send for it, runs it, and checks the datastore.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import make_spec, param

from metaflow_r.cli.entry import main
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.datastore.storage import LocalStorage

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (make setup)")


def r_value(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def rstep(name: str, body: str | None = None, next_steps: list[str] | str | None = None, *, join: bool = False,
          foreach: str | None = None, decorators: list[tuple[str, dict[str, Any]]] = ()) -> dict[str, Any]:
    """A step for both sides: the R code of its step() call and its entry in the spec."""
    if isinstance(next_steps, str):
        next_steps = [next_steps]
    next_steps = list(next_steps or [])
    args = [f'step = "{name}"']
    if body is not None:
        signature = "function(self, inputs)" if join else "function(self)"
        args.append(f"r_function = {signature} {{\n{body}\n}}")
    if next_steps:
        args.append("next_step = c(" + ", ".join(f'"{n}"' for n in next_steps) + ")")
    if join:
        args.append("join = TRUE")
    if foreach:
        args.append(f'foreach = "{foreach}"')
    for deco, attrs in decorators:
        args.append(f'decorator("{deco}"' + "".join(f", {k} = {r_value(v)}" for k, v in attrs.items()) + ")")
    spec = {"name": name, "next": next_steps, "join": join, "foreach": foreach,
            "decorators": [{"name": d, "attributes": a} for d, a in decorators]}
    return {"r": "step(" + ", ".join(args) + ")", "spec": spec}


class Flow:
    def __init__(self, root: Path, name: str, steps: list[dict[str, Any]],
                 parameters: list[tuple[str, dict[str, Any]]] = (), preamble: str = ""):
        """``parameters``: (R code of the parameter() call, its spec entry) pairs; ``preamble``: R code the
        script runs before it defines the flow."""
        self.root = root
        self.name = name
        self.script = root / f"{name}.R"
        calls = [r for r, _ in parameters] + [s["r"] for s in steps]
        self.script.write_text("library(metaflow)\n%s\nmetaflow(\"%s\") %%>%%\n  %s %%>%%\n  run()\n"
                               % (preamble, name, " %>%\n  ".join(calls)))
        self.spec = make_spec(name, [s["spec"] for s in steps], parameters=[p for _, p in parameters],
                              script=str(self.script))
        self.ds = FlowDatastore(LocalStorage(root / ".metaflow"), name)

    def run(self, capsys, *argv: str) -> tuple[int, str, str]:
        code = main(list(argv), json.dumps(self.spec), {"launch_dir": str(self.root), "rscript": "Rscript"})
        out, err = capsys.readouterr()
        return code, out, err

    def only_run(self) -> str:
        (run_id,) = self.ds.run_ids()
        return run_id

    def tasks(self, run_id: str, step: str) -> list[dict[str, Any]]:
        records = [self.ds.task_record(run_id, step, t) for t in self.ds.task_ids(run_id, step)]
        return sorted(records, key=lambda r: int(r["task_id"]))

    def task(self, run_id: str, step: str) -> dict[str, Any]:
        (record,) = self.tasks(run_id, step)
        return record

    def stdout(self, run_id: str, step: str, attempt: int = 0) -> str:
        return self.ds.read_log(run_id, step, self.task(run_id, step)["task_id"], attempt, "stdout")

    def stderr(self, run_id: str, step: str, attempt: int = 0) -> str:
        return self.ds.read_log(run_id, step, self.task(run_id, step)["task_id"], attempt, "stderr")


@pytest.fixture
def flow_dir(tmp_path, monkeypatch):
    for key in ("METAFLOW_DATASTORE_SYSROOT_LOCAL", "METAFLOW_DEFAULT_DATASTORE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("METAFLOW_USER", "tester")
    return tmp_path


def test_linear_run(flow_dir, capsys):
    flow = Flow(flow_dir, "LinearFlow", [
        rstep("start", "self$x <- 1", "a"),
        rstep("a", "self$y <- self$x + 1", "end"),
        rstep("end", 'cat("x is", self$x, "and y is", self$y, "\\n")'),
    ])
    code, out, err = flow.run(capsys, "run", "--tag", "nightly")
    assert code == 0, out + err
    run_id = flow.only_run()
    assert f"Done! Run LinearFlow/{run_id} succeeded" in out
    assert flow.ds.run_status(run_id)["successful"] is True
    run = flow.ds.run_record(run_id)
    assert run["user"] == "tester" and run["tags"] == ["nightly", "user:tester"]
    assert sorted(flow.ds.step_names(run_id)) == ["a", "end", "start"]
    start, a, end = flow.task(run_id, "start"), flow.task(run_id, "a"), flow.task(run_id, "end")
    assert start["successful"] and a["successful"] and end["successful"]
    assert a["input_paths"] == [f"{run_id}/start/{start['task_id']}"]
    assert end["input_paths"] == [f"{run_id}/a/{a['task_id']}"]
    # artifacts are inherited by reference, not copied
    assert set(end["artifacts"]) == {"x", "y"}
    assert end["artifacts"]["x"] == start["artifacts"]["x"] == a["artifacts"]["x"]
    assert Path(flow.ds.blob_path(end["artifacts"]["y"])).is_file()
    assert "x is 1 and y is 2" in flow.stdout(run_id, "end")
    assert "x is 1 and y is 2" in out


def test_branch_join_inputs(flow_dir, capsys):
    flow = Flow(flow_dir, "BranchFlow", [
        rstep("start", "self$x <- 1", ["a", "b"]),
        rstep("a", "self$x <- self$x + 10", "join"),
        rstep("b", "self$x <- self$x + 20", "join"),
        rstep("join", 'self$xs <- c(inputs$a$x, inputs$b$x)\ncat("xs are", self$xs, "\\n")', "end", join=True),
        rstep("end", None),
    ])
    code, out, err = flow.run(capsys, "run")
    assert code == 0, out + err
    run_id = flow.only_run()
    a, b, join = flow.task(run_id, "a"), flow.task(run_id, "b"), flow.task(run_id, "join")
    assert join["input_paths"] == [f"{run_id}/a/{a['task_id']}", f"{run_id}/b/{b['task_id']}"]
    assert join["split_stack"] == []
    assert [f["index"] for f in a["split_stack"]] == ["a"] and b["split_stack"][0]["kind"] == "branch"
    assert "xs are 11 21" in flow.stdout(run_id, "join")
    assert "xs" in flow.task(run_id, "end")["artifacts"]


def test_foreach_with_two_workers(flow_dir, capsys):
    flow = Flow(flow_dir, "ForeachFlow", [
        rstep("start", 'self$items <- c("p", "q", "r", "s")', "body", foreach="items"),
        rstep("body", "Sys.sleep(0.4)\nself$up <- toupper(self$input)", "join"),
        rstep("join", 'self$all <- unlist(gather_inputs(inputs, "up"))\ncat("all:", self$all, "\\n")', "end",
              join=True),
        rstep("end", None),
    ])
    code, out, err = flow.run(capsys, "run", "--max-workers", "2")
    assert code == 0, out + err
    run_id = flow.only_run()
    start = flow.task(run_id, "start")
    assert start["num_splits"] == 4
    bodies = flow.tasks(run_id, "body")
    assert len(bodies) == 4
    assert sorted(r["split_stack"][-1]["index"] for r in bodies) == [0, 1, 2, 3]
    assert all(r["split_stack"][-1]["num_splits"] == 4 for r in bodies)
    # never more than two tasks at once
    for r in bodies:
        overlapping = [o for o in bodies if o["started_at"] <= r["started_at"] < o["finished_at"]]
        assert len(overlapping) <= 2, overlapping
    join = flow.task(run_id, "join")
    by_index = {r["split_stack"][-1]["index"]: r for r in bodies}
    assert join["input_paths"] == [f"{run_id}/body/{by_index[i]['task_id']}" for i in range(4)]
    assert "all: P Q R S" in flow.stdout(run_id, "join")


def test_parameters_reach_the_tasks(flow_dir, capsys):
    flow = Flow(flow_dir, "ParamFlow", [
        rstep("start", 'cat("alpha", class(self$alpha), self$alpha, "\\n")\n'
                       'cat("sizes", class(self$sizes), sum(self$sizes), "\\n")\n'
                       'cat("verbose", self$verbose, "\\n")', "end"),
        rstep("end", 'cat("alpha still", self$alpha, "\\n")'),
    ], parameters=[
        ('parameter("alpha", default = 0.1)', param("alpha", default=0.1, type="float")),
        ('parameter("sizes", default = c(1L, 2L), separator = ",")',
         param("sizes", default="1,2", type="int", separator=",")),
        ('parameter("verbose", is_flag = TRUE)', param("verbose", type="bool", is_flag=True)),
    ])
    code, out, err = flow.run(capsys, "run", "--alpha", "0.5")
    assert code == 0, out + err
    run_id = flow.only_run()
    assert flow.ds.run_record(run_id)["parameters"] == {"alpha": 0.5, "sizes": [1, 2], "verbose": False}
    start = flow.stdout(run_id, "start")
    assert "alpha numeric 0.5" in start and "sizes integer 3" in start and "verbose FALSE" in start
    assert "alpha still 0.5" in flow.stdout(run_id, "end")
    assert {"alpha", "sizes", "verbose"} <= set(flow.task(run_id, "end")["artifacts"])


FAIL_FIRST = 'if (current("retry_count") == 0) stop("first attempt fails")\nself$ok <- TRUE'


def test_retry_reruns_a_failed_attempt(flow_dir, capsys):
    flow = Flow(flow_dir, "RetryFlow", [rstep("start", FAIL_FIRST, "end"), rstep("end", None)])
    code, out, err = flow.run(capsys, "--with", "retry", "run")
    assert code == 0, out + err
    run_id = flow.only_run()
    task_id = flow.task(run_id, "start")["task_id"]
    attempts = list(flow.ds.attempts(run_id, "start", task_id))
    assert [(r["attempt"], r["successful"]) for r in attempts] == [(1, True), (0, False)]
    assert "ok" in attempts[0]["artifacts"] and attempts[1]["artifacts"] == {}
    assert "first attempt fails" in flow.stderr(run_id, "start", attempt=0)
    assert "retrying" in out


def test_retry_times_zero_wins_over_with_retry(flow_dir, capsys):
    flow = Flow(flow_dir, "NoRetryFlow", [rstep("start", FAIL_FIRST, "end", decorators=[("retry", {"times": 0})]),
                                          rstep("end", None)])
    code, out, err = flow.run(capsys, "--with", "retry", "run")
    assert code == 1
    run_id = flow.only_run()
    assert f"Run NoRetryFlow/{run_id} failed in step 'start'" in err
    assert "Traceback" not in out + err
    task_id = flow.task(run_id, "start")["task_id"]
    assert [(r["attempt"], r["successful"]) for r in flow.ds.attempts(run_id, "start", task_id)] == [(0, False)]
    assert flow.ds.task_ids(run_id, "end") == []
    assert flow.ds.run_status(run_id)["successful"] is False


def test_timeout_stops_a_sleeping_task(flow_dir, capsys):
    flow = Flow(flow_dir, "TimeoutFlow", [
        rstep("start", 'cat("going to sleep\\n")\nSys.sleep(60)\ncat("woke up\\n")', "end",
              decorators=[("timeout", {"seconds": 1})]),
        rstep("end", None),
    ])
    code, out, err = flow.run(capsys, "run")
    assert code == 1
    run_id = flow.only_run()
    record = flow.task(run_id, "start")
    assert record["successful"] is False and "timed out after 1 s" in record["error"]
    assert "going to sleep" in flow.stdout(run_id, "start")
    assert "woke up" not in flow.stdout(run_id, "start")  # stopped, not waited for
    assert "failed in step 'start'" in err


def test_resume_reuses_finished_tasks(flow_dir, capsys):
    flag = flow_dir / "fixed"
    counter = flow_dir / "start-ran"
    flow = Flow(flow_dir, "ResumeFlow", [
        rstep("start", f'cat("ran\\n", file = "{counter}", append = TRUE)\ncat("hello from start\\n")\nself$x <- 41',
              "a"),
        rstep("a", f'if (!file.exists("{flag}")) stop("not fixed yet")\nself$y <- self$x + 1', "end"),
        rstep("end", 'cat("y is", self$y, "\\n")'),
    ])
    code, _, err = flow.run(capsys, "run")
    assert code == 1 and "failed in step 'a'" in err
    (origin,) = flow.ds.run_ids()
    origin_start = flow.task(origin, "start")

    flag.write_text("yes")
    code, out, err = flow.run(capsys, "resume")
    assert code == 0, out + err
    (resumed,) = [r for r in flow.ds.run_ids() if r != origin]
    assert flow.ds.run_record(resumed)["origin_run_id"] == origin
    start = flow.task(resumed, "start")
    assert start["cloned_from"] == f"{origin}/start/{origin_start['task_id']}"
    assert start["task_id"] == origin_start["task_id"]
    assert start["artifacts"] == origin_start["artifacts"]
    a = flow.task(resumed, "a")
    assert a["successful"] and "cloned_from" not in a
    assert a["input_paths"] == [f"{resumed}/start/{start['task_id']}"]
    assert counter.read_text() == "ran\n"  # start did not run again
    assert "hello from start" in flow.stdout(resumed, "start")  # a clone keeps the task's log
    assert "y is 42" in flow.stdout(resumed, "end")
    assert flow.ds.run_status(resumed)["successful"] is True


def test_a_killed_task_commits_nothing(flow_dir, capsys):
    flow = Flow(flow_dir, "KilledFlow", [
        rstep("start", "self$x <- 1", "a"),
        rstep("a", 'self$secret <- "never stored"\ntools::pskill(Sys.getpid(), 9)\nSys.sleep(5)', "end"),
        rstep("end", None),
    ])
    code, out, err = flow.run(capsys, "run")
    assert code == 1
    assert "failed in step 'a'" in err and "Traceback" not in out + err
    run_id = flow.only_run()
    assert flow.ds.run_status(run_id)["successful"] is False
    a_task = flow.ds.task_ids(run_id, "a")[0]
    # the killed process committed no successful attempt and none of its artifacts
    assert not any(r["successful"] for r in flow.ds.attempts(run_id, "a", a_task))
    stored = set(flow.ds.storage.list_children("KilledFlow/data"))
    assert {sha[:2] for sha in flow.task(run_id, "start")["artifacts"].values()} == stored
    blobs = [b for d in stored for b in flow.ds.storage.list_children(f"KilledFlow/data/{d}")]
    assert sorted(blobs) == sorted(flow.task(run_id, "start")["artifacts"].values())
    assert flow.ds.task_ids(run_id, "end") == []


def test_every_task_is_a_fork_of_one_warm_r_with_a_tempdir_of_its_own(flow_dir, capsys):
    """One R per run, not one per worker slot: tasks running at once are forks of the same R, and each has
    its own tempdir(), empty at its start, while what the flow's code put in that R's tempdir is reachable."""
    parent = 'strsplit(sub(".*\\\\) ", "", readLines("/proc/self/stat")), " ")[[1]][2]'  # ppid, after the name
    flow = Flow(flow_dir, "ForkedFlow", [
        rstep("start", "self$items <- 1:6", "body", foreach="items"),
        rstep("body", f"self$parent <- {parent}\nself$seen <- length(list.files(tempdir()))\n"
                      "writeLines('mine', file.path(tempdir(), 'x'))\nself$tmp <- tempdir()\n"
                      "self$flow_file <- readLines(flow_file)\nSys.sleep(0.5)", "join"),
        rstep("join", 'cat("parents:", length(unique(unlist(gather_inputs(inputs, "parent")))), '
                      '"tempdirs:", length(unique(unlist(gather_inputs(inputs, "tmp")))), '
                      '"seen:", unlist(gather_inputs(inputs, "seen")), '
                      '"flow file:", unique(unlist(gather_inputs(inputs, "flow_file"))), "\\n")', "end", join=True),
        rstep("end", None),
    ], preamble='flow_file <- file.path(tempdir(), "made-by-the-flow")\nwriteLines("kept", flow_file)')
    code, out, err = flow.run(capsys, "run", "--max-workers", "3")
    assert code == 0, out + err
    assert "parents: 1 tempdirs: 6 seen: 0 0 0 0 0 0 flow file: kept" in flow.stdout(flow.only_run(), "join")


def resumable_flow(flow_dir: Path) -> "Flow":
    """start stores n = 100, total copies it, check fails until the file 'fixed' exists, end prints total."""
    return Flow(flow_dir, "TotalFlow", [
        rstep("start", "self$n <- 100", "total"),
        rstep("total", "self$total <- self$n", "check"),
        rstep("check", f'if (!file.exists("{flow_dir / "fixed"}")) stop("not fixed yet")', "end"),
        rstep("end", 'cat("total is", self$total, "\\n")'),
    ])


def test_resume_starts_from_the_newest_ended_run_never_one_still_running(flow_dir, capsys):
    flow = resumable_flow(flow_dir)
    assert flow.run(capsys, "run")[0] == 1
    (failed,) = flow.ds.run_ids()
    running = flow.ds.new_run(["user:tester"], {}, "tester", run_id="9999999999999999",
                              extra={"namespace": "user:tester"})  # newer, and not ended
    (flow_dir / "fixed").write_text("")
    code, out, err = flow.run(capsys, "resume")
    assert code == 0, out + err
    assert f"Cloned from run {failed}." in out and running not in out


def test_a_run_whose_status_could_not_be_stored_resumes_in_the_same_session(flow_dir, capsys, monkeypatch):
    """As from an R session, whose process lives on after run() returned: the run it ran has ended."""
    from metaflow_r.client import queries

    flow = resumable_flow(flow_dir)
    real_create = LocalStorage.create

    def full_for_the_status(storage, key, data):
        if key.endswith("/_status.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_create(storage, key, data)

    monkeypatch.setattr(LocalStorage, "create", full_for_the_status)
    code, out, err = flow.run(capsys, "run")
    assert code == 4 and "failed, but its status could not be stored: [Errno 28]" in err, out + err
    monkeypatch.setattr(LocalStorage, "create", real_create)  # space freed
    (origin,) = flow.ds.run_ids()
    info = queries.run("TotalFlow", origin, None, "local", flow.ds.storage.root)
    assert info["finished"] is True and info["successful"] is False
    assert "ended without recording how the run ended" in info["reason"]
    (flow_dir / "fixed").write_text("")
    code, out, err = flow.run(capsys, "resume")
    assert code == 0, out + err
    assert f"Cloned from run {origin}." in out


def test_a_second_resume_of_the_same_run_is_refused_while_the_first_runs(flow_dir, capsys):
    flow = resumable_flow(flow_dir)
    assert flow.run(capsys, "run")[0] == 1
    (failed,) = flow.ds.run_ids()
    first = flow.ds.new_run(["user:tester"], {}, "tester", run_id="1", extra={"namespace": "user:tester"})
    flow.ds.claim_resume(failed, first)  # as a resume still running does
    code, out, err = flow.run(capsys, "resume")
    assert code == 2 and f"Run TotalFlow/{failed} is being resumed already, by run 1." in err
    assert len(flow.ds.run_ids()) == 2  # and no run was started for it
    flow.ds.finish_run(first, False)  # the first one ended: its claim is stale
    (flow_dir / "fixed").write_text("")
    assert flow.run(capsys, "resume", "--origin-run-id", failed)[0] == 0


def test_resume_does_not_reuse_a_task_whose_artifact_is_damaged(flow_dir, capsys):
    """Another valid R object under the blob's name: trusted by name, resume would print total 1079."""
    flow = resumable_flow(flow_dir)
    assert flow.run(capsys, "run")[0] == 1
    (failed,) = flow.ds.run_ids()
    sha = flow.task(failed, "start")["artifacts"]["n"]
    blob = flow.ds.blob_path(sha)
    subprocess.run(["Rscript", "-e", f'saveRDS(1079, "{blob}")'], check=True)
    (flow_dir / "fixed").write_text("")
    code, out, err = flow.run(capsys, "resume")
    assert code == 0, out + err
    assert f"Not reused: its artifact {flow.ds.storage.root}/TotalFlow/data/{sha[:2]}/{sha} is damaged" in out
    (resumed,) = [r for r in flow.ds.run_ids() if r != failed]
    assert "total is 100" in flow.stdout(resumed, "end")
    assert flow.ds.blob_intact(sha)  # storing n again healed the blob


def test_the_resume_hint_quotes_a_script_path_with_a_space(flow_dir, capsys):
    """A hint is a command to paste: ``Rscript my flow.R resume`` would run ``my`` with ``flow.R`` as an argument."""
    flow = Flow(flow_dir, "HintFlow", [rstep("start", 'stop("boom")', "end"), rstep("end")])
    spaced = flow_dir / "my flow.R"
    flow.script.rename(spaced)
    flow.spec["script"] = str(spaced)
    code, out, err = flow.run(capsys, "run")
    assert code == 1 and "Fix the step, then: Rscript 'my flow.R' resume" in err, out + err
