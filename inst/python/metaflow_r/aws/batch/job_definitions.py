"""What every AWS Batch job of a flow needs: the code package, and one job definition per step.

``plan_batch_jobs`` is pure: it packages the code and names each job definition by a hash of its content,
so an unchanged step keeps its definition. ``prepare_batch_jobs`` uploads the package and registers the
definitions, each only if it is not there yet. Both ``step-functions create`` and ``run --with batch`` use
them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

from metaflow_r.aws.batch import environment as env
from metaflow_r.aws.code_package import CodePackage, build_package
from metaflow_r.aws.errors import call
from metaflow_r.aws.requests.batch import check_job_definition
from metaflow_r.aws.requests.rules import in_context
from metaflow_r.aws.settings import DeploySettings
from metaflow_r.core.errors import AwsRuleError, ForeachTooWide, UsageError
from metaflow_r.core.graph import FlowGraph
from metaflow_r.datastore.layout import CODE_PACKAGE_KEY
from metaflow_r.datastore.storage import Storage

MAX_BATCH_NAME = 128
DEFAULT_CPU = 1
DEFAULT_MEMORY_MB = 4096
TASK_COMMAND = ["metaflow-r", "batch-task"]
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


def batch_override(graph: FlowGraph, step: str, name: str, with_batch: dict[str, Any] | None = None) -> str | None:
    """A step's decorator("batch", image =, queue =, iam_role =) value, which wins over --with batch's, which
    wins over the settings."""
    decorator = graph[step].spec.decorator("batch")
    value = decorator.attributes.get(name) if decorator is not None else None
    value = value or (with_batch or {}).get(name)
    return str(value) if value else None


def _resources(graph: FlowGraph, step: str, with_batch: dict[str, Any] | None) -> tuple[str, str, str | None]:
    """The Batch job's size: --with batch's, then the step's resources and batch decorators, attribute by
    attribute; the graph checked each value's kind (rules.json: cpu and memory > 0)."""
    node = graph[step]
    base = with_batch or {}
    cpu, memory, gpu = base.get("cpu", DEFAULT_CPU), base.get("memory", DEFAULT_MEMORY_MB), base.get("gpu")
    for name in ("resources", "batch"):
        decorator = node.spec.decorator(name)
        if decorator is not None:
            a = decorator.attributes
            cpu = a.get("cpu", cpu)
            memory = a.get("memory", memory)
            gpu = a.get("gpu", gpu)
    return f"{cpu:g}", f"{int(memory)}", (f"{int(gpu)}" if gpu else None)


def retry_attempts(graph: FlowGraph, step: str, with_retry: int | None) -> int:
    """Batch attempts for a step: retry decorator times + 1, or --with retry's; times = 0 means 1."""
    return max(1, min(10, graph[step].spec.retries(with_retry) + 1))


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
                    with_batch: dict[str, Any] | None) -> dict[str, Any]:
    cpu, memory, gpu = _resources(graph, step, with_batch)
    requirements = [{"type": "VCPU", "value": cpu}, {"type": "MEMORY", "value": memory}]
    if gpu:
        requirements.append({"type": "GPU", "value": gpu})
    body: dict[str, Any] = {
        "type": "container",
        "containerProperties": {
            "image": batch_override(graph, step, "image", with_batch) or settings.image,
            "command": TASK_COMMAND,
            "jobRoleArn": batch_override(graph, step, "iam_role", with_batch) or settings.batch_role,
            "resourceRequirements": requirements,
            "environment": env.overrides(_job_environment(graph, settings, attempts)),
        },
        "retryStrategy": batch_retry_strategy(attempts),
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
                    with_batch: dict[str, Any] | None = None, batch_retries: bool = True) -> BatchJobs:
    """The code package and job definitions, computed without AWS. ``batch_retries``: Batch's retryStrategy
    retries a failed task (Step Functions); without it each job is one attempt and its caller decides."""
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
    for node in graph:
        attempts = retry_attempts(graph, node.name, with_retry) if batch_retries else 1
        definition = _job_definition(graph, node.name, settings, attempts, with_batch)
        try:
            check_job_definition(definition)  # what AWS Batch would refuse fails here, before any call
        except AwsRuleError as exc:
            raise in_context(exc, f"Step {node.name!r} cannot run on AWS Batch as it is decorated: AWS Batch "
                                  "would refuse its job definition.") from None
        job_definitions[definition["jobDefinitionName"]] = definition
        by_step[node.name] = definition["jobDefinitionName"]
    queues = {n.name: batch_override(graph, n.name, "queue", with_batch) or settings.job_queue for n in graph}
    return BatchJobs(package, package_key, f"{settings.s3_root.rstrip('/')}/{package_key}", job_definitions,
                     by_step, queues, settings)


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
