"""The graph as text a user reads: a step list, or mermaid for GitHub and Quarto."""
from __future__ import annotations

from metaflow_r.core.errors import UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec

FORMATS = ("text", "mermaid")


def describe(graph: FlowGraph) -> str:
    spec = graph.spec
    lines = [f"Flow {spec.name}", ""]
    if spec.parameters:
        lines.append("Parameters:")
        for p in spec.parameters:
            default = "" if p.default is None else f", default {p.default!r}"
            required = ", required" if p.required else ""
            lines.append(f"  --{p.name} ({p.type}{default}{required})" + (f"  {p.help}" if p.help else ""))
        lines.append("")
    lines.append("Steps:")
    for node in graph:
        kind = []
        if node.is_foreach:
            kind.append(f"foreach over {node.spec.foreach}")
        if node.is_join:
            kind.append(f"joins {', '.join(node.parents)}")
        suffix = f"  ({'; '.join(kind)})" if kind else ""
        lines.append(f"  {node.name}{suffix}")
        if node.next:
            lines.append(f"    => {', '.join(node.next)}")
    return "\n".join(lines)


def mermaid(graph: FlowGraph) -> str:
    """A Mermaid flowchart. Node ids carry a prefix, since a bare ``end`` (like ``graph`` or ``style``) is a
    Mermaid keyword; the labels are the step names."""
    lines = ["flowchart TD"]
    lines.extend(f'    {_node_id(node.name)}["{node.name}"]' for node in graph)
    for node in graph:
        for target in node.next:
            label = f'|"foreach {node.spec.foreach}"|' if node.is_foreach else ""
            lines.append(f"    {_node_id(node.name)} -->{label} {_node_id(target)}")
    return "\n".join(lines)


def _node_id(step: str) -> str:
    return f"step_{step}"


def render(spec_json: str, format: str = "text") -> str:
    """``show(flow, format =)`` in R: the flow's graph, validated, as text or mermaid."""
    if format not in FORMATS:
        raise UsageError(f"Unknown format {format!r}.", [("i", f"Use one of: {', '.join(FORMATS)}.")])
    graph = FlowGraph(parse_spec(spec_json))
    return mermaid(graph) if format == "mermaid" else describe(graph)
