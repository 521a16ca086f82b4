"""``--with DECORATOR[:name=value,...]``: a decorator added to every step, as Metaflow users write it.

Two are supported: ``retry`` (``--with retry:times=2``), which a step's own decorator("retry") overrides,
and ``batch`` (``--with batch:cpu=2,memory=8192``), which runs every step of a local run as an AWS
Batch job; a step's own decorator("batch") or decorator("resources") wins, attribute by attribute.
Values are checked with the same rules as the decorators' arguments in R (rules.json).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from metaflow_r.core.errors import UsageError
from metaflow_r.core.rules import ARGUMENT_KINDS, DECORATORS, DEFAULT_RETRIES, RULES

SUPPORTED = ("retry", "batch")
_EXAMPLES = {"retry": "--with retry:times=2", "batch": "--with batch:cpu=2,memory=8192"}


@dataclass(frozen=True)
class WithDecorators:
    retry: int | None = None  # retries every step gets unless its own decorator("retry") says otherwise
    batch: dict[str, Any] | None = None  # None: steps run locally; else --with batch's attributes


def parse_with(entries: list[str] | tuple[str, ...]) -> WithDecorators:
    retry: int | None = None
    batch: dict[str, Any] | None = None
    for entry in entries:
        name, _, text = entry.partition(":")
        if name not in SUPPORTED:
            raise UsageError(f"--with {entry!r} is not supported.",
                             [("i", "Use --with retry, --with retry:times=N, or --with batch "
                                    "(e.g. --with batch:cpu=2,memory=8192).")])
        attributes = _attributes(entry, name, text)
        if name == "retry":
            retry = int(attributes.get("times", DEFAULT_RETRIES))
        else:
            batch = {**(batch or {}), **attributes}
    return WithDecorators(retry, batch)


def _attributes(entry: str, name: str, text: str) -> dict[str, Any]:
    """``cpu=2,image=repo/r:4`` as typed values, each checked against the decorator's argument kinds."""
    kinds = {k: v for k, v in DECORATORS[name]["arguments"].items() if name != "retry" or k == "times"}
    found: dict[str, Any] = {}
    for pair in filter(None, text.split(",")):
        key, equals, raw = pair.partition("=")
        kind = kinds.get(key)
        if kind is None or not equals:
            raise UsageError(f"--with {entry!r}: cannot read {pair!r}.",
                             [("i", f"{name} takes {', '.join(f'{k}=' for k in kinds)}."),
                              ("i", f"Write, for example, {_EXAMPLES[name]}.")])
        value = _typed(raw, kind)
        if not ARGUMENT_KINDS[kind](value):
            raise UsageError(f"--with {entry!r}: cannot read {pair!r}: {key} must be {RULES['argument_kinds'][kind]}.",
                             [("i", f"Write, for example, {_EXAMPLES[name]}.")])
        found[key] = value
    return found


def _typed(raw: str, kind: str) -> Any:
    """A number for the numeric kinds when it reads as one (no inf, nan or exponent); the text otherwise."""
    if kind in ("count", "duration", "amount") and re.fullmatch(r"-?\d+(\.\d+)?", raw):
        return float(raw) if "." in raw else int(raw)
    return raw
