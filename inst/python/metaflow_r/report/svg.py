"""The report's two pictures, as inline SVG: the graph coloured by step status, and the timeline of every
attempt (a lane per concurrent task, the axis in a clock's round intervals)."""
from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable

from metaflow_r.report import dag_layout
from metaflow_r.report.run_view import STATUSES, RunView, StepView, TaskView
from metaflow_r.report.text import duration, slug

TIMELINE_WIDTH = 960.0
LANE_HEIGHT = 12.0
STEP_BLOCK_MAX = 160.0  # a step with many concurrent tasks squeezes its lanes into this height
CHAR_WIDTH = 7.8  # monospace 13px, for sizing boxes without a browser
SMALL_CHAR_WIDTH = 6.4  # sans-serif 11px
CLOCK_TICKS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _subtitle(step: StepView) -> str:
    done = sum(t.successful for t in step.tasks)
    total = step.expected if step.expected is not None else len(step.tasks)
    if total <= 1 and len(step.tasks) <= 1:
        return step.status
    if step.status == "succeeded":
        return f"succeeded \u00b7 {done} tasks"
    return f"{step.status} \u00b7 {done}/{max(total, len(step.tasks))}"


def graph(view: RunView) -> str:
    steps = view.steps
    subtitles = {name: _subtitle(step) for name, step in steps.items()}
    widths = {name: max(90.0, len(name) * CHAR_WIDTH + 24, len(subtitles[name]) * SMALL_CHAR_WIDTH + 20)
              for name in steps}
    geometry = dag_layout.layout(list(steps), [(s, t) for s, t, _ in view.edges], widths)
    labels = {(s, t): label for s, t, label in view.edges}
    width = max([geometry.width] + [geometry.boxes[s].center + 12 + len(label) * SMALL_CHAR_WIDTH
                                    for s, _, label in view.edges if label and s in geometry.boxes])
    out = [f'<svg class="dag" role="img" aria-label="The graph of {escape(view.flow)}, coloured by step status" '
           f'width="{width:.0f}" height="{geometry.height:.0f}" viewBox="0 0 {width:.0f} {geometry.height:.0f}">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>']
    for route in geometry.routes:
        out.append(f'<path class="edge" marker-end="url(#arrow)" d="{_curve(route.points)}"/>')
        label = labels.get((route.source, route.target))
        if label:
            (x1, y1), (x2, y2) = route.points[0], route.points[1]
            out.append(f'<text class="edge-label" x="{(x1 + x2) / 2 + 6:.1f}" y="{(y1 + y2) / 2 + 4:.1f}">'
                       f'{escape(label)}</text>')
    for name, box in geometry.boxes.items():
        step = steps[name]
        kind = " (foreach)" if step.foreach else " (join)" if step.is_join else ""
        out.append(
            f'<g class="step s-{slug(step.status)}" data-step="{escape(name)}" data-status="{step.status}">'
            f'<title>{escape(name)}{kind}: {escape(subtitles[name])}</title>'
            f'<a href="#step-{escape(name)}"><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
            f'height="{box.height:.1f}" rx="6"/>'
            f'<text class="name" x="{box.center:.1f}" y="{box.y + 18:.1f}" text-anchor="middle">{escape(name)}</text>'
            f'<text class="sub" x="{box.center:.1f}" y="{box.y + 34:.1f}" text-anchor="middle">'
            f'{escape(subtitles[name])}</text></a></g>')
    out.append("</svg>")
    return "".join(out)


def _curve(points: Iterable[tuple[float, float]]) -> str:
    """A smooth path through the points, leaving and entering each one vertically."""
    points = list(points)
    d = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for (x1, y1), (x2, y2) in zip(points, points[1:]):
        mid = (y1 + y2) / 2
        d.append(f"C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}")
    return "".join(d)


def legend() -> str:
    colours = {"succeeded": "#2e7d32", "failed": "#c62828", "running": "#1565c0", "stopped": "#e65100",
               "not reached": "#bdbdbd"}
    return '<p class="legend">' + "".join(f'<span><i style="background:{colours[s]}"></i>{s}</span>'
                                          for s in STATUSES) + "</p>"


# -- the timeline ----------------------------------------------------------------------------------


def timeline(view: RunView) -> str:
    attempts = [(step, task, a) for step in view.steps.values() for task in step.tasks if not task.cloned
                for a in task.attempts]
    if not attempts:
        return '<p class="muted">No task of this run has finished yet.</p>'
    origin = min([a["started_at"] for _, _, a in attempts] + [view.record.get("created_at") or math.inf])
    end = max(a["finished_at"] for _, _, a in attempts)  # not "now": a run whose runtime died never ends
    span = max(end - origin, 1e-3)
    label_width = max(len(s.name) for s in view.steps.values()) * 7.0 + 16
    plot = TIMELINE_WIDTH - label_width - 12
    scale = plot / span
    rows: list[str] = []
    y = 26.0
    for step in view.steps.values():
        mine = sorted(((t, a) for s, t, a in attempts if s is step), key=lambda p: p[1]["started_at"])
        if not mine:
            continue
        lanes = _pack(mine)
        count = max(lanes.values()) + 1
        lane = min(LANE_HEIGHT, max(2.0, STEP_BLOCK_MAX / count))
        height = lane * count
        rows.append(f'<text class="lane-label" x="0" y="{y + min(height, LANE_HEIGHT) - 2:.1f}">{escape(step.name)}'
                    "</text>")
        for task, attempt in mine:
            x = label_width + (attempt["started_at"] - origin) * scale
            w = max(1.0, (attempt["finished_at"] - attempt["started_at"]) * scale)
            ok = bool(attempt.get("successful"))
            tip = (f"{step.name}/{task.task_id}" + (f" [{task.split_label}]" if task.split_label else "")
                   + f" attempt {attempt.get('attempt', 0)}: {'succeeded' if ok else 'failed'} in "
                   + duration(attempt["started_at"], attempt["finished_at"]))
            rows.append(f'<rect class="{"a-ok" if ok else "a-failed"}" x="{x:.1f}" '
                        f'y="{y + lanes[id(attempt)] * lane:.1f}" width="{w:.1f}" height="{max(1.0, lane - 1):.1f}">'
                        f"<title>{escape(tip)}</title></rect>")
        y += height + 8
    axis = []
    step_seconds = _tick(span)
    tick = 0.0
    while tick <= span + 1e-9:
        x = label_width + tick * scale
        axis.append(f'<line x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="{y:.1f}"/>'
                    f'<text x="{x:.1f}" y="12" text-anchor="middle">{_tick_label(tick)}</text>')
        tick += step_seconds
    return (f'<svg class="timeline" role="img" aria-label="When each task ran" width="{TIMELINE_WIDTH:.0f}" '
            f'height="{y:.0f}" viewBox="0 0 {TIMELINE_WIDTH:.0f} {y:.0f}"><g class="axis">{"".join(axis)}</g>'
            + "".join(rows) + "</svg>"
            + '<p class="legend"><span><i style="background:#43a047"></i>attempt succeeded</span>'
              '<span><i style="background:#e53935"></i>attempt failed</span>'
              '<span class="muted">seconds since the run started; hover a bar for its task</span></p>')


def _pack(attempts: list[tuple[TaskView, dict[str, Any]]]) -> dict[int, int]:
    """Lanes for bars sorted by start: each goes into the first lane free by then (so lanes = concurrency)."""
    lanes: list[float] = []
    placed: dict[int, int] = {}
    for _, attempt in attempts:
        for index, free_at in enumerate(lanes):
            if free_at <= attempt["started_at"]:
                break
        else:
            index = len(lanes)
            lanes.append(0.0)
        lanes[index] = attempt["finished_at"]
        placed[id(attempt)] = index
    return placed


def _tick(span: float) -> float:
    """A round tick interval giving about six ticks: 1, 2 or 5 times a power of ten below a second, then
    durations a clock reads (15 s, 5 min, 2 h, ...)."""
    raw = span / 6
    if raw < 1:
        power = 10 ** math.floor(math.log10(raw))
        return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return next((n for n in CLOCK_TICKS if n >= raw), 86400 * math.ceil(raw / 86400))


def _tick_label(seconds: float) -> str:
    for unit, size, above in (("h", 3600, 3600), ("min", 60, 60), ("s", 1, 0)):
        if seconds >= above:
            return f"{round(seconds / size, 3):g} {unit}"
    return "0 s"
