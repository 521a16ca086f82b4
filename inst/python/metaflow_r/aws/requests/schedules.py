"""EventBridge's rules for PutRule: the rule's name and its schedule expression, cron or rate.

Sources: the EventBridge API reference's PutRule (https://docs.aws.amazon.com/eventbridge/latest/APIReference/
API_PutRule.html: Name 1-64 of [.\\-_A-Za-z0-9], ScheduleExpression at most 256 characters) and the user
guide's "Cron expressions reference" and "Rate expressions" (https://docs.aws.amazon.com/eventbridge/latest/
userguide/eb-scheduled-rule-pattern.html), whose table of fields and wildcards is _FIELDS below.
"""
from __future__ import annotations

import re
from typing import Any

from metaflow_r.aws.requests.rules import refused
from metaflow_r.core.errors import AwsRuleError

RULE_NAME = re.compile(r"[.\-_A-Za-z0-9]{1,64}")
MAX_EXPRESSION = 256
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
# The reference's table: field, values, names, and the wildcards it allows besides , - and *.
_FIELDS = [
    ("minutes", 0, 59, "", "/"),
    ("hours", 0, 23, "", "/"),
    ("day-of-month", 1, 31, "", "?/LW"),
    ("month", 1, 12, _MONTHS, "/"),
    ("day-of-week", 1, 7, _DAYS, "?L#"),
    ("year", 1970, 2199, "", "/"),
]
CRON_HINT = ("i", "AWS cron has 6 fields: minutes hours day-of-month month day-of-week year, e.g. \"0 10 * * ? *\" "
                  "for 10:00 UTC every day.")
RATE_UNITS = ("minute", "hour", "day")


def check_put_rule(request: dict[str, Any]) -> None:
    """A PutRule request as boto3 takes it (a scheduled rule: the only kind the backend makes)."""
    name = str(request.get("Name", ""))
    if not RULE_NAME.fullmatch(name):
        raise refused(f"The EventBridge rule name {name[:200]!r} is not valid: 1-64 letters, digits, ., - and _.",
                      "Rename the flow in metaflow(\"...\").")
    check_schedule_expression(str(request.get("ScheduleExpression", "")))


def check_schedule_expression(expression: str) -> None:
    """``cron(...)`` or ``rate(...)``, exactly as EventBridge reads it."""
    if len(expression) > MAX_EXPRESSION:
        raise refused(f"A schedule expression has at most {MAX_EXPRESSION} characters; this one has "
                      f"{len(expression)}.", "Write a shorter one.")
    if expression.startswith("rate(") and expression.endswith(")"):
        check_rate(expression[5:-1])
    elif expression.startswith("cron(") and expression.endswith(")"):
        body = expression[5:-1]
        fields = body.split(" ")
        if body != " ".join(body.split()):
            raise AwsRuleError(f"The cron expression {expression!r} is not 6 fields apart by single spaces.",
                               [CRON_HINT])
        check_cron_fields(expression, fields)
    else:
        raise refused(f"{expression[:200]!r} is neither cron(...) nor rate(...).",
                      "Write cron(0 10 * * ? *) or rate(5 minutes).")


def check_rate(body: str) -> None:
    """rate(value unit): a positive whole value; "If the value is equal to 1, then the unit must be singular.
    If the value is greater than 1, the unit must be plural."""
    match = re.fullmatch(r"([0-9]{1,9}) ([a-z]+)", body)
    value, unit = (int(match.group(1)), match.group(2)) if match else (0, "")
    wanted = unit.removesuffix("s")
    if value < 1 or wanted not in RATE_UNITS or (unit == wanted) != (value == 1):
        singular = f"rate(1 {wanted if wanted in RATE_UNITS else 'hour'})"
        raise refused(f"The rate expression rate({body}) is not a positive whole number and a unit of minutes, hours "
                      "or days, singular for 1 and plural otherwise.",
                      f"Write, for example, {singular} or rate(5 {wanted if wanted in RATE_UNITS else 'hour'}s).")


def check_cron_fields(expression: str, fields: list[str]) -> None:
    """The six fields of ``expression``, each by the reference's table, then its limitations."""
    if len(fields) != 6:
        raise AwsRuleError(f"The cron expression {expression!r} has {len(fields)} fields, not 6.", [CRON_HINT])
    for value, (name, low, high, names, extra) in zip(fields, _FIELDS):
        if not _field_ok(value, low, high, names, extra):
            allowed = "".join(f" {c}" for c in extra if c not in "?")
            raise AwsRuleError(
                f"The cron expression {expression!r} has an invalid {name} field {value!r}.",
                [("i", f"{name} takes {low}-{high}" + (f" or {names.replace('|', ',')}" if names else "")
                  + f", with , - *{allowed}" + (" or ? alone" if "?" in extra else "") + "."), CRON_HINT])
    # "If you use a '#' character, you can define only one expression in the day-of-week field."
    if "#" in fields[4] and "," in fields[4]:
        raise AwsRuleError(f"The cron expression {expression!r} has more than one expression beside a '#' in its "
                           f"day-of-week field {fields[4]!r}.",
                           [("i", "With '#' (e.g. 2#1, the first Monday) day-of-week holds that one expression: "
                                  "make one schedule per day, or one flow run that decides."), CRON_HINT])
    # "You can't specify the Day-of-month and Day-of-week fields in the same cron expression. If you specify a
    # value or a * (asterisk) in one of the fields, you must use a ? (question mark) in the other."
    if (fields[2] == "?") == (fields[4] == "?"):
        raise AwsRuleError(f"The cron expression {expression!r} must have '?' in exactly one of day-of-month and "
                           "day-of-week.", [CRON_HINT])


def _field_ok(value: str, low: int, high: int, names: str, extra: str) -> bool:
    if value == "?" and "?" in extra:
        return True
    # ASCII digits only: \d would also take other scripts' digits, which AWS refuses.
    atom = rf"([0-9]+|{names})" if names else r"([0-9]+)"
    step = r"(/[0-9]+)?" if "/" in extra else ""
    # Ranges and increments take plain values; the special forms stand alone: W (nearest weekday, "15W") and
    # LW belong to day-of-month, "6L" (last Friday) and "2#1" (first Monday) to day-of-week, L to both.
    plain = rf"(\*|{atom}(-{atom})?){step}"
    special = ([r"[0-9]+W", "LW"] if "W" in extra else []) + ([rf"{atom}L", rf"{atom}#[1-5]"] if "#" in extra else []) \
        + (["L"] if "L" in extra else [])
    for part in value.split(","):
        if not re.fullmatch(plain, part) and not any(re.fullmatch(form, part) for form in special):
            return False
        base, _, increment = part.partition("/")
        if increment and not increment.strip("0"):
            return False  # an increment of 0
        for number in re.findall(r"[0-9]+", base.split("#")[0]):
            if len(number) > 6 or not low <= int(number) <= high:  # (int() refuses thousands of digits)
                return False
    return True
