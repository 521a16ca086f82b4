"""An offline stand-in for AWS: a moto server on 127.0.0.1 whose Step Functions interpreter executes
state machines and whose Batch runs each job (batch.py): as a local process (the local R install stands
in for the image), or in the job definition's image with ``--batch-runner container``. moto needs a few
workarounds first (moto_patches.py). Its state lives in memory: a stopped emulator forgets its
deployments and runs' executions (the runs' data in its S3 goes with them), and it says so when it
starts. Stopping it stops every Batch job it is running.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from metaflow_r.core.errors import InstallationError, UsageError
from metaflow_r.emulator.batch import make_runner, stop_every_job
from metaflow_r.emulator.moto_patches import patch_moto

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "metaflow-r-emulator"
QUEUE = "metaflow-r-queue"
TABLE = "metaflow-r-sfn"
ROLES = {"batch": "metaflow-r-batch", "sfn": "metaflow-r-sfn", "events": "metaflow-r-events",
         "ecs": "metaflow-r-ecs-service", "execution": "metaflow-r-ecs-execution"}


# What a restart loses (docs/production.md says so too).
FORGETS = "when it stops, it forgets every deployment, execution and S3 object, and stops every Batch job it runs"

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
        "METAFLOW_ECS_FARGATE_EXECUTION_ROLE": arn + ROLES["execution"],
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

    def stop(self) -> int:
        """Stop every Batch job still running (while S3 is up: a stopped task records its attempt), then the
        server; returns how many jobs were stopped."""
        stopped = stop_every_job(self.runner)
        if self._server is not None:
            self._server.stop()
            self._server = None
        return stopped

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


def read_env_file(path: str) -> dict[str, str]:
    """The settings ``write_env_file`` wrote (R's emulator_start() reads them this way)."""
    found = {}
    for line in Path(path).read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name:
            found[name] = value
    return found


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


def check_installed() -> None:
    """The emulator is an optional extra: without moto, say how to add it."""
    import importlib.util

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise InstallationError("The offline AWS emulator is not installed: it needs moto, an optional part of the "
                                "backend.", [("i", "In R: metaflow::install_metaflow(emulator = TRUE)."),
                                             ("i", "With pip: pip install 'metaflow-r[emulator]'.")])


def serve(port: int, env_file: str | None, batch_runner: str = "local", image: str | None = None) -> int:
    """Run in the foreground until SIGTERM or Ctrl-C; port 0 picks a free port."""
    check_installed()
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
        print(f"Its state is in memory only: {FORGETS}.", flush=True)
        while not stop.wait(0.5):
            pass
        stopped = emulator.stop()
    print("AWS emulator stopped." + (f" It stopped the {stopped} Batch job(s) still running." if stopped else ""),
          flush=True)
    return 0
