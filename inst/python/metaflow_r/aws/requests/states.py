"""Step Functions' rules for the requests the deployer sends it: CreateStateMachine, UpdateStateMachine and
StartExecution, and the Amazon States Language definition inside the first two.

Sources, cited by each rule: the API reference's CreateStateMachine and StartExecution pages
(https://docs.aws.amazon.com/step-functions/latest/apireference/: names, the definition's 1,048,576
characters, the input's 262,144 bytes), and the developer guide (https://docs.aws.amazon.com/step-functions/
latest/dg/): "Intrinsic functions" (the fields that accept them), "Handling errors" (the retrier's fields),
"States" (a state's name has at most 80 characters) and the integrations' pages (integrations.py).
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

from metaflow_r.aws.requests.integrations import check_item_reader, check_result_writer, check_task_parameters
from metaflow_r.aws.requests.rules import refused

MAX_NAME = 80  # state machine, execution and state names
# CreateStateMachine's name: "must not contain: white space, brackets < > { } [ ], wildcard characters ? *,
# special characters " # % \ ^ | ~ ` $ & , ; : /, control characters (U+0000-001F, U+007F-009F, U+FFFE-FFFF)".
FORBIDDEN = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f\ufffe\uffff]")
MAX_DEFINITION = 1_048_576  # characters
MAX_INPUT_BYTES = 262_144  # StartExecution's input, "expressed as bytes in UTF-8 encoding"
# "Fields that support intrinsic functions": Parameters (ItemSelector in a Map, its newer name), ResultSelector,
# and a Task's Credentials. Anywhere else a "States.X(...)" value is refused.
INTRINSIC_FIELDS = {"Parameters", "ItemSelector", "ResultSelector", "Credentials"}
INTRINSICS = {"Format", "StringToJson", "JsonToString", "Array", "ArrayPartition", "ArrayContains", "ArrayRange",
              "ArrayGetItem", "ArrayLength", "ArrayUnique", "Base64Encode", "Base64Decode", "Hash", "JsonMerge",
              "MathRandom", "MathAdd", "StringSplit", "UUID"}
# The retrier's fields ("Handling errors in Step Functions workflows", Retrier fields): the smallest and largest
# value of each, and its kind.
RETRIER = {"IntervalSeconds": (1, 99_999_999, int), "MaxAttempts": (0, 99_999_999, int),
           "BackoffRate": (1.0, float("inf"), float), "MaxDelaySeconds": (1, 31_622_400, int)}
JITTER = ("FULL", "NONE")
NESTED = ("Branches", "ItemProcessor", "Iterator")


def check_create_state_machine(request: dict[str, Any]) -> None:
    check_name("state machine", str(request.get("name", "")))
    check_definition(str(request.get("definition", "")))


def check_update_state_machine(request: dict[str, Any]) -> None:
    if "definition" in request:
        check_definition(str(request["definition"]))


def check_start_execution(request: dict[str, Any]) -> None:
    if "name" in request:
        check_name("execution", str(request["name"]))
    size = len(str(request.get("input", "{}")).encode())
    if size > MAX_INPUT_BYTES:
        raise refused(f"An execution's input is at most {MAX_INPUT_BYTES:,} bytes; this one has {size:,}.",
                      "Pass large inputs through S3 instead.")


def check_name(kind: str, name: str) -> None:
    bad = FORBIDDEN.search(name)
    if not 1 <= len(name) <= MAX_NAME or bad:
        why = f"it contains {bad.group()!r}" if bad else f"it has {len(name)} characters"
        raise refused(f"The {kind} name {name[:200]!r} is not valid: {why}; Step Functions takes 1-{MAX_NAME} "
                      "characters without spaces, brackets, wildcards or ? * \" # % \\ ^ | ~ ` $ & , ; : /.",
                      "Use letters, digits, - and _ (the only ones CloudWatch Logs takes as well).")


def check_definition(text: str) -> None:
    """An Amazon States Language definition, as the JSON text CreateStateMachine takes."""
    if not 1 <= len(text) <= MAX_DEFINITION:
        raise refused(f"A state machine definition has 1 to {MAX_DEFINITION:,} characters; this one has "
                      f"{len(text):,}.", "Deploy fewer steps, or smaller foreach constructs.")
    try:
        definition = json.loads(text)
    except ValueError as exc:
        raise refused(f"The state machine definition is not JSON: {exc}.", "Send json.dumps(definition).") from None
    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict):
        raise refused("A state machine definition is an object with States.", "Give it StartAt and States.")
    for name, state in _states(definition):
        _check_state(name, state)


def _states(machine: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state of ``machine``, those of its Parallel branches and Map processors included."""
    if machine.get("StartAt") not in machine.get("States", {}):
        raise refused(f"StartAt {machine.get('StartAt')!r} names no state.", "Point StartAt at a state.")
    for name, state in machine["States"].items():
        yield name, state
        for field in NESTED:
            inner = state.get(field)
            for branch in (inner if isinstance(inner, list) else [inner] if inner else []):
                yield from _states(branch)


def _check_state(name: str, state: dict[str, Any]) -> None:
    if len(name) > MAX_NAME:
        raise refused(f"The state name {name[:100]!r} has {len(name)} characters; Step Functions takes "
                      f"{MAX_NAME}.", "Give the step a shorter name.")
    for field, value in state.items():
        if field not in NESTED:
            _check_paths(name, field, value, intrinsics=field in INTRINSIC_FIELDS)
    for retrier in state.get("Retry", []):
        _check_retrier(name, retrier)
    if state.get("Type") == "Task":
        check_task_parameters(name, str(state.get("Resource")), state.get("Parameters") or {})
    if "ItemReader" in state:
        check_item_reader(name, state["ItemReader"])
    if "ResultWriter" in state:
        check_result_writer(name, state["ResultWriter"])


def _check_paths(state: str, field: str, value: Any, intrinsics: bool) -> None:
    """Every ``"key.$"`` value in ``field``: a path, or where the field allows one an intrinsic function."""
    if isinstance(value, list):
        for item in value:
            _check_paths(state, field, item, intrinsics)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if key.endswith(".$"):
            _check_path_value(state, field, key, item, intrinsics)
        else:
            _check_paths(state, field, item, intrinsics)


def _check_path_value(state: str, field: str, key: str, value: Any, intrinsics: bool) -> None:
    text = value if isinstance(value, str) else ""
    if text.startswith("States."):
        if not intrinsics:
            raise refused(f"State {state!r}: {field}'s {key} calls an intrinsic function, which {field} does not "
                          f"accept; only {', '.join(sorted(INTRINSIC_FIELDS))} do.",
                          "Compute the value in an earlier state's Parameters (a Pass state) and give "
                          f"{field} a path to it.")
        unknown = set(re.findall(r"States\.([A-Za-z0-9]+)\(", text)) - INTRINSICS
        if unknown or not re.match(r"States\.[A-Za-z0-9]+\(", text):
            raise refused(f"State {state!r}: {key} calls {sorted(unknown) or text[:60]!r}, not an intrinsic "
                          "function.", f"Use one of States.{', States.'.join(sorted(INTRINSICS))}.")
    elif not text.startswith("$"):
        raise refused(f"State {state!r}: {field}'s {key} is {value!r}, not a path ($...) or an intrinsic function.",
                      f"Drop the .$ from {key} to pass the value as it is.")


def _check_retrier(state: str, retrier: dict[str, Any]) -> None:
    if not retrier.get("ErrorEquals"):
        raise refused(f"State {state!r}: a retrier needs ErrorEquals.", "Name the errors it retries.")
    for field, (low, high, kind) in RETRIER.items():
        value = retrier.get(field)
        if value is None:
            continue
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
        if not fits or (kind is int and not isinstance(value, int)):
            raise refused(f"State {state!r}: a retrier's {field} is {'a whole number ' if kind is int else ''}from "
                          f"{low:g} to {high:g}; this one is {value!r}.", f"Give {field} a value in that range.")
    if retrier.get("JitterStrategy", "NONE") not in JITTER:
        raise refused(f"State {state!r}: JitterStrategy is FULL or NONE, not {retrier['JitterStrategy']!r}.",
                      "Use FULL or NONE.")
