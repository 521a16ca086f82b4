"""The settings a deployment and a run's Batch jobs need, as Metaflow users know them (environment or
~/.metaflowconfig/config.json): every missing one is named in one error, before any AWS call."""
from __future__ import annotations

import os
from dataclasses import dataclass

from metaflow_r.core.config import setting
from metaflow_r.core.errors import ConfigurationError

REQUIRED_SETTINGS = {
    "s3_root": "DATASTORE_SYSROOT_S3",
    "job_queue": "BATCH_JOB_QUEUE",
    "batch_role": "ECS_S3_ACCESS_IAM_ROLE",
    "sfn_role": "SFN_IAM_ROLE",
    "dynamo_table": "SFN_DYNAMO_DB_TABLE",
    "image": "BATCH_CONTAINER_IMAGE",
}
# What `run --with batch` needs: no state machine, so neither its role nor its DynamoDB table.
STEP_FUNCTIONS_ONLY = ("sfn_role", "dynamo_table")
EVENTS_ROLE = "EVENTS_SFN_ACCESS_IAM_ROLE"
# The role ECS pulls the image and writes logs with, which a Fargate job definition must name (Metaflow's name).
EXECUTION_ROLE = "ECS_FARGATE_EXECUTION_ROLE"


@dataclass(frozen=True)
class DeploySettings:
    s3_root: str
    job_queue: str
    batch_role: str
    sfn_role: str | None
    dynamo_table: str | None
    image: str
    events_role: str | None = None
    region: str | None = None  # given to jobs, whose boto3 clients need one
    execution_role: str | None = None  # steps on Fargate only (job_definitions.py says when it is missing)

    @classmethod
    def from_environment(cls, need_events_role: bool, placeholders: bool = False) -> "DeploySettings":
        """Every missing setting is named in one error (or, for --only-json, shown as a placeholder)."""
        return cls._read(REQUIRED_SETTINGS, need_events_role, placeholders, "Step Functions needs")

    @classmethod
    def for_batch_runs(cls, who: str = "Running steps on AWS Batch (--with batch) needs") -> "DeploySettings":
        """What a local run whose steps run on AWS Batch needs, every missing one named."""
        required = {k: v for k, v in REQUIRED_SETTINGS.items() if k not in STEP_FUNCTIONS_ONLY}
        return cls._read(required, False, False, who)

    @classmethod
    def _read(cls, required: dict[str, str], need_events_role: bool, placeholders: bool,
              who: str) -> "DeploySettings":
        values: dict[str, str | None] = {field_name: setting(name) for field_name, name in REQUIRED_SETTINGS.items()}
        values["events_role"] = setting(EVENTS_ROLE)
        values["execution_role"] = setting(EXECUTION_ROLE) or (f"<METAFLOW_{EXECUTION_ROLE}>" if placeholders else None)
        missing = [f"METAFLOW_{name}" for field_name, name in required.items() if not values[field_name]]
        if need_events_role and not values["events_role"]:
            missing.append(f"METAFLOW_{EVENTS_ROLE}")
        if missing and not placeholders:
            raise ConfigurationError(
                f"{who} settings that are missing: {', '.join(missing)}.",
                [("i", "Set them as environment variables or in ~/.metaflowconfig/config.json."),
                 ("i", "Offline, `metaflow-r emulator` writes all of them to an env file.")])
        if placeholders:
            for field_name, name in [*REQUIRED_SETTINGS.items(), ("events_role", EVENTS_ROLE)]:
                values[field_name] = values[field_name] or f"<METAFLOW_{name}>"
        values["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return cls(**values)

    @property
    def s3_url(self) -> str:
        """The S3 root as a URL even when it is --only-json's placeholder."""
        return self.s3_root if self.s3_root.startswith("s3://") else f"s3://{self.s3_root}"
