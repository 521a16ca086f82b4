"""The one way the backend reaches AWS: a boto3 session in the configured region, and its clients.

Every AWS client the backend makes comes from here (tests/python/test_layers.py checks that nothing else
imports boto3), so the region rule and retry behaviour are the same for every call.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from metaflow_r.core.config import setting
from metaflow_r.core.errors import ConfigurationError


def session() -> Any:
    """A boto3 session in METAFLOW_AWS_REGION, else in boto3's own region (AWS_REGION, AWS_DEFAULT_REGION)."""
    import boto3

    return boto3.session.Session(region_name=setting("AWS_REGION") or None)


def client(service: str, *, patient: bool = False, session_: Any = None) -> Any:
    """A client of ``service``. ``patient`` clients wait out throttling (up to 10 attempts, as AWS advises
    for callers that poll), for the calls a long local run makes again and again."""
    config = None
    if patient:
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 10})
    from botocore.exceptions import NoRegionError

    try:
        return (session_ or session()).client(service, config=config)
    except NoRegionError:  # which says only "You must specify a region."
        raise ConfigurationError(
            "AWS needs a setting that is missing: AWS_REGION.",
            [("i", "Set AWS_REGION (or AWS_DEFAULT_REGION, or METAFLOW_AWS_REGION, or region in ~/.aws/config) to "
                   "the region of your deployment, e.g. us-east-1."),
             ("i", "Offline, `metaflow-r emulator` writes all of them to an env file.")]) from None


@lru_cache(maxsize=1)
def s3_transfer_config() -> Any:
    """How large S3 objects move (boto3's transfer manager): above 16 MB in 16 MB parts, ten at a time, so a large
    artifact goes at the instance's bandwidth rather than one connection's (a part costs a request; AWS allows
    10,000 parts an object: 160 GB)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=10)


@lru_cache(maxsize=None)
def input_shape(service: str, operation: str) -> Any:
    """botocore's model of ``operation``'s request (``service`` as boto3 names it), or None when botocore knows
    no such operation: what aws/requests/integrations.py checks an SDK integration's Parameters against."""
    import botocore.session
    from botocore.exceptions import UnknownServiceError

    try:
        model = botocore.session.get_session().get_service_model(service)
    except UnknownServiceError:
        return None
    if operation not in model.operation_names:
        return None
    return model.operation_model(operation).input_shape
