"""How the report writes values: sizes, times, durations, short previews."""
from __future__ import annotations

import json
import time
from html import escape
from typing import Any


def slug(status: str) -> str:
    return status.replace(" ", "-")


def code(value: Any) -> str:
    return f"<code>{escape(str(value))}</code>"


def text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(as_r_prints(value), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def as_r_prints(value: Any) -> Any:
    """A whole number held as a float shows as R prints it: 5, not 5.0 (a numeric parameter's default 5)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    if isinstance(value, list):
        return [as_r_prints(item) for item in value]
    return value


def size(size: Any) -> str:
    if not isinstance(size, (int, float)) or isinstance(size, bool):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def clock(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def duration(start: Any, end: Any) -> str:
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return "-"
    seconds = max(0.0, end - start)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
