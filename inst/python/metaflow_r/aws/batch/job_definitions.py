"""What every AWS Batch job of a flow needs: the code package, and one job definition per step.

``plan_batch_jobs`` is pure: it packages the code and names each job definition by a hash of its content,
so an unchanged step keeps its definition. ``prepare_batch_jobs`` uploads the package and registers the
definitions, each only if it is not there yet. Both ``step-functions create`` and ``run --with batch`` use
them.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection

from metaflow_r.aws.batch import environment as env
from metaflow_r.aws.batch.image_packages import check_image_packages
from metaflow_r.aws.code_package import CodePackage, build_package
from metaflow_r.aws.errors import call
from metaflow_r.aws.requests.batch import check_job_definition
from metaflow_r.aws.requests.rules import in_context
from metaflow_r.aws.settings import EXECUTION_ROLE, DeploySettings
from metaflow_r.core.errors import AwsRuleError, ConfigurationError, ForeachTooWide, UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.datastore.layout import CODE_PACKAGE_KEY
from metaflow_r.datastore.storage import Storage

MAX_BATCH_NAME = 128
DEFAULT_CPU = 1
DEFAULT_MEMORY_MB = 4096
TASK_COMMAND = ["metaflow-r", "batch-task"]
SIZES = ("cpu", "memory", "gpu", "shared_memory")
BATCH_TIMEOUT_MARGIN = 120  # seconds


@dataclass
class BatchJobs:
    """What every Batch job of a flow needs: the code package, and each step's job definition and queue."""

    package: CodePackage
    package_key: str
    code_url: str
    job_definitions: dict[str, dict[str, Any]]  # name -> register_job_definition arguments
    by_step: dict[str, str]  # step -> job definition name
    queues: dict[str, str]  # step -> job queue
    settings: DeploySettings
    retry_delays: dict[str, tuple[int, int]] = field(default_factory=dict)  # step -> (seconds, retries)


def batch_override(graph: FlowGraph, step: str, name: str, with_batch: dict[str, Any] | None = None) -> str | None:
    """A step's decorator("batch", image =, queue =, iam_role =) value, which wins over --with batch's, which
    wins over the settings."""
    decorator = graph[step].spec.decorator("batch")
    value = decorator.attributes.get(name) if decorator is not None else None
    value = value or (with_batch or {}).get(name)
    return str(value) if value else None


def _size(graph: FlowGraph, step: str, with_batch: dict[str, Any] | None) -> dict[str, Any]:
    """The Batch job's size (cpu, memory, gpu, shared_memory): --with batch's, then the step's resources and
    batch decorators, attribute by attribute; the graph checked each value's kind (rules.json: > 0)."""
    size = {"cpu": DEFAULT_CPU, "memory": DEFAULT_MEMORY_MB, **(with_batch or {})}
    for name in ("resources", "batch"):
        decorator = graph[step].spec.decorator(name)
        if decorator is not None:
            size.update({k: v for k, v in decorator.attributes.items() if k in SIZES})
    return {k: v for k, v in size.items() if k in SIZES and v}


def _container_size(size: dict[str, Any]) -> dict[str, Any]:
    """The size as ContainerProperties members: resourceRequirements, and /dev/shm as linuxParameters (MiB,
    whole: a fraction is passed on for the strict checks to refuse)."""
    requirements = [{"type": "VCPU", "value": f"{size['cpu']:g}"}, {"type": "MEMORY", "value": f"{int(size['memory'])}"}]
    if size.get("gpu"):
        requirements.append({"type": "GPU", "value": f"{int(size['gpu'])}"})
    found: dict[str, Any] = {"resourceRequirements": requirements}
    shared = size.get("shared_memory")
    if shared:
        found["linuxParameters"] = {"sharedMemorySize": int(shared) if float(shared).is_integer() else shared}
    return found


def _platform(graph: FlowGraph, step: str, settings: DeploySettings, with_batch: dict[str, Any] | None) -> dict[str, Any]:
    """The job definition's members for the step's platform: nothing for EC2 (the default), platformCapabilities
    and the execution role for Fargate, which a Fargate job definition must name."""
    platform = (batch_override(graph, step, "platform", with_batch) or "EC2").upper()
    if platform == "EC2":
        return {}
    if not settings.execution_role:
        raise ConfigurationError(f"Step {step!r} runs on Fargate, which needs a setting that is missing: "
                                 f"METAFLOW_{EXECUTION_ROLE}.",
                                 [("i", "Set it to the ARN of the role ECS pulls the image and writes the job's logs "
                                        "with (docs/iam.md), as an environment variable or in "
                                        "~/.metaflowconfig/config.json.")])
    return {"platformCapabilities": [platform], "executionRoleArn": settings.execution_role}


def retry_attempts(graph: FlowGraph, step: str, with_retry: int | None) -> int:
    """The attempts a step's task gets: retry decorator times + 1, or --with retry's; times = 0 means 1. AWS
    Batch runs a job at most 10 times: more is refused with the rule (aws/requests/batch.py)."""
    return max(1, graph[step].spec.retries(with_retry) + 1)


def batch_retry_strategy(attempts: int) -> dict[str, Any]:
    """Batch retries a failed job up to ``attempts`` in all, except a failure no retry can help (a foreach
    too wide for its deployment exits with its own status, which no rule below retries)."""
    if attempts == 1:
        return {"attempts": 1}
    return {"attempts": attempts,
            "evaluateOnExit": [{"onExitCode": str(ForeachTooWide.exit_code), "action": "EXIT"}]}


def _job_environment(graph: FlowGraph, settings: DeploySettings, attempts: int) -> dict[str, str]:
    values = {env.FLOW_NAME: graph.spec.name, env.DEFAULT_DATASTORE: "s3", env.DATASTORE_ROOT: settings.s3_root}
    if settings.dynamo_table:
        values[env.DYNAMO_TABLE] = settings.dynamo_table
    values[env.BATCH_ATTEMPTS] = str(attempts)
    if settings.region:
        values[env.REGION] = settings.region
    return values


def _job_definition(graph: FlowGraph, step: str, settings: DeploySettings, attempts: int,
                    with_batch: dict[str, Any] | None, batch_attempts: int) -> dict[str, Any]:
    """``attempts``: the task's in all; ``batch_attempts``: those Batch makes (1 where Step Functions retries)."""
    platform = _platform(graph, step, settings, with_batch)
    role = platform.pop("executionRoleArn", None)
    body: dict[str, Any] = {
        "type": "container",
        **platform,
        "containerProperties": {
            "image": batch_override(graph, step, "image", with_batch) or settings.image,
            "command": TASK_COMMAND,
            "jobRoleArn": batch_override(graph, step, "iam_role", with_batch) or settings.batch_role,
            **({"executionRoleArn": role} if role else {}),
            **_container_size(_size(graph, step, with_batch)),
            "environment": env.overrides(_job_environment(graph, settings, attempts)),
        },
        "retryStrategy": batch_retry_strategy(batch_attempts),
    }
    seconds = graph[step].spec.timeout_seconds()
    if seconds is not None:
        # The task enforces the timeout itself (so decorator("catch") can still run); Batch's own limit,
        # a little later, only stops a job that hangs outside the task.
        body["timeout"] = {"attemptDurationSeconds": max(60, int(seconds) + BATCH_TIMEOUT_MARGIN)}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    name = f"metaflow-{graph.spec.name}-{digest}"[:MAX_BATCH_NAME]
    return {"jobDefinitionName": name, **body}


def plan_batch_jobs(graph: FlowGraph, raw_spec: dict[str, Any], settings: DeploySettings, *,
                    versions: dict[str, str], package_suffixes: tuple[str, ...] = (), with_retry: int | None = None,
                    with_batch: dict[str, Any] | None = None, batch_retries: bool = True,
                    steps: Collection[str] | None = None, placeholders: bool = False,
                    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> BatchJobs:
    """The code package and job definitions (of ``steps``, by default every step), computed without AWS.
    ``batch_retries``: Batch's retryStrategy retries a failed task (Step Functions); without it each job is
    one attempt and its caller decides. Each job's image is checked for the R packages its step uses
    (image_packages.py) unless the settings are --only-json's ``placeholders``."""
    spec = graph.spec
    if not spec.script:
        raise UsageError("The flow's script is unknown: it is deployed with the flow.",
                         [("i", "Save the flow in a file, then source() it in R, or run Rscript flow.R "
                                "step-functions create.")])
    # run(package_suffixes =) arrives in the spec, --package-suffixes on the command line: both count.
    suffixes = (*(raw_spec.get("package_suffixes") or ()), *package_suffixes)
    package = build_package(spec.script, raw_spec, versions, suffixes)
    package_key = CODE_PACKAGE_KEY.format(flow=spec.name, sha=package.sha)
    job_definitions: dict[str, dict[str, Any]] = {}
    by_step: dict[str, str] = {}
    delays: dict[str, tuple[int, int]] = {}
    nodes = [node for node in graph if steps is None or node.name in steps]
    for node in nodes:
        attempts = retry_attempts(graph, node.name, with_retry) if batch_retries else 1
        delay = node.spec.retry_delay_seconds(with_retry) if batch_retries else 0
        if delay:  # Batch retries at once: the state machine retries the step, waiting (compile.py)
            delays[node.name] = (delay, attempts - 1)
        definition = _job_definition(graph, node.name, settings, attempts, with_batch, 1 if delay else attempts)
        try:
            check_job_definition(definition)  # what AWS Batch would refuse fails here, before any call
        except AwsRuleError as exc:
            raise in_context(exc, f"Step {node.name!r} cannot run on AWS Batch as it is decorated: AWS Batch "
                                  "would refuse its job definition.") from None
        job_definitions[definition["jobDefinitionName"]] = definition
        by_step[node.name] = definition["jobDefinitionName"]
    if not placeholders:
        images = {step: job_definitions[name]["containerProperties"]["image"] for step, name in by_step.items()}
        check_image_packages(graph, images, warn, f"Rscript {shlex.quote(Path(spec.script).name)} image build")
    queues = {n.name: batch_override(graph, n.name, "queue", with_batch) or settings.job_queue for n in nodes}
    return BatchJobs(package, package_key, f"{settings.s3_root.rstrip('/')}/{package_key}", job_definitions,
                     by_step, queues, settings, delays)


def prepare_batch_jobs(jobs: BatchJobs, storage: Storage, batch: Any, echo: Callable[[str], None]) -> None:
    """Upload the code package (to ``storage``, the S3 datastore) and register the job definitions with the
    ``batch`` client, each only if it is not there yet."""
    if not storage.exists(jobs.package_key):
        storage.write_bytes(jobs.package_key, jobs.package.data)
        echo(f"Code package uploaded: {len(jobs.package.files)} file(s), sha {jobs.package.sha[:12]}.")
    for name, body in jobs.job_definitions.items():
        found = call("looking up Batch job definitions", batch.describe_job_definitions,
                     jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
        if not found:
            call(f"registering Batch job definition {name}", batch.register_job_definition, **body)
            echo(f"Batch job definition {name} registered.")
