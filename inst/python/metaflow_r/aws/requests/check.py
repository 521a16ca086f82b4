"""Which rules check which request: the one table the deploy plan and the strict emulator share."""
from __future__ import annotations

from typing import Any, Callable

from metaflow_r.aws.requests.batch import check_job_definition, check_submit_job
from metaflow_r.aws.requests.schedules import check_put_rule
from metaflow_r.aws.requests.states import (
    check_create_state_machine,
    check_start_execution,
    check_update_state_machine,
)

# (service as boto3 names it, operation) -> its check, which takes the request as boto3 takes it.
CHECKS: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
    ("batch", "RegisterJobDefinition"): check_job_definition,
    ("batch", "SubmitJob"): check_submit_job,
    ("events", "PutRule"): check_put_rule,
    ("stepfunctions", "CreateStateMachine"): check_create_state_machine,
    ("stepfunctions", "UpdateStateMachine"): check_update_state_machine,
    ("stepfunctions", "StartExecution"): check_start_execution,
}


def check_request(service: str, operation: str, request: dict[str, Any]) -> None:
    """AwsRuleError when AWS documents that it refuses ``request``; nothing for an operation without rules."""
    check = CHECKS.get((service, operation))
    if check is not None:
        check(request)
