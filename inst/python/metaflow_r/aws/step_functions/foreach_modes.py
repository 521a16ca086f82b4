"""Which construct each foreach compiles to (compile.py's FOREACH_MODES), chosen per foreach unless forced.

``auto`` keeps a foreach an inline Map while it is narrow: its items all run at once within the inline
Map's 40 (or --max-workers is at most 40), and the execution's history stays within 80 % of its quota
(the rest is room for retried submissions). Otherwise a one-step body runs as Batch array jobs (a
handful of state transitions however wide), and any other body as a DISTRIBUTED Map (a child execution
per item, each with its own history). Nested foreaches are chosen together: while an execution's
history is over budget, its costliest inline Map is made wide.
"""
from __future__ import annotations

from typing import Any, Callable

from metaflow_r.aws.step_functions.compile import DEFAULT_MAX_NUM_SPLITS, FOREACH_MODES
from metaflow_r.aws.step_functions.quota import (
    DYNAMODB_ITEM_BYTES,
    HISTORY_EVENTS,
    INLINE_MAP_CONCURRENCY,
    STATE_PAYLOAD_BYTES,
    Budget,
)
from metaflow_r.core.errors import UsageError
from metaflow_r.core.graph import FlowGraph, Node

AUTO = "auto"
HISTORY_SHARE = 0.8  # of the quota, when auto decides: a retried submission adds events


def foreach_steps(graph: FlowGraph) -> list[Node]:
    return [node for node in graph if node.is_foreach]


def one_step_body(graph: FlowGraph, node: Node) -> str | None:
    """The body step of a foreach whose body is one plain step (what an array job can run), else None."""
    body = graph[node.next[0]]
    if body.is_foreach or body.is_branch or not body.next:
        return None
    after = graph[body.next[0]]
    return body.name if after.is_join and after.matching_split == node.name else None


def per_step(values: tuple[str, ...], option: str, parse: Callable[[str], Any], default: Any,
             graph: FlowGraph) -> dict[str, Any]:
    """``--option VALUE`` (every foreach) and ``--option STEP=VALUE`` (one foreach, wins), per foreach step."""
    names = [node.name for node in foreach_steps(graph)]
    every, single = default, {}
    for value in values:
        step, sep, text = value.rpartition("=")
        if sep and step not in names:
            raise UsageError(f"{option} {value}: {step!r} is not a foreach step of the flow.",
                             [("i", f"Its foreach steps: {', '.join(names) or 'none'}.")])
        parsed = parse(text)
        if sep:
            single[step] = parsed
        else:
            every = parsed
    return {name: single.get(name, every) for name in names}


def parse_mode(text: str) -> str:
    if text not in (AUTO, *FOREACH_MODES):
        raise UsageError(f"--foreach-mode {text!r} is not a construct.",
                         [("i", f"Use one of {', '.join((AUTO, *FOREACH_MODES))}, for every foreach or as STEP=MODE.")])
    return text


def parse_width(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--max-num-splits {text!r} is not a positive whole number.",
                         [("i", f"Write --max-num-splits 100000, or STEP=100000 for one foreach "
                                f"(default {DEFAULT_MAX_NUM_SPLITS:,}).")])
    return int(text)


def check_forced(graph: FlowGraph, modes: dict[str, str]) -> None:
    for step, mode in modes.items():
        body = one_step_body(graph, graph[step])
        if mode == "array" and body is None:
            raise UsageError(f"Foreach {step!r} cannot run as Batch array jobs: its body is more than one step.",
                             [("i", "An array job runs one step per item; use --foreach-mode "
                                    f"{step}=distributed (or leave it to auto).")])
        if mode == "array" and graph[body].spec.retry_delay_seconds(None):
            raise UsageError(f"Foreach {step!r} cannot run as Batch array jobs: its body {body!r} waits between "
                             "retries (minutes_between_retries), and Batch retries an array's children at once.",
                             [("i", f"Use --foreach-mode {step}=distributed (or leave it to auto), or drop "
                                    "minutes_between_retries.")])


def wide_mode(graph: FlowGraph, node: Node) -> str:
    """A wide foreach's construct: array jobs for a one-step body Batch may retry (at once), else a
    distributed Map."""
    body = one_step_body(graph, node)
    return "array" if body and not graph[body].spec.retry_delay_seconds(None) else "distributed"


def choose(graph: FlowGraph, requested: dict[str, str], widths: dict[str, int], max_workers: int,
           estimate: Callable[[dict[str, str]], Budget]) -> dict[str, str]:
    """Each foreach's construct: the requested one, or for ``auto`` the cheapest that fits (module doc).

    ``estimate(modes)`` compiles the flow with those modes and returns its Budget."""
    check_forced(graph, {s: m for s, m in requested.items() if m != AUTO})
    free = {step for step, mode in requested.items() if mode == AUTO}
    modes = {step: mode for step, mode in requested.items() if mode != AUTO}
    for step in sorted(free):
        narrow = min(widths[step], max_workers) <= INLINE_MAP_CONCURRENCY
        modes[step] = "inline" if narrow else wide_mode(graph, graph[step])
    while True:
        budget = estimate(modes)
        culprit = _costliest_inline(budget, free & {s for s, m in modes.items() if m == "inline"})
        if culprit is None:
            return modes
        modes[culprit] = wide_mode(graph, graph[culprit])


def _costliest_inline(budget: Budget, candidates: set[str]) -> str | None:
    """The inline foreach to make wide first, or None when the plan fits (or nothing can be changed)."""
    limit = HISTORY_EVENTS * HISTORY_SHARE
    for over, events in ((budget.run_history > limit, budget.inline_events),
                         (budget.largest_child_history > limit, budget.child_inline_events)):
        if over:
            ranked = sorted(((e, name[: -len("-foreach")]) for name, e in events.items()), reverse=True)
            for _, step in ranked:
                if step in candidates:
                    return step
    for over, step in ((budget.largest_payload > STATE_PAYLOAD_BYTES, budget.payload_step),
                       (budget.largest_dynamodb_item > DYNAMODB_ITEM_BYTES, budget.dynamodb_step)):
        if over and step in candidates:
            return step
    return None
