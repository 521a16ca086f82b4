"""The rules a flow obeys, from the table R reads too (data/rules.json), enforced on the spec R sends.

R checks each rule where the user types it (R/backend-rules.R reads the same table); these checks hold for any
spec that reaches the backend, e.g. through ``metaflow-r --spec FILE`` or a script from another version.
"""
from __future__ import annotations

import json
import re
from typing import Any

from metaflow_r.core import DATA_DIR
from metaflow_r.core.errors import DecoratorError

RULES: dict[str, Any] = json.loads((DATA_DIR / "rules.json").read_text("utf-8"))

NAME_PATTERN = re.compile(RULES["name"]["pattern"])
PACKAGE_NAME_PATTERN = re.compile(RULES["package_name"]["pattern"])
RESERVED_NAMES = frozenset(RULES["reserved_names"]["names"])
RESERVED_PARAMETER_NAMES = frozenset(RULES["reserved_parameter_names"]["names"])
PARAMETER_TYPES = tuple(RULES["parameter_types"])
DECORATORS: dict[str, dict[str, Any]] = RULES["decorators"]
SCHEDULE_PRESETS = {name: RULES["schedule_presets"][name] for name in DECORATORS["schedule"]["exactly_one_of"]
                    if name in RULES["schedule_presets"]}
DEFAULT_RETRIES: int = RULES["retry_default_times"]


def reserved_why(name: str) -> str:
    """Why a parameter name is reserved, in words a user can act on."""
    entry = RULES["reserved_names"] if name in RESERVED_NAMES else RULES["reserved_parameter_names"]
    return entry["what"].replace("{name}", name)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What each argument kind accepts; R/backend-rules.R checks the same kinds on R values.
ARGUMENT_KINDS = {
    "flag": lambda v: isinstance(v, bool),
    "count": lambda v: _is_number(v) and v >= 0 and float(v).is_integer(),
    "duration": lambda v: _is_number(v) and v >= 0,
    "amount": lambda v: _is_number(v) and v > 0,
    "string": lambda v: isinstance(v, str) and v != "",
    "name": lambda v: isinstance(v, str) and NAME_PATTERN.fullmatch(v) is not None,
    "variables": lambda v: isinstance(v, dict) and len(v) > 0 and all(
        k != "" and (isinstance(x, str) or _is_number(x)) for k, x in v.items()),
    "platform": lambda v: isinstance(v, str) and v.upper() in ("EC2", "FARGATE"),
    # R sends one name as a string, several as a list (jsonlite's auto_unbox).
    "packages": lambda v: all(isinstance(p, str) and PACKAGE_NAME_PATTERN.fullmatch(p) is not None
                              for p in ([v] if isinstance(v, str) else v if isinstance(v, list) and v else [None])),
}


def join_list(items: list[str], conjunction: str, quote: str = "`") -> str:
    """``a``, ``b``, or ``c``, as R's cli writes a vector in a message."""
    quoted = [f"{quote}{item}{quote}" for item in items]
    if len(quoted) <= 2:
        return f" {conjunction} ".join(quoted)
    return ", ".join(quoted[:-1]) + f", {conjunction} {quoted[-1]}"


def decorator_error(key: str, **values: str) -> DecoratorError:
    """The error rules.json's decorator_messages[key] describes, its placeholders filled with ``values``."""
    entry = RULES["decorator_messages"][key]
    bullets = [(kind, text.format(**values)) for kind, text in entry.items() if kind != "message"]
    return DecoratorError(entry["message"].format(**values), bullets)


def check_decorator(name: str, attributes: dict[str, Any], where: str) -> None:
    """One decorator of the flow (``where`` is "metaflow()") or of a step (``step("name")``)."""
    rule = DECORATORS.get(name)
    if rule is None:
        raise decorator_error("unknown", name=json.dumps(name), known=join_list(list(DECORATORS), "and", '"'))
    if (rule["scope"] == "flow") != where.startswith("metaflow"):
        instead = RULES["decorator_messages"]["flow_scope" if rule["scope"] == "flow" else "step_scope"]
        raise decorator_error("wrong_scope", name=name, where=where, instead=instead)
    for argument, value in attributes.items():
        kind = rule["arguments"].get(argument)
        if kind is None:
            raise decorator_error("unknown_argument", name=name, argument=f"`{argument}`",
                                  arguments=join_list(list(rule["arguments"]), "and"))
        if not ARGUMENT_KINDS[kind](value):
            raise decorator_error("bad_value", name=name, argument=argument, kind=RULES["argument_kinds"][kind],
                                  value=json.dumps(value))
    one_of = rule.get("exactly_one_of")
    if one_of and len([a for a in one_of if attributes.get(a) not in (None, False)]) != 1:
        raise decorator_error("exactly_one", name=name, arguments=join_list(one_of, "or"), example=rule["example"])
