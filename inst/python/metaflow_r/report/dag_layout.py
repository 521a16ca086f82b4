"""Where to draw a flow's steps: layers top to bottom, steps of a layer side by side.

A step's layer is its longest path from a root (``start``), so a join sits below all its branches. An edge
spanning several layers gets a waypoint in each layer it crosses, which takes part in the ordering like a
step, so long edges go around steps instead of through them. Pure geometry: no I/O, no HTML.
"""
from __future__ import annotations

from dataclasses import dataclass

NODE_HEIGHT = 44.0
LAYER_GAP = 46.0  # vertical space between layers, where edges run
NODE_GAP = 28.0  # horizontal space between neighbours
WAYPOINT_WIDTH = 8.0
MARGIN = 16.0
SWEEPS = 4  # barycenter passes (down then up) to reduce edge crossings


@dataclass(frozen=True)
class Box:
    name: str
    x: float  # left
    y: float  # top
    width: float
    height: float

    @property
    def center(self) -> float:
        return self.x + self.width / 2


@dataclass(frozen=True)
class Route:
    source: str
    target: str
    points: tuple[tuple[float, float], ...]  # from the source's bottom to the target's top


@dataclass(frozen=True)
class Layout:
    boxes: dict[str, Box]
    routes: tuple[Route, ...]
    width: float
    height: float


def layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Each node's longest distance from a node without parents; nodes on a cycle go below the rest."""
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in edges:
        parents[target].append(source)
        children[source].append(target)
    waiting = {n: len(parents[n]) for n in nodes}
    ready = [n for n in nodes if waiting[n] == 0]
    layer: dict[str, int] = {}
    while ready:
        node = ready.pop(0)
        layer[node] = max((layer[p] + 1 for p in parents[node]), default=0)
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    bottom = max(layer.values(), default=-1) + 1
    for node in nodes:  # only a malformed record set can make a cycle; still draw every step
        layer.setdefault(node, bottom)
    return layer


def layout(nodes: list[str], edges: list[tuple[str, str]], widths: dict[str, float]) -> Layout:
    """Positions for ``nodes`` (in their preferred left-to-right order) joined by ``edges``."""
    edges = [(s, t) for s, t in dict.fromkeys(edges) if s in widths and t in widths and s != t]
    layer = layers(nodes, edges)
    rank = {n: i for i, n in enumerate(nodes)}
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for node in sorted(nodes, key=rank.__getitem__):
        rows[layer[node]].append(node)
    # Edges as chains of unit-length links through waypoints; an upward edge (only on a cycle) stays direct.
    links: list[tuple[str, str]] = []
    chains: list[tuple[str, str, list[str]]] = []
    for source, target in edges:
        chain = [source]
        for level in range(layer[source] + 1, layer[target]):
            waypoint = f"\0{source}\0{target}\0{level}"
            rows[level].append(waypoint)
            chain.append(waypoint)
        chain.append(target)
        links.extend(zip(chain, chain[1:]))
        chains.append((source, target, chain))
    _order(rows, links)
    width_of = {**{w: WAYPOINT_WIDTH for row in rows for w in row}, **widths}
    row_widths = [sum(width_of[n] for n in row) + NODE_GAP * (len(row) - 1) for row in rows]
    total = max(row_widths, default=0) + 2 * MARGIN
    boxes: dict[str, Box] = {}
    for level, row in enumerate(rows):
        x = (total - row_widths[level]) / 2
        y = MARGIN + level * (NODE_HEIGHT + LAYER_GAP)
        for node in row:
            boxes[node] = Box(node, x, y, width_of[node], NODE_HEIGHT)
            x += width_of[node] + NODE_GAP
    routes = []
    for source, target, chain in chains:
        first, last = boxes[source], boxes[target]
        middle = [(boxes[w].center, boxes[w].y + NODE_HEIGHT / 2) for w in chain[1:-1]]
        points = [(first.center, first.y + first.height), *middle, (last.center, last.y)]
        routes.append(Route(source, target, tuple(points)))
    height = MARGIN * 2 + len(rows) * NODE_HEIGHT + (len(rows) - 1) * LAYER_GAP
    return Layout({n: b for n, b in boxes.items() if n in widths}, tuple(routes), total, height)


def _order(rows: list[list[str]], links: list[tuple[str, str]]) -> None:
    """Reorder each row by the mean position of its neighbours in the row above (then below)."""
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for source, target in links:
        down.setdefault(source, []).append(target)
        up.setdefault(target, []).append(source)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        sequence = range(1, len(rows)) if downward else range(len(rows) - 2, -1, -1)
        for level in sequence:
            fixed = rows[level - 1] if downward else rows[level + 1]
            position = {n: i for i, n in enumerate(fixed)}
            neighbours = up if downward else down
            current = {n: i for i, n in enumerate(rows[level])}

            def weight(node: str) -> float:
                seen = [position[m] for m in neighbours.get(node, []) if m in position]
                return sum(seen) / len(seen) if seen else current[node]

            rows[level].sort(key=lambda n: (weight(n), current[n]))
