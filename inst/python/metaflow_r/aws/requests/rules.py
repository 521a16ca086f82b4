"""How a broken rule is said: one AwsRuleError, the rule as AWS states it and what to do instead."""
from __future__ import annotations

from typing import Any

from metaflow_r.core.errors import AwsRuleError


def refused(rule: str, fix: str) -> AwsRuleError:
    """The error for a request that breaks ``rule`` (what AWS refuses, and what this request has)."""
    return AwsRuleError(rule, [("i", fix)])


def in_context(error: AwsRuleError, problem: str) -> AwsRuleError:
    """``error`` told from the user's side: ``problem`` first, then the rule broken and its fix."""
    return AwsRuleError(problem, [("x", error.message), *error.bullets])


def number(text: Any) -> float | None:
    """A resource value as AWS reads it (a decimal string), or None when it is not one."""
    try:
        value = float(str(text))
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def whole(text: Any) -> int | None:
    """``text`` as a whole number written without a fraction ("2", not "2.0"), else None."""
    written = str(text)
    return int(written) if written.isdigit() and len(written) < 12 else None
