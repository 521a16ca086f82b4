"""Reading the graph spec that the R front end sends: JSON with the flow name, parameters and steps."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from metaflow_r.core import protocol
from metaflow_r.core.errors import GraphError
from metaflow_r.core.rules import DEFAULT_RETRIES


@dataclass(frozen=True)
class Decorator:
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Parameter:
    name: str
    help: str | None = None
    default: Any = None
    type: str = "str"
    required: bool = False
    is_flag: bool = False
    separator: str | None = None


@dataclass(frozen=True)
class StepSpec:
    name: str
    next: tuple[str, ...]
    join: bool = False
    foreach: str | None = None
    decorators: tuple[Decorator, ...] = ()
    code_hash: str | None = None  # R/step-hash.R: the step's code, as resume compares it
    packages: tuple[str, ...] = ()  # R/packages.R: the R packages its code uses or it declares

    def decorator(self, name: str) -> Decorator | None:
        return next((d for d in self.decorators if d.name == name), None)

    def retries(self, forced: int | None) -> int:
        """How often a failed task is retried: its retry decorator wins over --with retry (``forced``)."""
        decorator = self.decorator("retry")
        if decorator is not None:
            return int(decorator.attributes.get("times", DEFAULT_RETRIES))
        return forced or 0

    def retry_delay_seconds(self, forced: int | None) -> int:
        """decorator("retry", minutes_between_retries =) in whole seconds (at least 1), 0 when the step waits
        not between retries (none set, or no retry)."""
        decorator = self.decorator("retry")
        minutes = float(decorator.attributes.get("minutes_between_retries", 0)) if decorator is not None else 0.0
        if minutes <= 0 or self.retries(forced) == 0:
            return 0
        return max(1, math.ceil(minutes * 60))

    def timeout_seconds(self) -> float | None:
        """decorator("timeout", seconds =, minutes =, hours =) as seconds, or None without one."""
        decorator = self.decorator("timeout")
        if decorator is None:
            return None
        a = decorator.attributes
        return float(a.get("seconds", 0)) + 60 * float(a.get("minutes", 0)) + 3600 * float(a.get("hours", 0))


@dataclass(frozen=True)
class FlowSpec:
    name: str
    steps: tuple[StepSpec, ...]
    parameters: tuple[Parameter, ...] = ()
    decorators: tuple[Decorator, ...] = ()
    script: str | None = None
    seed: int | None = None  # metaflow(seed =): the runs' seed (core/rng.py); None: each run draws one
    packages: tuple[str, ...] = ()  # R/packages.R: the R packages the script's top level uses (every task)

    def decorator(self, name: str) -> Decorator | None:
        return next((d for d in self.decorators if d.name == name), None)


def _decorators(raw: list[dict[str, Any]]) -> tuple[Decorator, ...]:
    return tuple(Decorator(d["name"], dict(d["attributes"])) for d in raw)


def parse_spec(text_or_dict: str | dict) -> FlowSpec:
    """Build a FlowSpec from the spec document the R front end sends (protocol.py)."""
    hint = ("i", "Build the flow with metaflow(), step() and parameter().")
    try:
        raw = json.loads(text_or_dict) if isinstance(text_or_dict, str) else text_or_dict
    except ValueError as exc:
        raise GraphError("The flow description sent by R is malformed.", [("x", f"It is not JSON: {exc}"),
                                                                            hint]) from None
    found = protocol.problems("spec", raw)
    if found:
        raise GraphError("The flow description sent by R is malformed.", [("x", line) for line in found[:5]] + [hint])
    return FlowSpec(
        name=raw["name"],
        steps=tuple(StepSpec(name=s["name"], next=tuple(s["next"]), join=s["join"], foreach=s["foreach"],
                             decorators=_decorators(s["decorators"]), code_hash=s.get("code_hash"),
                             packages=tuple(s.get("packages") or ()))
               for s in raw["steps"]),
        parameters=tuple(Parameter(name=p["name"], help=p["help"], default=p["default"], type=p["type"],
                                   required=p["required"], is_flag=p["is_flag"], separator=p["separator"])
                         for p in raw["parameters"]),
        decorators=_decorators(raw["decorators"]),
        script=raw["script"],
        seed=raw.get("seed"),
        packages=tuple(raw.get("packages") or ()),
    )
