"""What a run looks like from its records: each step's status, its tasks and their attempts, the failures.

Reads only the datastore (run record, ``_status.json``, every committed attempt, the failed attempts' logs), so
it describes a local run and a production run alike. The graph comes from the flow when the caller has it;
otherwise from the steps and parents the records name, which leaves out the steps the run never reached.

A step's status:

- ``succeeded``: every task it was due to run has a successful attempt;
- ``failed``: a task's last attempt failed and the run has ended;
- ``running``: the run has not ended and the step has work started or due (a failed attempt being retried
  counts here);
- ``stopped``: the run ended with some of the step's tasks done and others never finished;
- ``not reached``: no task of the step ran.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from metaflow_r.core.graph import FlowGraph
from metaflow_r.datastore.flow import FlowDatastore
from metaflow_r.report.dag_layout import layers

STATUSES = ("succeeded", "failed", "running", "stopped", "not reached")
LOG_TAIL_LINES = 40
READERS = 16  # concurrent reads of attempt records


@dataclass
class TaskView:
    step: str
    task_id: str
    attempts: list[dict[str, Any]]  # committed attempt records, oldest first

    @property
    def latest(self) -> dict[str, Any]:
        return self.attempts[-1]

    @property
    def successful(self) -> bool:
        return bool(self.latest.get("successful"))

    @property
    def cloned(self) -> bool:
        """Reused by ``resume`` from an earlier run: its times are that run's."""
        return bool(self.latest.get("cloned_from"))

    @property
    def split_label(self) -> str:
        """The foreach indices the task ran with, outermost first ("2", "0/3"); "" outside a foreach."""
        stack = self.latest.get("split_stack") or []
        return "/".join(str(f.get("index")) for f in stack if f.get("kind") == "foreach")


@dataclass
class StepView:
    name: str
    tasks: list[TaskView] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    foreach: str | None = None
    is_join: bool = False
    expected: int | None = None  # how many tasks it is due to run, once its parents are done
    status: str = "not reached"

    @property
    def started_at(self) -> float | None:
        return min((a["started_at"] for t in self.tasks if not t.cloned for a in t.attempts), default=None)

    @property
    def finished_at(self) -> float | None:
        return max((a["finished_at"] for t in self.tasks if not t.cloned for a in t.attempts), default=None)


@dataclass
class Failure:
    """A task whose last attempt failed, with what it left to explain why."""

    task: TaskView
    reason: str  # the runtime's reason, e.g. "exit status 1"
    exception: dict[str, Any] | None  # {"class", "message", "call", "traceback"} when the task recorded one
    log_tail: str  # the last LOG_TAIL_LINES lines the task printed (stderr, else stdout)
    log_cut: bool  # whether it printed more


@dataclass
class RunView:
    flow: str
    run_id: str
    record: dict[str, Any]
    ended: dict[str, Any] | None  # _status.json: None while the run is going (or if its runtime died)
    steps: dict[str, StepView]  # in drawing order
    edges: list[tuple[str, str, str]]  # (parent, child, label)
    graph_source: str  # "flow" or "datastore"
    failures: list[Failure]
    read_at: float

    @property
    def status(self) -> str:
        if self.ended is None:
            return "running"
        return "succeeded" if self.ended.get("successful") else "failed"


def read_run(ds: FlowDatastore, run_id: str, graph: FlowGraph | None = None) -> RunView:
    """Everything the report shows about ``run_id``; the caller has checked that the run exists."""
    record = ds.run_record(run_id) or {}
    ended = ds.run_status(run_id)
    tasks = _read_tasks(ds, run_id)
    if graph is not None:
        steps, edges = _from_graph(graph)
        source = "flow"
    else:
        steps, edges = {}, []
        source = "datastore"
    _add_recorded_steps(steps, edges, tasks)
    for name, step in steps.items():
        step.tasks = tasks.get(name, [])
    _set_statuses(steps, graph, finished=ended is not None)
    failures = [_failure(ds, run_id, task) for step in steps.values() if step.status == "failed"
                for task in step.tasks if not task.successful]
    return RunView(ds.flow, run_id, record, ended, steps, edges, source, failures, time.time())


def _read_tasks(ds: FlowDatastore, run_id: str) -> dict[str, list[TaskView]]:
    """Every committed attempt, read a few tasks at a time: on S3 each is a request of its own."""
    keys = [(step, task_id) for step in ds.step_names(run_id)
            for task_id in sorted(ds.task_ids(run_id, step), key=lambda t: (len(t), t))]

    def read(key: tuple[str, str]) -> list[dict[str, Any]]:
        return sorted(ds.attempts(run_id, *key), key=lambda a: a.get("attempt", 0))

    found: dict[str, list[TaskView]] = {}
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for (step, task_id), attempts in zip(keys, pool.map(read, keys)):
            if attempts:
                found.setdefault(step, []).append(TaskView(step, task_id, attempts))
    return found


def _from_graph(graph: FlowGraph) -> tuple[dict[str, StepView], list[tuple[str, str, str]]]:
    edges = [(node.name, child, f"foreach {node.spec.foreach}" if node.is_foreach else "")
             for node in graph for child in node.next]
    steps = {name: StepView(name, parents=list(graph[name].parents), foreach=graph[name].spec.foreach,
                            is_join=graph[name].is_join) for name in _reading_order(graph)}
    return steps, edges


def _reading_order(graph: FlowGraph) -> list[str]:
    """Layer by layer (parents before children), and within a layer branches in the order next_step names
    them."""
    seen = ["start"]
    for name in seen:
        seen.extend(child for child in graph[name].next if child not in seen)
    layer = layers(seen, [(node.name, child) for node in graph for child in node.next])
    return sorted(seen, key=lambda name: (layer[name], seen.index(name)))


def _add_recorded_steps(steps: dict[str, StepView], edges: list[tuple[str, str, str]],
                        tasks: dict[str, list[TaskView]]) -> None:
    """Steps the records show but the graph lacks (no graph, or a flow edited since), in the order they ran."""
    first_start = {name: min(a["started_at"] for t in views for a in t.attempts) for name, views in tasks.items()}
    for name in sorted(tasks, key=lambda n: (first_start[n], n)):
        if name in steps:
            continue
        parents = sorted({path.split("/")[1] for t in tasks[name] for path in t.latest.get("input_paths") or []
                          if path.count("/") == 2})
        steps[name] = StepView(name, parents=parents, is_join=len(tasks[name][0].latest.get("input_paths") or []) > 1)
        edges.extend((parent, name, "") for parent in parents)


def _set_statuses(steps: dict[str, StepView], graph: FlowGraph | None, finished: bool) -> None:
    """Statuses in drawing order, parents first, since a step is only done once its parents are."""
    children: dict[str, list[str]] = {}
    for step in steps.values():
        for parent in step.parents:
            children.setdefault(parent, []).append(step.name)
    for step in steps.values():
        parents = [steps[p] for p in step.parents if p in steps]
        step.expected = _expected(step, steps, graph) if all(p.status == "succeeded" for p in parents) else None
        step.status = _status(step, parents, [steps[c] for c in children.get(step.name, [])], graph, finished)


def _status(step: StepView, parents: list[StepView], children: list[StepView], graph: FlowGraph | None,
            finished: bool) -> str:
    done = sum(t.successful for t in step.tasks)
    if done < len(step.tasks):
        return "failed" if finished else "running"  # before the run ends, a failed attempt is being retried
    if step.expected is not None and done >= step.expected > 0:
        return "succeeded"
    if (graph is None or step.name not in graph.nodes) and done:
        # Nothing says how many tasks were due: done when the run is, or once a later step has started.
        return "succeeded" if finished or any(c.tasks for c in children) else "running"
    if finished:
        return "stopped" if done else "not reached"
    if done or not step.parents:
        return "running"
    # A task starts once its parent task is done; a join, once every branch or foreach task it joins is.
    due = (parents and all(p.status == "succeeded" for p in parents)) if step.is_join else \
        any(t.successful for p in parents for t in p.tasks)
    return "running" if due else "not reached"


def _expected(step: StepView, steps: dict[str, StepView], graph: FlowGraph | None) -> int | None:
    """The number of tasks a step runs, known once its parents are done; None without the graph."""
    if graph is None or step.name not in graph.nodes:
        return None
    node = graph[step.name]
    if not node.parents:
        return 1
    if node.is_join:
        return len([t for t in steps[node.matching_split].tasks if t.successful])
    parent = steps[node.parents[0]]
    done = [t for t in parent.tasks if t.successful]
    if graph[parent.name].is_foreach:
        return sum(int(t.latest.get("num_splits") or 0) for t in done)
    return len(done)


def _failure(ds: FlowDatastore, run_id: str, task: TaskView) -> Failure:
    latest = task.latest
    attempt = int(latest.get("attempt", 0))
    logs = [ds.read_log(run_id, task.step, task.task_id, attempt, stream) for stream in ("stderr", "stdout")]
    text = next((log for log in logs if log.strip()), "")
    lines = text.rstrip("\n").splitlines()
    exception = latest.get("exception") if isinstance(latest.get("exception"), dict) else None
    return Failure(task, str(latest.get("error") or "the task failed"), exception,
                   "\n".join(lines[-LOG_TAIL_LINES:]), len(lines) > LOG_TAIL_LINES)
