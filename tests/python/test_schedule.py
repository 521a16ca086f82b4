"""decorator("schedule") as the EventBridge schedule expression, and our own validation of cron strings
(AWS emulators accept nonsense such as cron(99 99 * * * *), so a bad cron must fail here, by field)."""
from __future__ import annotations

import pytest
from conftest import make_spec, step

from metaflow_r.aws.step_functions.schedule import schedule_expression, validate_cron
from metaflow_r.core.errors import DecoratorError, UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.core.spec import parse_spec


def scheduled(**attributes):
    return parse_spec(make_spec("ScheduledFlow", [step("start", "end"), step("end")],
                                decorators=[{"name": "schedule", "attributes": attributes}]))


@pytest.mark.parametrize("attributes, expression", [
    ({"hourly": True}, "cron(0 * * * ? *)"),
    ({"daily": True}, "cron(0 0 * * ? *)"),
    ({"weekly": True}, "cron(0 0 ? * SUN *)"),
    ({"cron": "0 10 * * ? *"}, "cron(0 10 * * ? *)"),
    # Already wrapped, or with extra spaces: the same rule.
    ({"cron": "cron(0 10 * * ? *)"}, "cron(0 10 * * ? *)"),
    ({"cron": "  0   10 * *  ? * "}, "cron(0 10 * * ? *)"),
    # What R sends for decorator("schedule", hourly = FALSE, daily = TRUE).
    ({"hourly": False, "daily": True}, "cron(0 0 * * ? *)"),
])
def test_schedule_expression(attributes, expression):
    assert schedule_expression(scheduled(**attributes)) == expression


def test_no_schedule_decorator_means_no_rule():
    assert schedule_expression(parse_spec(make_spec("F", [step("start", "end"), step("end")]))) is None


@pytest.mark.parametrize("attributes", [{}, {"hourly": True, "daily": True}, {"daily": True, "cron": "0 1 * * ? *"},
                                        {"hourly": False}])
def test_exactly_one_kind_of_schedule(attributes):
    """The graph refuses it (rules.json), before any schedule expression is made."""
    with pytest.raises(DecoratorError, match="exactly one of `hourly`, `daily`, `weekly`, or `cron`"):
        FlowGraph(scheduled(**attributes))


@pytest.mark.parametrize("cron", [
    "0 10 * * ? *",
    "*/15 * * * ? *",
    "0 8-17 ? * MON-FRI *",
    "0 9 ? * 2#1 *",
    "0 12 L * ? *",
    "0 12 15W * ? *",
    "0 0 1,15 JAN,JUL ? 2030",
    "30 6 ? * 6L 2025-2030",
    "0/5 0 1 * ? *",
])
def test_valid_aws_cron_is_passed_through(cron):
    assert validate_cron(cron) == cron
    assert schedule_expression(scheduled(cron=cron)) == f"cron({cron})"


@pytest.mark.parametrize("cron, named", [
    # wrong number of fields: unix cron has 5, AWS has 6
    ("0 10 * * *", "5 fields, not 6"),
    ("0 10 * * ? * *", "7 fields, not 6"),
    ("", "0 fields, not 6"),
    ("every day", "2 fields, not 6"),
    # out-of-range values, each naming its field
    ("60 10 * * ? *", "minutes field '60'"),
    ("0 24 * * ? *", "hours field '24'"),
    ("0 0 32 * ? *", "day-of-month field '32'"),
    ("0 0 0 * ? *", "day-of-month field '0'"),
    ("0 0 ? 13 MON *", "month field '13'"),
    ("0 0 ? * 8 *", "day-of-week field '8'"),
    ("0 0 * * ? 1969", "year field '1969'"),
    ("0 0-99 * * ? *", "hours field '0-99'"),
    ("0,61 0 * * ? *", "minutes field '0,61'"),
    # garbage and misplaced special characters
    ("a b c d e f", "minutes field 'a'"),
    ("0 10 * FOO ? *", "month field 'FOO'"),
    ("0 10 ? * FUNDAY *", "day-of-week field 'FUNDAY'"),
    ("0 ? * * ? *", "hours field '?'"),
    ("-1 10 * * ? *", "minutes field '-1'"),
    ("L 10 * * ? *", "minutes field 'L'"),
    ("0 LW * * ? *", "hours field 'LW'"),
    ("0 10 ? * LW *", "day-of-week field 'LW'"),
    ("0 10 ? * 5W *", "day-of-week field '5W'"),
    ("0 10 6L * ? *", "day-of-month field '6L'"),
    ("0 10 * MON ? *", "month field 'MON'"),
    ("0 10 1, * ? *", "day-of-month field '1,'"),
    # the one AWS emulators accept
    ("cron(99 99 * * * *)", "minutes field '99'"),
    # EventBridge's cron reference: one '#' expression alone in day-of-week, and no increments there (issue 18)
    ("0 10 ? * 3#1,6#3 *", "more than one expression beside a '#'"),
    ("0 10 ? * MON/2 *", "day-of-week field 'MON/2'"),
    # '?' in both or neither of day-of-month and day-of-week
    ("0 10 * * * *", "exactly one of day-of-month and day-of-week"),
    ("0 10 1 * MON *", "exactly one of day-of-month and day-of-week"),
    ("0 10 ? * ? *", "exactly one of day-of-month and day-of-week"),
])
def test_invalid_cron_is_refused_naming_the_field(cron, named):
    with pytest.raises(UsageError) as caught:
        schedule_expression(scheduled(cron=cron)) if cron else validate_cron(cron)
    assert named in caught.value.message
    assert caught.value.exit_code == 2
    # The hint shows a valid AWS cron.
    assert "0 10 * * ? *" in str(caught.value)
