"""The emulator's strict half: moto accepts nearly anything, so every request it receives that AWS documents
rules for is first checked by those rules (aws/requests/), the same checks `create` runs before its first
call, and refused as AWS refuses it: the operation's error code, the rule broken and its fix.

What reaches moto this way: the deployer's RegisterJobDefinition, CreateStateMachine, UpdateStateMachine,
PutRule and StartExecution, `run --with batch`'s SubmitJob, and the SubmitJob Step Functions' Batch
integration sends for each task of an execution (its interpreter calls the emulator's own endpoint).
"""
from __future__ import annotations

import importlib
import json
from typing import Any, Callable

from metaflow_r.aws.requests.check import check_request
from metaflow_r.core.errors import AwsRuleError

# moto's handler (module, class, method), the request as boto3 names it (service, operation), and the error
# code AWS answers a refused one with (each API reference's Errors section).
STRICT = [
    ("moto.batch.responses", "BatchResponse", "register_job_definition", "batch", "RegisterJobDefinition",
     "ClientException"),
    ("moto.batch.responses", "BatchResponse", "submit_job", "batch", "SubmitJob", "ClientException"),
    ("moto.stepfunctions.responses", "StepFunctionResponse", "create_state_machine", "stepfunctions",
     "CreateStateMachine", "InvalidDefinition"),
    ("moto.stepfunctions.responses", "StepFunctionResponse", "update_state_machine", "stepfunctions",
     "UpdateStateMachine", "InvalidDefinition"),
    ("moto.stepfunctions.responses", "StepFunctionResponse", "start_execution", "stepfunctions", "StartExecution",
     "InvalidExecutionInput"),
    ("moto.events.responses", "EventsHandler", "put_rule", "events", "PutRule", "ValidationException"),
]


def patch_strict() -> None:
    """Check every request of STRICT before moto handles it (idempotent)."""
    for module, name, method, service, operation, code in STRICT:
        handler = getattr(importlib.import_module(module), name)
        original = getattr(handler, method)
        if not getattr(original, "_metaflow_r_strict", False):
            setattr(handler, method, _checked(original, service, operation, code))


def _checked(original: Callable[[Any], Any], service: str, operation: str, code: str) -> Callable[[Any], Any]:
    from moto.core.exceptions import ServiceException

    def checked(self: Any) -> Any:
        body = self.body.decode() if isinstance(self.body, bytes) else self.body
        try:
            check_request(service, operation, json.loads(body or "{}"))
        except AwsRuleError as refused:
            raise ServiceException(code, str(refused)) from None
        return original(self)

    checked._metaflow_r_strict = True  # type: ignore[attr-defined]
    return checked
