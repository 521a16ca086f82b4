"""The schedule decorator as an EventBridge schedule expression, checked by EventBridge's own rules
(aws/requests/schedules.py) because AWS emulators accept nonsense: 6 fields, UTC."""
from __future__ import annotations

from metaflow_r.aws.requests.schedules import check_cron_fields
from metaflow_r.core.rules import SCHEDULE_PRESETS
from metaflow_r.core.spec import FlowSpec


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
    """The decorator's ``cron`` (its six fields, or cron(...) around them, spaces as the user typed them),
    normalised and checked; AwsRuleError naming the field otherwise."""
    text = expression.strip()
    if text.startswith("cron(") and text.endswith(")"):
        text = text[5:-1].strip()
    fields = text.split()
    check_cron_fields(expression, fields)
    return " ".join(fields)
