"""Reading the graph spec that the R front end sends: JSON with the flow name, parameters and steps."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError

PARAMETER_TYPES = ("str", "int", "float", "bool")
DEFAULT_RETRIES = 3  # decorator("retry") and --with retry without times


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

    def decorator(self, name: str) -> Decorator | None:
        return next((d for d in self.decorators if d.name == name), None)

    def retries(self, forced: int | None) -> int:
        """How often a failed task is retried: its retry decorator wins over --with retry (``forced``)."""
        decorator = self.decorator("retry")
        if decorator is not None:
            return int(decorator.attributes.get("times", DEFAULT_RETRIES))
        return forced or 0

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

    def step(self, name: str) -> StepSpec:
        return next(s for s in self.steps if s.name == name)

    def decorator(self, name: str) -> Decorator | None:
        return next((d for d in self.decorators if d.name == name), None)


def _decorators(raw: Any) -> tuple[Decorator, ...]:
    return tuple(Decorator(_text(d["name"], "a decorator name"), dict(d.get("attributes") or {})) for d in raw or [])


def _text(value: Any, what: str, optional: bool = False) -> Any:
    """A name must be a string (the checks and file paths that use it assume one)."""
    if isinstance(value, str) or (optional and value is None):
        return value
    raise TypeError(f"{what} is {value!r}, not a string")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_spec(text_or_dict: str | dict) -> FlowSpec:
    """Build a FlowSpec from the JSON the R front end produces."""
    try:
        raw = json.loads(text_or_dict) if isinstance(text_or_dict, str) else text_or_dict
        steps = tuple(
            StepSpec(
                name=_text(s["name"], "a step name"),
                next=tuple(_text(n, "a next_step") for n in _as_list(s.get("next"))),
                join=bool(s.get("join", False)),
                foreach=_text(s.get("foreach") or None, "a foreach", optional=True),
                decorators=_decorators(s.get("decorators")),
            )
            for s in raw.get("steps") or []
        )
        parameters = tuple(
            Parameter(
                name=_text(p["name"], "a parameter name"),
                help=_text(p.get("help"), "a parameter help", optional=True),
                default=p.get("default"),
                type=p.get("type") or "str",
                required=bool(p.get("required", False)),
                is_flag=bool(p.get("is_flag", False)),
                separator=_text(p.get("separator") or None, "a separator", optional=True),
            )
            for p in raw.get("parameters") or []
        )
        return FlowSpec(
            name=_text(raw["name"], "the flow name"),
            steps=steps,
            parameters=parameters,
            decorators=_decorators(raw.get("decorators")),
            script=_text(raw.get("script"), "the script", optional=True),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GraphError(
            "The flow description sent by R is malformed.",
            [("x", f"{type(exc).__name__}: {exc}"), ("i", "Build the flow with metaflow(), step() and parameter().")],
        ) from None
