"""AWS Batch's rules for the two requests the backend sends it: RegisterJobDefinition (the deployer, and
``run --with batch``) and SubmitJob (Step Functions' Batch integration, and ``run --with batch``'s launcher).

Sources, cited by each rule: the API reference's RegisterJobDefinition, SubmitJob, ContainerProperties,
ResourceRequirement, LinuxParameters, RetryStrategy, EvaluateOnExit and JobTimeout pages
(https://docs.aws.amazon.com/batch/latest/APIReference/), and the user guide's service quotas
(https://docs.aws.amazon.com/batch/latest/userguide/service_limits.html).
"""
from __future__ import annotations

import json
import re
from typing import Any

from metaflow_r.aws.requests.rules import number, refused, whole

PLATFORMS = ("EC2", "FARGATE")
# Fargate's sizes: each vCPU value and the memory (MiB) it may have (API_ResourceRequirement, type "VCPU").
FARGATE_MEMORY: dict[float, tuple[int, ...]] = {
    0.25: (512, 1024, 2048),
    0.5: (1024, 2048, 3072, 4096),
    1: tuple(range(2048, 8193, 1024)),
    2: tuple(range(4096, 16385, 1024)),
    4: tuple(range(8192, 30721, 1024)),
    8: tuple(range(16384, 61441, 4096)),
    16: tuple(range(32768, 122881, 8192)),
    32: (61440, 122880, 249856),
}
MAX_JOB_DEFINITION_BYTES = 24 * 1024  # service quotas: "Maximum job definition size", 24 KiB
MAX_SUBMIT_JOB_BYTES = 30 * 1024  # service quotas: "Maximum job payload size" of SubmitJob, 30 KiB
MAX_ATTEMPTS = 10  # RetryStrategy.attempts: "between 1 and 10"
MIN_TIMEOUT_SECONDS = 60  # JobTimeout.attemptDurationSeconds: "The minimum value for the timeout is 60 seconds"
ARRAY_SIZES = (2, 10_000)  # ArrayProperties.size, and the quota "Maximum array size for array jobs"
# RegisterJobDefinition's jobDefinitionName: up to 128 letters, numbers, hyphens and underscores.
DEFINITION_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
# SubmitJob's jobName: the same, and "The first character must be alphanumeric".
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# EvaluateOnExit.onExitCode: "only numbers, and can end with an asterisk", at most 512 characters.
EXIT_CODE_PATTERN = re.compile(r"[0-9]{0,511}\*?|[0-9]{512}")
RESERVED_PREFIX = "AWS_BATCH"  # ContainerProperties.environment: "cannot start with AWS_BATCH"
_FARGATE = 'decorator("batch", platform = "fargate")'


def check_job_definition(request: dict[str, Any]) -> None:
    """A RegisterJobDefinition request as boto3 takes it."""
    _check_size(request, MAX_JOB_DEFINITION_BYTES, "A job definition", "RegisterJobDefinition")
    _check_name(request.get("jobDefinitionName"), DEFINITION_NAME, "job definition name", "",
                "Give the flow a shorter name, of letters, digits and _.")
    if request.get("type") != "container" or not isinstance(request.get("containerProperties"), dict):
        raise refused(f"A job definition of type {request.get('type')!r} needs containerProperties.",
                      "Register single-node container job definitions (type \"container\").")
    platform = _platform(request.get("platformCapabilities"))
    container = request["containerProperties"]
    if not str(container.get("image", "")):
        raise refused("A container job definition needs an image.", "Set METAFLOW_BATCH_CONTAINER_IMAGE.")
    _check_resources(_resources(container), platform)
    _check_platform_fields(container, platform)
    _check_environment(container.get("environment") or [], "The job definition")
    _check_retry_strategy(request.get("retryStrategy"))
    _check_timeout(request.get("timeout"))


def check_submit_job(request: dict[str, Any]) -> None:
    """A SubmitJob request as boto3 takes it (Step Functions' Batch integration sends the same members)."""
    _check_size(request, MAX_SUBMIT_JOB_BYTES, "A job submission", "SubmitJob")
    _check_name(request.get("jobName"), JOB_NAME, "job name", ", starting with a letter or digit",
                "Give the flow and the step shorter names.")
    for member in ("jobQueue", "jobDefinition"):
        if not str(request.get(member, "")):
            raise refused(f"SubmitJob needs a {member}.", "Redeploy the flow: step-functions create.")
    size = (request.get("arrayProperties") or {}).get("size")
    if size is not None and not (isinstance(size, int) and ARRAY_SIZES[0] <= size <= ARRAY_SIZES[1]):
        raise refused(f"An array job has {ARRAY_SIZES[0]} to {ARRAY_SIZES[1]:,} children; this one asks for {size}.",
                      "Submit one child as a plain job, and more than 10,000 as several array jobs.")
    _check_environment((request.get("containerOverrides") or {}).get("environment") or [], "The job's overrides")
    _check_retry_strategy(request.get("retryStrategy"))
    _check_timeout(request.get("timeout"))


def fargate_sizes() -> str:
    """Fargate's vCPU values and the memory each may have, for a message."""
    return "; ".join(f"{cpu:g} vCPU: {memory[0]}-{memory[-1]} MiB" for cpu, memory in FARGATE_MEMORY.items())


def _check_name(value: Any, pattern: re.Pattern[str], what: str, also: str, fix: str) -> None:
    name = str(value or "")
    if not pattern.fullmatch(name):
        raise refused(f"The {what} {name[:200]!r} is not valid: AWS Batch takes 1-128 letters, digits, - and _"
                      f"{also}.", fix)


def _check_size(request: dict[str, Any], limit: int, what: str, operation: str) -> None:
    size = len(json.dumps(request, separators=(",", ":")).encode())
    if size > limit:
        raise refused(f"{what} is {size:,} bytes; AWS Batch takes at most {limit // 1024} KiB for {operation}.",
                      "Keep large values out of the job's environment: pass them through S3.")


def _platform(capabilities: Any) -> str:
    """The job definition's platform: EC2 unless platformCapabilities says FARGATE (RegisterJobDefinition)."""
    found = list(capabilities or ["EC2"])
    if len(found) != 1 or found[0] not in PLATFORMS:
        raise refused(f"platformCapabilities {found} is not one of {list(PLATFORMS)}.",
                      'Choose "ec2" (the default) or "fargate" with decorator("batch", platform = ...).')
    return str(found[0])


def _resources(container: dict[str, Any]) -> dict[str, str]:
    found = {r.get("type"): str(r.get("value")) for r in container.get("resourceRequirements") or []}
    for legacy, kind in (("vcpus", "VCPU"), ("memory", "MEMORY")):  # deprecated ContainerProperties members
        if container.get(legacy) is not None:
            found.setdefault(kind, str(container[legacy]))
    unknown = set(found) - {"VCPU", "MEMORY", "GPU"}
    if unknown:
        raise refused(f"Resource types {sorted(unknown)} are not GPU, MEMORY or VCPU.", "Ask for cpu, memory or gpu.")
    return found


def _check_resources(resources: dict[str, str], platform: str) -> None:
    """ResourceRequirement: VCPU and MEMORY are required; their values depend on the platform."""
    for kind in ("VCPU", "MEMORY"):
        if kind not in resources or number(resources[kind]) is None:
            raise refused(f"A job definition needs a numeric {kind}; it has {resources.get(kind)!r}.",
                          "Give the step cpu and memory (decorator(\"resources\", cpu = 1, memory = 4096)).")
    cpu, memory = number(resources["VCPU"]), number(resources["MEMORY"])
    if platform == "FARGATE":
        _check_fargate_size(cpu, memory, resources)
        return
    # "For Amazon EC2 resources, you must specify at least one vCPU": whole vCPUs, written without a fraction
    # (Batch refuses "1.0" as well: kestra-io/plugin-aws#504).
    if whole(resources["VCPU"]) is None or cpu < 1:
        raise refused(f"On EC2, AWS Batch reserves whole vCPUs, at least 1; this job asks for {resources['VCPU']}.",
                      f"Ask for cpu = 1 or more, or run the step on Fargate ({_FARGATE}), where 0.25 and 0.5 "
                      "vCPU are sizes.")
    if whole(resources["MEMORY"]) is None or memory < 4:
        raise refused(f"AWS Batch needs a whole number of MiB of memory, at least 4; this job asks for "
                      f"{resources['MEMORY']}.", "Give the step memory in MiB, e.g. memory = 4096.")
    if "GPU" in resources and (whole(resources["GPU"]) or 0) < 1:
        raise refused(f"GPU is a whole number of GPUs, at least 1; this job asks for {resources['GPU']}.",
                      "Leave gpu out, or ask for gpu = 1 or more.")


def _check_fargate_size(cpu: float, memory: float, resources: dict[str, str]) -> None:
    """On Fargate, "value must match one of the supported values and the MEMORY values must be one of the
    values supported for that VCPU value"; and "GPUs aren't available for jobs that are running on Fargate"."""
    if "GPU" in resources:
        raise refused("GPUs aren't available on Fargate; this job asks for one.",
                      "Run a step that needs a GPU on EC2: leave out platform = \"fargate\".")
    if cpu not in FARGATE_MEMORY:
        raise refused(f"Fargate runs jobs of {', '.join(f'{c:g}' for c in FARGATE_MEMORY)} vCPU; this job asks for "
                      f"{resources['VCPU']}.", f"Choose one of those sizes ({fargate_sizes()}).")
    if memory not in FARGATE_MEMORY[cpu]:
        allowed = ", ".join(str(m) for m in FARGATE_MEMORY[cpu])
        raise refused(f"On Fargate a {cpu:g} vCPU job has {allowed} MiB of memory; this job asks for "
                      f"{resources['MEMORY']}.", f"Choose one of those, or another size ({fargate_sizes()}).")


def _check_platform_fields(container: dict[str, Any], platform: str) -> None:
    """ContainerProperties members that belong to one platform only."""
    if platform == "FARGATE":
        # executionRoleArn: "For jobs that run on Fargate resources, you must provide an execution role."
        if not str(container.get("executionRoleArn", "")):
            raise refused("A Fargate job definition needs an execution role (executionRoleArn).",
                          "Set METAFLOW_ECS_FARGATE_EXECUTION_ROLE to the role ECS pulls the image and writes "
                          "logs with.")
        # LinuxParameters.sharedMemorySize: "This parameter isn't applicable to jobs that are running on Fargate."
        if (container.get("linuxParameters") or {}).get("sharedMemorySize") is not None:
            raise refused("Fargate jobs cannot size /dev/shm (linuxParameters.sharedMemorySize).",
                          "Run a step that needs shared_memory on EC2: leave out platform = \"fargate\".")
        return
    # networkConfiguration and fargatePlatformConfiguration: "Jobs that are running on Amazon EC2 resources
    # must not specify this parameter."
    for member in ("networkConfiguration", "fargatePlatformConfiguration"):
        if member in container:
            raise refused(f"An EC2 job definition must not have {member}.", f"Drop {member}, or run on Fargate.")
    shared = (container.get("linuxParameters") or {}).get("sharedMemorySize")
    if shared is not None and not (isinstance(shared, int) and shared > 0):
        raise refused(f"sharedMemorySize is a whole number of MiB; this job asks for {shared!r}.",
                      "Give shared_memory in MiB, e.g. shared_memory = 2048.")


def _check_environment(environment: list[dict[str, Any]], whose: str) -> None:
    reserved = [e.get("name") for e in environment if str(e.get("name", "")).startswith(RESERVED_PREFIX)]
    if reserved:
        raise refused(f"{whose} sets {reserved}: variables starting with {RESERVED_PREFIX} are reserved for what "
                      "AWS Batch sets.", "Rename the variables.")


def _check_retry_strategy(strategy: dict[str, Any] | None) -> None:
    """RetryStrategy: attempts 1-10; evaluateOnExit, up to 5 conditions, needs attempts."""
    if strategy is None:
        return
    attempts = strategy.get("attempts")
    if attempts is None and strategy.get("evaluateOnExit"):
        raise refused("A retry strategy with evaluateOnExit needs attempts.", "Give the retry strategy attempts.")
    if attempts is not None and not (isinstance(attempts, int) and 1 <= attempts <= MAX_ATTEMPTS):
        raise refused(f"AWS Batch runs a job 1 to {MAX_ATTEMPTS} times (retryStrategy.attempts); this one asks for "
                      f"{attempts}.", f"Retry a step at most {MAX_ATTEMPTS - 1} times: decorator(\"retry\", "
                                      f"times = {MAX_ATTEMPTS - 1}).")
    conditions = strategy.get("evaluateOnExit") or []
    if len(conditions) > 5:
        raise refused(f"evaluateOnExit takes up to 5 conditions; this one has {len(conditions)}.", "Merge them.")
    for condition in conditions:
        if str(condition.get("action", "")).upper() not in ("RETRY", "EXIT"):
            raise refused(f"An evaluateOnExit action is RETRY or EXIT, not {condition.get('action')!r}.",
                          "Use RETRY or EXIT.")
        code = condition.get("onExitCode")
        if code is not None and not EXIT_CODE_PATTERN.fullmatch(str(code)):
            raise refused(f"onExitCode {code!r} is not digits, optionally ending in *.", "Write it as 86 or 8*.")


def _check_timeout(timeout: dict[str, Any] | None) -> None:
    seconds = (timeout or {}).get("attemptDurationSeconds")
    if seconds is not None and not (isinstance(seconds, int) and seconds >= MIN_TIMEOUT_SECONDS):
        raise refused(f"A Batch job's timeout is at least {MIN_TIMEOUT_SECONDS} seconds; this one is {seconds!r}.",
                      "Give decorator(\"timeout\") a minute or more.")
