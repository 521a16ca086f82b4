"""A run's report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

Sections: the run (status, times, parameters), its failed tasks' errors, the graph coloured by step status,
a timeline of every attempt, and each step's tasks and artifacts. Every text from the run (names, previews,
errors, logs) is escaped; a Content-Security-Policy forbids the page from loading anything.
"""
from __future__ import annotations

from html import escape
from typing import Any

from metaflow_r.report.run_view import Failure, RunView, StepView
from metaflow_r.report.svg import graph, legend, timeline
from metaflow_r.report.text import clock, code, duration, short, size, slug, text

FOLD_ABOVE_TASKS = 20  # a run with more tasks shows only its unfinished or failed steps' details unfolded
MAX_TASK_ROWS = 100  # per step; a wide foreach lists its first tasks, the timeline still shows every one

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:0 auto;max-width:1040px;
padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}code,pre,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace}
pre{background:#f6f6f6;padding:8px 10px;overflow-x:auto;font-size:12.5px;white-space:pre-wrap;word-break:break-word}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}th,td{text-align:left;padding:3px 10px 3px 0;
vertical-align:top;border-bottom:1px solid #eee}th{color:#555;font-weight:600}
.meta td:first-child{color:#555;padding-right:16px}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;font-size:13px;vertical-align:middle}
.b-succeeded{background:#2e7d32}.b-failed{background:#c62828}.b-running{background:#1565c0}
.b-stopped{background:#e65100}.b-not-reached{background:#9e9e9e}
.step rect{stroke-width:1.5}.step text{fill:#fff}.step .name{font:bold 13px ui-monospace,"DejaVu Sans Mono",monospace}
.step .sub{font:11px system-ui,sans-serif}
.s-succeeded rect{fill:#2e7d32;stroke:#1b5e20}.s-failed rect{fill:#c62828;stroke:#8e0000}
.s-running rect{fill:#1565c0;stroke:#0d47a1}.s-stopped rect{fill:#e65100;stroke:#bf360c}
.s-not-reached rect{fill:#eeeeee;stroke:#9e9e9e;stroke-dasharray:4 3}.s-not-reached text{fill:#555}
.edge{fill:none;stroke:#888;stroke-width:1.4}.edge-label{font:italic 11px system-ui,sans-serif;fill:#666}
.legend span{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:11px;height:11px;
border-radius:2px;margin-right:4px;vertical-align:-1px}
.axis text,.lane-label{font:11px system-ui,sans-serif;fill:#555}.axis line{stroke:#e4e4e4}
.lane-label{font-family:ui-monospace,"DejaVu Sans Mono",monospace}
.a-ok{fill:#43a047}.a-failed{fill:#e53935}
.error{border-left:4px solid #c62828;padding:2px 0 2px 12px;margin:10px 0 18px}
.error .message{color:#b71c1c;font-weight:600;white-space:pre-wrap}
.muted{color:#777}.preview{max-width:460px;white-space:pre-wrap;word-break:break-word}
.top{display:flex;flex-wrap:wrap;gap:12px 40px;align-items:flex-start}.top .legend{margin-top:2px}
details{margin:4px 0 10px}summary{cursor:pointer;font-weight:600}
"""


def render(view: RunView) -> str:
    title = f"{view.flow}/{view.run_id}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}: {view.status}</title><style>{CSS}</style></head><body>",
        f'<h1><span class="mono">{escape(title)}</span> {_badge(view.status)}</h1>',
        f'<div class="top"><div>{_run_table(view)}</div><div>{graph(view)}{legend()}</div></div>',
        _errors(view),
        '<h2>Timeline</h2>',
        timeline(view),
        '<h2>Steps</h2>',
        _steps_table(view),
        *(_step_details(view, step) for step in view.steps.values()),
        f'<p class="muted">Written {clock(view.read_at)} from the run\'s records. '
        + ("The graph is the flow's." if view.graph_source == "flow" else
           "The flow was not available: the graph shows the steps the run reached.")
        + "</p></body></html>",
    ]
    return "\n".join(p for p in parts if p)


# -- the run ---------------------------------------------------------------------------------------


def _run_table(view: RunView) -> str:
    record = view.record
    started = record.get("created_at")
    ended = (view.ended or {}).get("finished_at")
    rows: list[tuple[str, str]] = [
        ("Status", _badge(view.status)),
        ("Started", clock(started)),
        ("Finished", clock(ended) if ended else "not yet" if view.status == "running" else "-"),
        ("Duration", duration(started, ended or view.read_at) + ("" if ended else " so far")),
        ("User", escape(str(record.get("user") or "-"))),
        ("Namespace", code(record.get("namespace") or "-")),
        ("Tags", ", ".join(code(t) for t in record.get("tags") or []) or "-"),
    ]
    if record.get("origin_run_id"):
        rows.append(("Resumed from", code(f"{view.flow}/{record['origin_run_id']}")))
    rows.append(("Seed", code(record["seed"]) if record.get("seed") else "-"))
    parameters = record.get("parameters") or {}
    rows.append(("Parameters", ", ".join(f"{code(k)} = {code(short(v))}" for k, v in parameters.items()) or "none"))
    body = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="meta">{body}</table>'


def _errors(view: RunView) -> str:
    if not view.failures:
        if view.status == "failed":
            return ('<h2>Error</h2><p class="error">The run failed, but no task recorded a failure: its runtime '
                    "stopped before a task could (see the run's console output).</p>")
        return ""
    heading = "Error" if len(view.failures) == 1 else f"Errors ({len(view.failures)} tasks)"
    return f"<h2>{heading}</h2>" + "".join(_failure(view, f) for f in view.failures)


def _failure(view: RunView, failure: Failure) -> str:
    task = failure.task
    attempts = len(task.attempts)
    where = f"{view.flow}/{view.run_id}/{task.step}/{task.task_id}"
    parts = [f'<div class="error" id="error-{escape(task.step)}-{escape(task.task_id)}">',
             f'<h3>Step <span class="mono">{escape(task.step)}</span> failed</h3>',
             f'<p>Task <span class="mono">{escape(where)}</span>'
             + (f", index {escape(task.split_label)}" if task.split_label else "")
             + f", {attempts} attempt{'s' if attempts != 1 else ''}: {escape(failure.reason)}.</p>"]
    exception = failure.exception
    if exception:
        classes = [c for c in exception.get("class") or [] if isinstance(c, str)]
        label = f"{classes[0]}: " if classes else ""
        parts.append(f'<p class="message">{escape(label + str(exception.get("message") or ""))}</p>')
        if exception.get("call"):
            parts.append(f'<p>In <code>{escape(str(exception["call"]))}</code></p>')
        frames = [str(f) for f in exception.get("traceback") or []]
        if frames:
            parts.append("<p>Traceback:</p><pre>" + escape("\n".join(f"{i}. {f}" for i, f in enumerate(frames, 1)))
                         + "</pre>")
    if failure.log_tail:
        parts.append(f"<p>{'The last lines it printed' if failure.log_cut else 'What it printed'}:</p>"
                     f"<pre>{escape(failure.log_tail)}</pre>")
    parts.append("</div>")
    return "".join(parts)


# -- the graph -------------------------------------------------------------------------------------


# -- the steps -------------------------------------------------------------------------------------


def _steps_table(view: RunView) -> str:
    rows = []
    for step in view.steps.values():
        done = sum(t.successful for t in step.tasks)
        failed = len(step.tasks) - done
        cloned = sum(t.cloned for t in step.tasks)
        counts = f"{done} done" + (f" ({cloned} cloned)" if cloned else "") + (f", {failed} failed" if failed else "")
        if step.expected is not None and step.expected > len(step.tasks):
            counts += f", {step.expected - len(step.tasks)} not finished"
        rows.append(f'<tr class="step-row" data-step="{escape(step.name)}"><td><a class="mono" '
                    f'href="#step-{escape(step.name)}">{escape(step.name)}</a></td><td>{_badge(step.status)}</td>'
                    f"<td>{counts}</td><td>{clock(step.started_at)}</td>"
                    f"<td>{duration(step.started_at, step.finished_at)}</td></tr>")
    return ("<table><tr><th>Step</th><th>Status</th><th>Tasks</th><th>Started</th><th>Took</th></tr>"
            + "".join(rows) + "</table>")


def _step_details(view: RunView, step: StepView) -> str:
    """A step's tasks and artifacts; folded when the run is large, except where something went wrong."""
    if not step.tasks:
        return ""
    small = sum(len(s.tasks) for s in view.steps.values()) <= FOLD_ABOVE_TASKS
    unfolded = " open" if small or step.status != "succeeded" else ""
    parts = [f'<details id="step-{escape(step.name)}"{unfolded}><summary><span class="mono">{escape(step.name)}</span> '
             f"{_badge(step.status)}</summary>", _tasks_table(step), _artifacts(view, step), "</details>"]
    return "".join(parts)


def _tasks_table(step: StepView) -> str:
    indexed = any(t.split_label for t in step.tasks)
    head = "<tr><th>Task</th>" + ("<th>Index</th>" if indexed else "") + \
        "<th>Status</th><th>Attempts</th><th>Started</th><th>Took</th><th></th></tr>"
    rows = []
    for task in step.tasks[:MAX_TASK_ROWS]:
        latest = task.latest
        note = f"cloned from {latest['cloned_from']}" if latest.get("cloned_from") else ""
        rows.append(f"<tr><td class=\"mono\">{escape(task.task_id)}</td>"
                    + (f"<td>{escape(task.split_label)}</td>" if indexed else "")
                    + f"<td>{'succeeded' if task.successful else 'failed'}</td><td>{len(task.attempts)}</td>"
                    f"<td>{clock(latest.get('started_at'))}</td>"
                    f"<td>{duration(latest.get('started_at'), latest.get('finished_at'))}</td>"
                    f'<td class="muted">{escape(note)}</td></tr>')
    more = len(step.tasks) - MAX_TASK_ROWS
    tail = (f'<p class="muted">and {more} more tasks: <code>run$step("{escape(step.name)}")$tasks</code> lists them '
            "all.</p>") if more > 0 else ""
    return f"<table>{head}{''.join(rows)}</table>{tail}"


def _artifacts(view: RunView, step: StepView) -> str:
    task = next((t for t in step.tasks if t.successful), None)
    if task is None:
        return '<p class="muted">No task of this step stored artifacts.</p>'
    record = task.latest
    shas: dict[str, str] = record.get("artifacts") or {}
    if not shas:
        return '<p class="muted">No artifacts.</p>'
    info: dict[str, Any] = record.get("artifact_info") or {}
    inherited = _parent_shas(view, record)
    parameters = set(view.record.get("parameters") or {})

    def origin(name: str) -> str:
        if name in parameters:
            return "parameter"
        return "inherited" if shas[name] in inherited.get(name, set()) else "set here"

    order = {"set here": 0, "inherited": 1, "parameter": 2}
    names = sorted(shas, key=lambda n: (order[origin(n)], n))
    rows = []
    for name in names:
        entry = info.get(name) if isinstance(info.get(name), dict) else {}
        preview = entry.get("preview")
        rows.append(f'<tr><td class="mono">{escape(name)}</td><td>{escape(text(entry.get("type")))}</td>'
                    f'<td>{size(entry.get("size"))}</td>'
                    f'<td class="preview mono">{escape(short(preview)) if preview is not None else "-"}</td>'
                    f'<td class="muted">{origin(name)}</td></tr>')
    which = f" of task {escape(task.task_id)} (1 of {len(step.tasks)})" if len(step.tasks) > 1 else ""
    return (f"<p>Artifacts{which}:</p><table><tr><th>Name</th><th>Type</th><th>Size</th><th>Preview</th><th></th></tr>"
            + "".join(rows) + "</table>")


def _parent_shas(view: RunView, record: dict[str, Any]) -> dict[str, set[str]]:
    """The artifacts (name -> shas) of the tasks this one read its inputs from."""
    found: dict[str, set[str]] = {}
    for path in record.get("input_paths") or []:
        parts = path.split("/")
        step = view.steps.get(parts[1]) if len(parts) == 3 else None
        parent = next((t for t in step.tasks if t.task_id == parts[2]), None) if step else None
        if parent is not None:
            for name, sha in (parent.latest.get("artifacts") or {}).items():
                found.setdefault(name, set()).add(sha)
    return found


def _badge(status: str) -> str:
    return f'<span class="badge b-{slug(status)}">{escape(status)}</span>'
