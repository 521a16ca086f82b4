"""What moto needs before it can stand in for AWS here, applied only to the versions known to need it.

moto 5.2 (the series pyproject.toml's emulator extra allows):
  * its Step Functions Batch integration passes ASL names (``JobName``) to Batch unchanged, so every
    batch task fails; we translate them with botocore's service model, as AWS does;
  * an execution started without a name is named None; we name it, as AWS does;
  * a .sync task retried by its state's retrier waits on the task token its first attempt already
    closed, so the retry "times out" at once; each attempt gets a token of its own, as AWS gives;
  * wide foreaches (Map workers, DISTRIBUTED Map failures, Batch array jobs): see moto_scale.py.
And with every version, its Batch runs each job as AWS Batch would (batch.py), and every request AWS documents
rules for is checked by them first (strict.py).
"""
from __future__ import annotations

import uuid

from metaflow_r.emulator.batch import JobRunner, LocalJobRunner, run_job
from metaflow_r.emulator.moto_scale import apply_scale_patches
from metaflow_r.emulator.strict import patch_strict

PATCHED_MOTO = ("5.2.",)


def moto_needs_patches() -> bool:
    import moto

    return moto.__version__.startswith(PATCHED_MOTO)


def patch_moto(runner: JobRunner | None = None) -> None:
    """Apply the workarounds (idempotent) and make Batch run jobs with ``runner`` (default: locally)."""
    from botocore import xform_name
    from botocore.session import get_session
    from moto.batch_simple.models import BatchSimpleBackend
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
        StateTaskServiceBatch,
    )
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    BatchSimpleBackend._metaflow_r_runner = runner or LocalJobRunner()
    if getattr(BatchSimpleBackend, "_metaflow_r_patched", False):
        return
    patch_strict()
    if moto_needs_patches():
        models = get_session()

        def operation(service: StateTaskServiceBatch, boto_service_name=None, action=None):
            model = models.get_service_model(service._get_boto_service_name(boto_service_name))
            names = {xform_name(n): n for n in model.operation_names}
            return model.operation_model(names[xform_name(action or service.resource.api_action)])

        def normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
            shape = operation(self, boto_service_name, service_action_name).input_shape
            if shape is not None:
                self._to_boto_request(parameters, shape)

        def normalise_response(self, response, boto_service_name=None, service_action_name=None):
            shape = operation(self, boto_service_name, service_action_name).output_shape
            if shape is not None:
                self._from_boto_response(response, shape)

        StateTaskServiceBatch._normalise_parameters = normalise_parameters
        StateTaskServiceBatch._normalise_response = normalise_response

        original_start = StepFunctionsParserBackend.start_execution

        def start_execution(self, state_machine_arn, name=None, execution_input=None, trace_header=None):
            return original_start(self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)

        StepFunctionsParserBackend.start_execution = start_execution
        _fresh_token_per_attempt()
        apply_scale_patches()  # wide foreaches: Map workers, Map Run failures, array jobs (moto_scale.py)
    BatchSimpleBackend._mark_job_as_finished = run_job
    BatchSimpleBackend._metaflow_r_patched = True


def _fresh_token_per_attempt() -> None:
    """A retried attempt of a callback-capable task finds its token's endpoint closed by the attempt before:
    it gets a new token (and endpoint) instead."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )

    original = StateTaskServiceCallback._eval_integration_pattern

    def eval_integration_pattern(self, env, *args, **kwargs):
        task = env.states.context_object.context_object_data.get("Task") or {}
        endpoint = env.callback_pool_manager.get(task.get("Token"))
        if endpoint is not None and endpoint._notify_event.is_set():
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        return original(self, env, *args, **kwargs)

    StateTaskServiceCallback._eval_integration_pattern = eval_integration_pattern
