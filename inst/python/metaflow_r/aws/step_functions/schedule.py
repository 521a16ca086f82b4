"""The schedule decorator as an EventBridge schedule expression, validated here because AWS emulators
accept nonsense: 6 fields, UTC, `?` in exactly one of day-of-month and day-of-week."""
from __future__ import annotations

import re

from metaflow_r.core.errors import UsageError
from metaflow_r.core.rules import SCHEDULE_PRESETS
from metaflow_r.core.spec import FlowSpec

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
# field name, smallest value, largest value, names allowed, extra characters allowed
_FIELDS = [
    ("minutes", 0, 59, "", ""),
    ("hours", 0, 23, "", ""),
    ("day-of-month", 1, 31, "", "?LW"),
    ("month", 1, 12, _MONTHS, ""),
    ("day-of-week", 1, 7, _DAYS, "?L#"),
    ("year", 1970, 2199, "", ""),
]


def schedule_expression(spec: FlowSpec) -> str | None:
    """``cron(...)`` for the flow's schedule decorator, or None when it has none."""
    decorator = spec.decorator("schedule")
    if decorator is None:
        return None
    # The graph checked that exactly one of them is set (rules.check_decorator).
    attrs = decorator.attributes
    if attrs.get("cron"):
        return f"cron({validate_cron(str(attrs['cron']))})"
    return next(f"cron({cron})" for name, cron in SCHEDULE_PRESETS.items() if attrs.get(name) is True)


def validate_cron(expression: str) -> str:
    text = expression.strip()
    if text.startswith("cron(") and text.endswith(")"):
        text = text[5:-1].strip()
    fields = text.split()
    hint = ("i", "AWS cron has 6 fields: minutes hours day-of-month month day-of-week year, "
                 "e.g. \"0 10 * * ? *\" for 10:00 UTC every day.")
    if len(fields) != 6:
        raise UsageError(f"The cron expression {expression!r} has {len(fields)} fields, not 6.", [hint])
    for value, (name, low, high, names, extra) in zip(fields, _FIELDS):
        if not _field_ok(value, low, high, names, extra):
            raise UsageError(f"The cron expression {expression!r} has an invalid {name} field {value!r}.",
                             [("i", f"{name} takes {low}-{high}" + (f" or {names.replace('|', ',')}" if names else "")
                               + ", with , - * /" + (f" and {extra}" if extra else "") + "."), hint])
    if (fields[2] == "?") == (fields[4] == "?"):
        raise UsageError(f"The cron expression {expression!r} must have '?' in exactly one of day-of-month "
                         "and day-of-week.", [hint])
    return " ".join(fields)


def _field_ok(value: str, low: int, high: int, names: str, extra: str) -> bool:
    if value == "?" and "?" in extra:
        return True
    if value == "*":
        return True
    # ASCII digits only: \d would also take other scripts' digits, which AWS refuses.
    atom = rf"([0-9]+|{names})" if names else r"([0-9]+)"
    # Ranges and increments take plain values; the special forms stand alone: W (nearest weekday, "15W") and
    # LW belong to day-of-month, "6L" (last Friday) and "2#1" (first Monday) to day-of-week, L to both.
    plain = rf"(\*|{atom}(-{atom})?)(/[0-9]+)?"
    special = ([r"[0-9]+W", "LW"] if "W" in extra else []) + ([rf"{atom}L", rf"{atom}#[1-5]"] if "#" in extra else []) \
        + (["L"] if "L" in extra else [])
    for part in value.split(","):
        if not re.fullmatch(plain, part) and not any(re.fullmatch(form, part) for form in special):
            return False
        base, _, step = part.partition("/")
        if step and not step.strip("0"):
            return False  # an increment of 0
        for number in re.findall(r"[0-9]+", base.split("#")[0]):
            if len(number) > 6 or not low <= int(number) <= high:  # (int() refuses thousands of digits)
                return False
    return True
