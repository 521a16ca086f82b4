"""The graph as text a user reads: a step list, or mermaid for GitHub and Quarto."""
from __future__ import annotations

from .graph import FlowGraph


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
    lines = ["flowchart TD"]
    for node in graph:
        for target in node.next:
            label = f"|foreach {node.spec.foreach}|" if node.is_foreach else ""
            lines.append(f"    {node.name} -->{label} {target}")
    return "\n".join(lines)
