"""What an AWS failure means to the user: one translation for every call the backend makes.

Each call is made through ``call(what, method, ...)`` or inside ``calling(what)``, where ``what`` says in the
user's words what was being done ("creating the state machine"). A refusal, missing credentials or region,
or an unreachable endpoint becomes one MetaflowRError naming the call and the fix, never a traceback.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from metaflow_r.core.errors import AwsError, ConfigurationError, MetaflowRError

_PERMISSION = "Your AWS identity lacks a permission: docs/iam.md lists what each role needs."
_THROTTLED = "AWS is throttling requests: wait a minute and run the same command again."
HINTS = {"AccessDenied": _PERMISSION, "AccessDeniedException": _PERMISSION,
         "ThrottlingException": _THROTTLED, "TooManyRequestsException": _THROTTLED}
# What S3, Batch, Step Functions and EventBridge answer for something that does not exist.
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "ResourceNotFoundException"})
# S3's answers to a conditional write (IfNoneMatch) whose object exists already.
EXISTS_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a refused call (a ``ClientError``, or the AwsError it became), else None."""
    if isinstance(exc, AwsError):
        return exc.code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def is_missing(exc: BaseException) -> bool:
    return error_code(exc) in MISSING_CODES


def translate(what: str, exc: BaseException) -> MetaflowRError:
    """``exc``, raised while ``what``, as the error the user reads."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, NoRegionError

    if isinstance(exc, MetaflowRError):
        return exc
    code = error_code(exc)
    if code is not None:
        message = getattr(exc, "response", {}).get("Error", {}).get("Message", "")
        error = AwsError(f"AWS refused {what}: {code}: {message}".rstrip(": "),
                         [("i", HINTS.get(code, "Fix the cause, then run the same command again; it resumes where "
                                                "it stopped."))])
        error.code = code
        return error
    if isinstance(exc, NoCredentialsError):
        return AwsError(f"No AWS credentials for {what}.",
                        [("i", "Configure credentials (aws configure, or AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY).")])
    if isinstance(exc, NoRegionError):
        return ConfigurationError(f"No AWS region is set for {what}.",
                                  [("i", "Set AWS_REGION (or AWS_DEFAULT_REGION, or METAFLOW_AWS_REGION) to the "
                                         "region of your deployment, e.g. us-east-1.")])
    if isinstance(exc, EndpointConnectionError):
        return AwsError(f"AWS could not be reached for {what}: {exc}.",
                        [("i", "Check AWS_ENDPOINT_URL and the network, then run it again.")])
    return AwsError(f"{what[:1].upper()}{what[1:]} failed: {type(exc).__name__}: {exc}")


@contextmanager
def calling(what: str) -> Iterator[None]:
    """Any AWS failure inside the block is translated (see ``translate``)."""
    try:
        yield
    except MetaflowRError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of an AWS call reads the same way
        raise translate(what, exc) from None


def call(what: str, method: Callable[..., Any], **kwargs: Any) -> Any:
    """``method(**kwargs)``, its failure translated."""
    with calling(what):
        return method(**kwargs)


def pages(what: str, client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every page of a paginated operation, each request's failure translated."""
    with calling(what):
        yield from client.get_paginator(operation).paginate(**kwargs)
