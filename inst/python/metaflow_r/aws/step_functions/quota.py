"""The quota model: what one run of a compiled flow costs on AWS, and how close it comes to each quota,
when every foreach has a given number of items (at most ``--max-num-splits``).

It walks the compiled definition the way Step Functions executes it, success path, no retries: each state
entered is one state transition (what Standard workflows bill) and adds its history events to the execution
it runs in; an INLINE Map adds each iteration's events to that same history; a DISTRIBUTED Map starts one
child execution per item, each with a history of its own. ``tests/python/test_foreach_scale.py`` checks the
counts against the emulator's execution histories.

The quotas, from AWS's documentation (Step Functions "Service quotas"; "Using Map state in Inline mode";
Batch "Array jobs"; DynamoDB "Constraints"; Step Functions pricing, us-east-1):
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from metaflow_r.aws.step_functions.compile import BATCH_RESOURCE, MAX_ARRAY_SIZE, array_chunks
from metaflow_r.core.errors import QuotaExceeded

HISTORY_EVENTS = 25_000  # events in one execution's history (hard quota)
STATE_PAYLOAD_BYTES = 256 * 1024  # a state's or an execution's input or output
DEFINITION_BYTES = 1024 * 1024  # a state machine definition
DYNAMODB_ITEM_BYTES = 400 * 1024  # a DynamoDB item, names and values
INLINE_MAP_CONCURRENCY = 40  # iterations of an inline Map at once, whatever MaxConcurrency says
PRICE_PER_1000_TRANSITIONS = 0.025  # USD, Standard workflows, us-east-1 (4,000 a month are free)
MAX_PARAMETERS_BYTES = 30 * 1024 - 2048  # what `trigger` sends: a Batch SubmitJob takes about 30 KiB
MAX_RUN_ID = 80  # execution names have at most 80 characters

# History events of one state on its success path (Step Functions' event types, as the emulator records them).
PASS_EVENTS = 2  # PassStateEntered, PassStateExited (and ChoiceStateEntered, ChoiceStateExited)
TASK_EVENTS = 5  # TaskStateEntered, TaskScheduled, TaskStarted, TaskSucceeded, TaskStateExited
SYNC_EVENTS = 1  # TaskSubmitted, for a .sync job
CONTAINER_EVENTS = 4  # {Map,Parallel}State{Entered,Started,Succeeded,Exited}
ITERATION_EVENTS = 2  # MapIterationStarted, MapIterationSucceeded
MAP_RUN_EVENTS = 2  # MapRunStarted, MapRunSucceeded
EXECUTION_EVENTS = 2  # ExecutionStarted, ExecutionSucceeded


@dataclass
class _Tally:
    """What a stretch of states costs: ``events`` stay in the execution it runs in."""

    events: int = 0
    transitions: int = 0
    jobs: int = 0
    submits: int = 0
    children: int = 0
    child_history: int = 0  # the largest history among the child executions it starts
    child_history_of: str = ""
    child_inline: dict[str, int] = field(default_factory=dict)  # ``inline`` of that largest child
    inline: dict[str, int] = field(default_factory=dict)  # inline Map -> events it adds to this execution

    def add(self, other: "_Tally", times: int = 1) -> None:
        self.events += other.events * times
        self.transitions += other.transitions * times
        self.jobs += other.jobs * times
        self.submits += other.submits * times
        self.children += other.children * times
        if times and other.child_history > self.child_history:
            self.child_history, self.child_history_of = other.child_history, other.child_history_of
            self.child_inline = other.child_inline
        for name, events in other.inline.items():
            self.inline[name] = self.inline.get(name, 0) + events * times


@dataclass(frozen=True)
class Budget:
    """One run's worst case at the given widths."""

    widths: dict[str, int]
    modes: dict[str, str]
    max_workers: int
    run_history: int  # events of the run's own execution
    largest_child_history: int  # events of the largest child execution (0 without DISTRIBUTED Maps)
    largest_child_of: str
    child_executions: int
    transitions: int
    batch_jobs: int  # tasks run as Batch jobs (an array's children each count)
    submit_calls: int  # SubmitJob calls (an array is one)
    largest_payload: int
    largest_payload_at: str
    largest_dynamodb_item: int
    dynamodb_item_of: str
    definition_bytes: int
    inline_events: dict[str, int]  # inline Map state -> events it adds to the run's execution
    child_inline_events: dict[str, int]  # the same, in the largest child execution
    payload_step: str | None  # the foreach whose lookup makes the largest payload, if one does
    dynamodb_step: str | None

    @property
    def largest_history(self) -> int:
        return max(self.run_history, self.largest_child_history)

    @property
    def price_usd(self) -> float:
        return self.transitions * PRICE_PER_1000_TRANSITIONS / 1000


def _foreach_step(map_name: str) -> str:
    return map_name[: -len("-foreach")]


class _Walker:
    """``width_of(map state)``: its items; ``chunked(map state)``: whether it walks array jobs' chunks."""

    def __init__(self, width_of: Callable[[str], int], chunked: Callable[[str], bool]) -> None:
        self.width_of = width_of
        self.chunked = chunked

    def chain(self, states: dict[str, Any], start: str) -> _Tally:
        tally = _Tally()
        name: str | None = start
        while name is not None:
            state = states[name]
            if state["Type"] == "Choice":
                # The compiler's choices lead to equally costly states; take the dearest to stay a worst case.
                tally.events += PASS_EVENTS
                tally.transitions += 1
                targets = [c["Next"] for c in state["Choices"]] + [state["Default"]]
                options = [self.chain(states, target) for target in targets]
                tally.add(max(options, key=lambda t: (t.events, t.transitions, t.jobs)))
                return tally
            tally.add(self.state(name, state))
            name = None if state.get("End") else state["Next"]
        return tally

    def state(self, name: str, state: dict[str, Any]) -> _Tally:
        kind = state["Type"]
        if kind in ("Pass", "Succeed", "Fail"):
            return _Tally(events=PASS_EVENTS, transitions=1)
        if kind == "Task":
            sync = state["Resource"].endswith(".sync")
            tally = _Tally(events=TASK_EVENTS + (SYNC_EVENTS if sync else 0), transitions=1)
            if state["Resource"] == BATCH_RESOURCE:
                tally.submits = 1
                tally.jobs = 1  # an array job's children are counted by the Map that knows its chunk
            return tally
        if kind == "Parallel":
            tally = _Tally(events=CONTAINER_EVENTS, transitions=1)
            for branch in state["Branches"]:
                tally.add(self.chain(branch["States"], branch["StartAt"]))
            return tally
        if kind == "Map":
            return self.map(name, state)
        raise ValueError(f"the quota model does not know {kind} states ({name})")

    def map(self, name: str, state: dict[str, Any]) -> _Tally:
        width = self.width_of(name)
        processor = state.get("ItemProcessor") or state["Iterator"]  # Iterator: the older name, same meaning
        tally = _Tally(events=CONTAINER_EVENTS, transitions=1)
        if self.chunked(name):
            for chunk in array_chunks(width):
                one = self.chain(processor["States"], processor["StartAt"])
                one.jobs = chunk["size"]
                one.events += ITERATION_EVENTS
                tally.add(one)
            return tally
        body = self.chain(processor["States"], processor["StartAt"])
        if processor.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
            tally.events += MAP_RUN_EVENTS
            child = _Tally(transitions=body.transitions, jobs=body.jobs, submits=body.submits,
                           children=1 + body.children)
            history = EXECUTION_EVENTS + body.events
            if history >= body.child_history:
                child.child_history, child.child_history_of, child.child_inline = history, name, body.inline
            else:
                child.child_history, child.child_history_of = body.child_history, body.child_history_of
                child.child_inline = body.child_inline
            tally.add(child, width)
            return tally
        body.events += ITERATION_EVENTS
        tally.add(body, width)
        tally.inline[name] = tally.inline.get(name, 0) + CONTAINER_EVENTS + (body.events * width)
        return tally


def estimate(definition: dict[str, Any], widths: dict[str, int], modes: dict[str, str], max_workers: int,
             definition_json: str | None = None, split_depths: dict[str, int] | None = None) -> Budget:
    """The Budget of one run of ``definition`` when foreach step F has ``widths[F]`` items.

    ``split_depths`` (foreach step -> how many foreaches enclose it) sizes the split paths; 0 if absent."""
    walker = _Walker(lambda name: widths[_foreach_step(name)], lambda name: modes.get(_foreach_step(name)) == "array")
    run = walker.chain(definition["States"], definition["StartAt"])
    payload, payload_step, item, item_step = _payloads(widths, modes, split_depths or {})
    text = definition_json if definition_json is not None else json.dumps(definition, separators=(",", ":"))
    return Budget(widths=dict(widths), modes=dict(modes), max_workers=max_workers,
                  run_history=EXECUTION_EVENTS + run.events, largest_child_history=run.child_history,
                  largest_child_of=run.child_history_of, child_executions=run.children,
                  transitions=run.transitions, batch_jobs=run.jobs, submit_calls=run.submits,
                  largest_payload=payload, largest_payload_at=_payload_place(payload_step, modes),
                  largest_dynamodb_item=item, dynamodb_item_of=f"foreach {item_step}'s record" if item_step else "",
                  definition_bytes=len(text.encode()), inline_events=run.inline, child_inline_events=run.child_inline,
                  payload_step=payload_step, dynamodb_step=item_step)


def _payload_place(step: str | None, modes: dict[str, str]) -> str:
    if step is None:
        return "the execution's input, with the run's parameters"
    return f"the input of foreach {step}'s {modes.get(step, 'inline')} Map, with its indices"


@dataclass(frozen=True)
class ExecutionCosts:
    """What running a definition costs, whoever compiled it (bench/ applies it to Python Metaflow's)."""

    run_history: int
    largest_child_history: int
    child_executions: int
    transitions: int
    batch_jobs: int


def execution_costs(definition: dict[str, Any], width_of: Callable[[str], int]) -> ExecutionCosts:
    """The success path of ``definition`` when Map state M has ``width_of(M)`` items (no array jobs)."""
    run = _Walker(width_of, lambda name: False).chain(definition["States"], definition["StartAt"])
    return ExecutionCosts(EXECUTION_EVENTS + run.events, run.child_history, run.children, run.transitions, run.jobs)


def _digits_total(n: int) -> int:
    """Characters of str(0) ... str(n - 1) together."""
    total, low, digits = 0, 0, 1
    while low < n:
        high = min(n, 10 ** digits)
        total += (high - low) * digits
        low, digits = high, digits + 1
    return total


def _payloads(widths: dict[str, int], modes: dict[str, str],
              depths: dict[str, int]) -> tuple[int, str | None, int, str | None]:
    """The largest state payload and DynamoDB item a run holds, with what holds them.

    Outside any foreach a state holds the execution's parameters (JSON in a JSON string: each byte may be
    escaped to two) and the run id; inside, an iteration holds the run id and its split path. An inline
    Map's lookup adds its indices to the state; an array's, its chunks; a DISTRIBUTED Map reads S3 instead."""
    widest = max(widths.values(), default=1)
    top = len(json.dumps({"Parameters": "", "run_id": "x" * MAX_RUN_ID})) + 2 * MAX_PARAMETERS_BYTES
    largest, where = top, None
    item, item_of = 0, None
    for step, width in sorted(widths.items()):
        mode = modes.get(step, "inline")
        depth = depths.get(step, 0)
        split_path = depth * (len(str(max(widest - 1, 0))) + 1)
        base = top if depth == 0 else len(json.dumps({"run_id": "x" * MAX_RUN_ID, "split_path": ""})) + split_path
        pathspec = MAX_RUN_ID + 2 * len(step) + split_path + 2
        if mode == "inline":
            indices = width * len('{"N":""},') + _digits_total(width)
            size, dynamo = base + len(',"splits":{"items":[]}') + indices, len("pathspec") + pathspec + \
                len("for_each_cardinality") + 3 + width * 2 + _digits_total(width) // 2 + width
        elif mode == "array":
            chunks = len(json.dumps(array_chunks(width), separators=(",", ":")))
            size, dynamo = base + len(',"splits":{"chunks":}') + chunks, len("pathspec") + pathspec + \
                len("foreach_chunks") + chunks
        else:
            continue
        if size > largest:
            largest, where = size, step
        if dynamo > item:
            item, item_of = dynamo, step
    return largest, where, item, item_of


def check(budget: Budget) -> None:
    """Refuse a plan that breaks a quota: one error naming each quota broken, with what to do."""
    problems: list[tuple[str, str]] = []
    wide = ("i", "Run that foreach as Batch array jobs or a distributed Map: --foreach-mode auto (the default) "
                 "chooses, or name one with --foreach-mode STEP=distributed.")
    for events, where, inline in ((budget.run_history, "The run's execution", budget.inline_events),
                                  (budget.largest_child_history, f"A child execution of {budget.largest_child_of!r}",
                                   budget.child_inline_events)):
        if events > HISTORY_EVENTS:
            costliest = max(inline, key=inline.get, default=None)
            problems.append(("x", f"{where} would record up to {events:,} history events; Step Functions fails an "
                                  f"execution at {HISTORY_EVENTS:,}" +
                                  (f" (foreach {_foreach_step(costliest)!r}, an inline Map, adds "
                                   f"{inline[costliest]:,})." if costliest else ".")))
            problems.append(wide)
    if budget.largest_payload > STATE_PAYLOAD_BYTES:
        problems.append(("x", f"{budget.largest_payload_at[0].upper()}{budget.largest_payload_at[1:]} would be "
                              f"{budget.largest_payload:,} bytes; a state holds at most {STATE_PAYLOAD_BYTES:,}."))
        problems.append(wide)
    if budget.largest_dynamodb_item > DYNAMODB_ITEM_BYTES:
        problems.append(("x", f"{budget.dynamodb_item_of[0].upper()}{budget.dynamodb_item_of[1:]} in DynamoDB "
                              f"would be {budget.largest_dynamodb_item:,} bytes; an item holds at most "
                              f"{DYNAMODB_ITEM_BYTES:,}."))
        problems.append(wide)
    if problems:
        bound = ", ".join(f"{s} {w:,}" for s, w in sorted(budget.widths.items()))
        problems.append(("i", f"Or plan for narrower foreaches with --max-num-splits (now {bound})."))
    if budget.definition_bytes > DEFINITION_BYTES:
        problems.append(("x", f"The state machine definition is {budget.definition_bytes:,} bytes; AWS allows "
                              f"{DEFINITION_BYTES:,}."))
        problems.append(("i", "Split the flow into smaller flows."))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise QuotaExceeded("This flow's state machine would break AWS Step Functions quotas.", unique)


def notes(budget: Budget, body_steps: dict[str, str]) -> list[str]:
    """What the user may not expect from the constructs chosen (not errors)."""
    found = []
    for step, mode in sorted(budget.modes.items()):
        width = budget.widths.get(step, 0)
        if mode == "inline" and min(width, budget.max_workers) > INLINE_MAP_CONCURRENCY:
            found.append(f"Foreach {step!r} is an inline Map: at most {INLINE_MAP_CONCURRENCY} of its items run at "
                         f"once, not --max-workers {budget.max_workers}.")
        if mode == "array":
            found.append(f"Foreach {step!r} runs step {body_steps.get(step, '?')!r} as Batch array jobs: how many "
                         f"run at once is up to the job queue's compute environment, not --max-workers.")
    return found


def usd(amount: float) -> str:
    """Dollars with cents, or with the digits that matter for less than a cent."""
    return f"${amount:,.2f}" if amount >= 0.01 else f"${amount:.2g}"


def explain(budget: Budget, notes_text: list[str] = ()) -> str:
    """The budget as text, for create --explain."""
    construct = {"inline": "an inline Map", "array": f"Batch array jobs of up to {MAX_ARRAY_SIZE:,}",
                 "distributed": "a distributed Map, a child execution each"}
    lines = [f"Quota budget of one run, each foreach at its most items (--max-num-splits), "
             f"--max-workers {budget.max_workers}:"]
    for step, mode in sorted(budget.modes.items()):
        lines.append(f"  foreach {step}: {budget.widths[step]:,} items as {construct[mode]}")
    child = (f"; largest child execution {budget.largest_child_history:,} (of {budget.largest_child_of})"
             if budget.child_executions else "")
    lines += [
        f"  history events: the run's execution {budget.run_history:,}{child}; quota {HISTORY_EVENTS:,} each",
        f"  child executions: {budget.child_executions:,}",
        f"  state transitions: {budget.transitions:,} ({usd(budget.price_usd)} at "
        f"${PRICE_PER_1000_TRANSITIONS} per 1,000, us-east-1)",
        f"  Batch: {budget.batch_jobs:,} tasks, {budget.submit_calls:,} SubmitJob calls",
        f"  largest state payload: {budget.largest_payload:,} of {STATE_PAYLOAD_BYTES:,} bytes "
        f"({budget.largest_payload_at})",
    ]
    if budget.largest_dynamodb_item:
        lines.append(f"  largest DynamoDB item: {budget.largest_dynamodb_item:,} of {DYNAMODB_ITEM_BYTES:,} bytes "
                     f"({budget.dynamodb_item_of})")
    lines.append(f"  definition: {budget.definition_bytes:,} of {DEFINITION_BYTES:,} bytes")
    lines += [f"  note: {note}" for note in notes_text]
    return "\n".join(lines)
