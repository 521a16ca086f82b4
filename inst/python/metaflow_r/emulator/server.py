"""An offline stand-in for AWS: a moto server on 127.0.0.1 whose Step Functions interpreter executes
state machines and whose Batch runs each job (emulator_batch.py): as a local process (the local R
install stands in for the image), or in the job definition's image with ``--batch-runner container``.

moto 5.2 needs small workarounds, applied only to the versions known to need them:
  * its Step Functions Batch integration passes ASL names (``JobName``) to Batch unchanged, so every
    batch task fails; we translate them with botocore's service model, as AWS does;
  * an execution started without a name is named None; we name it, as AWS does;
  * wide foreaches (Map workers, DISTRIBUTED Map failures, Batch array jobs): see moto_scale.py.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from metaflow_r.core.errors import UsageError
from metaflow_r.emulator.batch import JobRunner, LocalJobRunner, make_runner, run_job
from metaflow_r.emulator.moto_scale import apply_scale_patches

PATCHED_MOTO = ("5.2.",)
REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "metaflow-r-emulator"
QUEUE = "metaflow-r-queue"
TABLE = "metaflow-r-sfn"
ROLES = {"batch": "metaflow-r-batch", "sfn": "metaflow-r-sfn", "events": "metaflow-r-events",
         "ecs": "metaflow-r-ecs-service"}


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
        apply_scale_patches()  # wide foreaches: Map workers, Map Run failures, array jobs (moto_scale.py)
    BatchSimpleBackend._mark_job_as_finished = run_job
    BatchSimpleBackend._metaflow_r_patched = True


# The image jobs name when none is given: what the local runner ignores, or what `make image` tags last.
DEFAULT_IMAGES = {"local": "metaflow-r:emulated", "container": "metaflow-r:latest"}


def settings(port: int, image: str = DEFAULT_IMAGES["local"]) -> dict[str, str]:
    """Everything a deploy, a trigger and the Client API need, as environment variables. Local runs stay
    local: the Client API finds production runs in the S3 datastore by itself (locate.py)."""
    arn = f"arn:aws:iam::{ACCOUNT}:role/"
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "emulated",
        "AWS_SECRET_ACCESS_KEY": "emulated",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{BUCKET}/metaflow",
        "METAFLOW_BATCH_JOB_QUEUE": QUEUE,
        "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": arn + ROLES["batch"],
        "METAFLOW_SFN_IAM_ROLE": arn + ROLES["sfn"],
        "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": arn + ROLES["events"],
        "METAFLOW_SFN_DYNAMO_DB_TABLE": TABLE,
        "METAFLOW_BATCH_CONTAINER_IMAGE": image,
    }


def provision(env: dict[str, str]) -> None:
    """Create what a deployment expects to exist: bucket, roles, Batch queue, DynamoDB table."""
    import boto3

    session = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=REGION)
    endpoint = env["AWS_ENDPOINT_URL"]
    client = lambda name: session.client(name, endpoint_url=endpoint)  # noqa: E731
    client("s3").create_bucket(Bucket=BUCKET)
    iam = client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                        "Principal": {"Service": ["batch.amazonaws.com", "ecs-tasks.amazonaws.com",
                                                  "states.amazonaws.com", "events.amazonaws.com"]}}]})
    for role in ROLES.values():
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    batch = client("batch")
    batch.create_compute_environment(computeEnvironmentName="metaflow-r-local", type="UNMANAGED",
                                     state="ENABLED", serviceRole=f"arn:aws:iam::{ACCOUNT}:role/{ROLES['ecs']}")
    batch.create_job_queue(jobQueueName=QUEUE, state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "metaflow-r-local"}])
    client("dynamodb").create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                                    AttributeDefinitions=[{"AttributeName": "pathspec", "AttributeType": "S"}],
                                    KeySchema=[{"AttributeName": "pathspec", "KeyType": "HASH"}])


class Emulator:
    """A moto server on 127.0.0.1, patched, configured and provisioned. Use as a context manager."""

    def __init__(self, port: int, batch_runner: str = "local", image: str | None = None) -> None:
        self.port = port
        self.env = settings(port, image or DEFAULT_IMAGES[batch_runner])
        self.runner = make_runner(batch_runner, self.env)
        self._server = None

    def start(self) -> "Emulator":
        from moto.core.config import default_user_config
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        # Step Functions' interpreter calls the other services at localhost:$MOTO_PORT; jobs it runs
        # inherit this process's environment, so they reach the emulator too.
        os.environ.update(self.env, MOTO_PORT=str(self.port))
        patch_moto(self.runner)
        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        default_user_config["batch"] = {"use_docker": False}
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        provision(self.env)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def write_env_file(path: str, env: dict[str, str]) -> None:
    """``export NAME=VALUE`` lines, written whole (renamed into place) so a reader never sees half."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("".join(f"export {name}={value}\n" for name, value in env.items()))
    os.replace(tmp, target)


def check_port_free(port: int) -> None:
    """A port already taken fails here, at once: the server's own thread would only print it and hang."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UsageError(f"The emulator cannot listen on 127.0.0.1:{port}: {exc.strerror}.",
                             [("i", "Another program (another emulator?) uses that port: choose another one, or "
                                    "--port 0 for a free one.")]) from None


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(port: int, env_file: str | None, batch_runner: str = "local", image: str | None = None) -> int:
    """Run in the foreground until SIGTERM or Ctrl-C; port 0 picks a free port."""
    port = port or free_port()
    check_port_free(port)
    # Jobs run `metaflow-r batch-task` and `Rscript`: make sure this interpreter's scripts come first.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request is noise here
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Emulator(port, batch_runner, image) as emulator:
        if env_file:
            write_env_file(env_file, emulator.env)
        where = "as local processes" if batch_runner == "local" else \
            f"in their images ({emulator.runner.engine}; default {emulator.env['METAFLOW_BATCH_CONTAINER_IMAGE']})"
        print(f"AWS emulator ready on http://127.0.0.1:{port}; Batch jobs run {where}"
              + (f"; settings in {env_file}" if env_file else ""), flush=True)
        while not stop.wait(0.5):
            pass
    print("AWS emulator stopped.", flush=True)
    return 0
