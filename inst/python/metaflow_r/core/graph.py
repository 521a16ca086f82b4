"""Validation and analysis of a flow's graph: node kinds, parents, and which split each join closes.

Every rule a Metaflow graph obeys is checked here, once, so the local runtime and the Step Functions
compiler can trust the graph they are given.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from metaflow_r.core.errors import GraphError, ParameterError
from metaflow_r.core.rules import (
    NAME_PATTERN,
    PARAMETER_TYPES,
    RESERVED_NAMES,
    RESERVED_PARAMETER_NAMES,
    check_decorator,
    reserved_why,
)
from metaflow_r.core.spec import FlowSpec, StepSpec


@dataclass
class Node:
    """A step with what the analysis learned about it."""

    spec: StepSpec
    parents: list[str] = field(default_factory=list)
    # The splits open at this step, outermost first (a join has already closed its own).
    split_parents: list[str] = field(default_factory=list)
    matching_split: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def next(self) -> tuple[str, ...]:
        return self.spec.next

    @property
    def is_foreach(self) -> bool:
        return self.spec.foreach is not None

    @property
    def is_branch(self) -> bool:
        return len(self.spec.next) > 1

    @property
    def is_join(self) -> bool:
        return self.spec.join


class FlowGraph:
    """A validated graph. Build it with ``FlowGraph(spec)``; it raises GraphError on the first problem."""

    def __init__(self, spec: FlowSpec) -> None:
        self.spec = spec
        self.nodes: dict[str, Node] = {}
        self._check_names()
        self.nodes = {s.name: Node(s) for s in spec.steps}
        self._check_edges()
        self.order = self._topological_order()
        self._check_reachable()
        self._analyse_splits()

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self):
        return (self.nodes[name] for name in self.order)

    def join_kind(self, name: str) -> str:
        """"foreach" when the join closes a foreach, "branch" when it closes a branch."""
        split = self.nodes[self.nodes[name].matching_split]
        return "foreach" if split.is_foreach else "branch"

    def descendants(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.nodes[current].next)
        return seen

    # -- checks ------------------------------------------------------------------------------

    def _check_names(self) -> None:
        check_names(self.spec)
        for decorator in self.spec.decorators:
            check_decorator(decorator.name, decorator.attributes, "metaflow()")
        for step in self.spec.steps:
            for decorator in step.decorators:
                check_decorator(decorator.name, decorator.attributes, f"step(\"{step.name}\")")

    def _check_edges(self) -> None:
        for required in ("start", "end"):
            if required not in self.nodes:
                raise GraphError(
                    f"The flow has no {required!r} step.",
                    [("i", "Every flow starts at a step named \"start\" and finishes at a step named \"end\".")],
                )
        known = ", ".join(self.nodes)
        for node in self.nodes.values():
            for target in node.next:
                if target not in self.nodes:
                    raise GraphError(
                        f"Step {node.name!r} has next_step {target!r}, which is not a step of the flow.",
                        [("x", f"The steps are: {known}."), ("i", "Fix the name in next_step or add that step.")],
                    )
                self.nodes[target].parents.append(node.name)
            if node.name == "end" and node.next:
                raise GraphError(
                    "The \"end\" step must not have a next_step.", [("i", "Remove next_step from step(\"end\").")]
                )
            if node.name != "end" and not node.next:
                raise GraphError(
                    f"Step {node.name!r} has no next_step.",
                    [("i", "Every step but \"end\" names the step(s) that follow it with next_step.")],
                )
            if len(set(node.next)) != len(node.next):
                raise GraphError(f"Step {node.name!r} names the same next_step twice.")
            if node.is_foreach and len(node.next) != 1:
                raise GraphError(
                    f"Step {node.name!r} is a foreach and must have exactly one next_step.",
                    [("i", "A foreach runs one step per item; branch inside that step if you need to.")],
                )
        if self.nodes["start"].parents:
            raise GraphError(
                "The \"start\" step cannot be a next_step.",
                [("x", f"It follows {', '.join(self.nodes['start'].parents)}.")],
            )

    def _topological_order(self) -> list[str]:
        """Depth-first from start, iteratively (a 1,000-step chain must not hit Python's recursion limit)."""
        order: list[str] = []
        done: set[str] = set()
        path: list[str] = ["start"]
        pending = [iter(self.nodes["start"].next)]
        while pending:
            target = next(pending[-1], None)
            if target is None:
                pending.pop()
                finished = path.pop()
                done.add(finished)
                order.append(finished)
            elif target in path:
                cycle = path[path.index(target):] + [target]
                raise GraphError(
                    f"The flow has a cycle: {' -> '.join(cycle)}.",
                    [("i", "Flows are acyclic; loop inside a step or use foreach instead.")],
                )
            elif target not in done:
                path.append(target)
                pending.append(iter(self.nodes[target].next))
        return list(reversed(order))

    def _check_reachable(self) -> None:
        unreachable = [name for name in self.nodes if name not in self.order]
        if unreachable:
            raise GraphError(
                f"Step {unreachable[0]!r} cannot be reached from \"start\".",
                [("i", "Name it in some step's next_step, or remove it.")],
            )

    def _analyse_splits(self) -> None:
        for name in self.order:
            node = self.nodes[name]
            if not node.parents:
                node.split_parents = []
                continue
            stacks = [self._child_stack(self.nodes[p]) for p in node.parents]
            if node.is_join:
                self._analyse_join(node, stacks)
            elif len(node.parents) > 1:
                raise GraphError(
                    f"Step {name!r} has several parents ({', '.join(node.parents)}) but is not a join.",
                    [("i", f"Declare it with step(step = \"{name}\", ..., join = TRUE) and a function(self, inputs).")],
                )
            else:
                node.split_parents = stacks[0]
        end = self.nodes["end"]
        if end.split_parents:
            raise GraphError(
                f"The split at step {end.split_parents[-1]!r} is never joined before \"end\".",
                [("i", "Add a step with join = TRUE that all its branches lead to.")],
            )

    def _child_stack(self, parent: Node) -> list[str]:
        return parent.split_parents + [parent.name] if (parent.is_branch or parent.is_foreach) else parent.split_parents

    def _analyse_join(self, node: Node, stacks: list[list[str]]) -> None:
        if any(stack != stacks[0] for stack in stacks) or not stacks[0]:
            if not stacks[0]:
                raise GraphError(
                    f"Step {node.name!r} is declared join = TRUE but joins no split.",
                    [("i", "Only a step that closes a branch or a foreach is a join; drop join = TRUE.")],
                )
            raise GraphError(
                f"Step {node.name!r} joins steps from different splits ({', '.join(node.parents)}).",
                [("i", "A join closes exactly one split: join the inner split first.")],
            )
        split = self.nodes[stacks[0][-1]]
        expected = 1 if split.is_foreach else len(split.next)
        if len(node.parents) != expected:
            raise GraphError(
                f"Step {node.name!r} joins {len(node.parents)} step(s) but the split at {split.name!r} "
                f"opens {expected}.",
                [("i", "Every branch of a split must lead to its join.")],
            )
        node.matching_split = split.name
        node.split_parents = stacks[0][:-1]


def check_names(spec: FlowSpec) -> None:
    """The names alone (flow, steps, parameters): enough to build the command line from the spec."""
    if not NAME_PATTERN.fullmatch(spec.name or ""):
        raise GraphError(
            f"The flow name {spec.name!r} is not a valid name.",
            [("i", "Use letters, digits and underscores, starting with a letter, e.g. metaflow(\"MyFlow\").")],
        )
    seen: set[str] = set()
    for step in spec.steps:
        if not NAME_PATTERN.fullmatch(step.name):
            raise GraphError(
                f"Step name {step.name!r} is not a valid name.",
                [("i", "Use letters, digits and underscores, starting with a letter or underscore.")],
            )
        if step.name in seen:
            raise GraphError(
                f"Step {step.name!r} is defined twice.", [("i", "Give every step() a distinct name.")]
            )
        seen.add(step.name)
        if step.foreach is not None and not NAME_PATTERN.fullmatch(step.foreach):
            raise GraphError(
                f"Step {step.name!r} has foreach = {step.foreach!r}, which is not an artifact name.",
                [("i", "Pass the name of the artifact to split over as a string, e.g. foreach = \"items\".")],
            )
    for param in spec.parameters:
        if not NAME_PATTERN.fullmatch(param.name):
            raise ParameterError(f"Parameter name {param.name!r} is not a valid name.")
        if param.name in RESERVED_NAMES | RESERVED_PARAMETER_NAMES:
            raise ParameterError(f"Parameter name {param.name!r} is reserved.",
                                 [("i", reserved_why(param.name)), ("i", "Choose another name.")])
        if param.type not in PARAMETER_TYPES:
            raise ParameterError(
                f"Parameter {param.name!r} has type {param.type!r}.",
                [("i", f"Use one of: {', '.join(PARAMETER_TYPES)}.")],
            )
    names = [p.name for p in spec.parameters]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ParameterError(f"Parameter {duplicates[0]!r} is defined twice.")
