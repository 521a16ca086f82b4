"""The Parameters of a Task state's resource, as Step Functions documents each integration, and the
ItemReader and ResultWriter of a distributed Map.

Step Functions expresses a service's request members in PascalCase ("Parameters in Step Functions are
expressed in PascalCase, even when the native service API is camelCase": the developer guide's "Service
integrations" pages). Optimized integrations take only the members their page lists; an AWS SDK integration
(``arn:aws:states:::aws-sdk:service:action``) takes the API's request shape, which botocore's service model
holds (aws/session.py). Each name below cites its page in https://docs.aws.amazon.com/step-functions/latest/dg/.
"""
from __future__ import annotations

import re
from typing import Any

from metaflow_r.aws.requests.rules import refused
from metaflow_r.aws.session import input_shape

# connect-batch.html, "Supported AWS Batch APIs": SubmitJob's supported parameters.
BATCH_SUBMIT_JOB = {"ArrayProperties", "ContainerOverrides", "DependsOn", "JobDefinition", "JobName", "JobQueue",
                    "Parameters", "RetryStrategy", "Timeout", "Tags"}
# connect-ddb.html, "Supported DynamoDB APIs": GetItem's supported parameters.
DYNAMODB_GET_ITEM = {"Key", "TableName", "AttributesToGet", "ConsistentRead", "ExpressionAttributeNames",
                     "ProjectionExpression", "ReturnConsumedCapacity"}
# (service, API action as boto3 names it, the members the integration's page lists or None for the whole shape)
OPTIMIZED = {
    "arn:aws:states:::batch:submitJob": ("batch", "SubmitJob", BATCH_SUBMIT_JOB),
    "arn:aws:states:::batch:submitJob.sync": ("batch", "SubmitJob", BATCH_SUBMIT_JOB),
    "arn:aws:states:::dynamodb:getItem": ("dynamodb", "GetItem", DYNAMODB_GET_ITEM),
}
# input-output-itemreader.html: a JSON file in S3 is read with s3:getObject, its Parameters Bucket and Key.
ITEM_READERS = {"arn:aws:states:::s3:getObject": {"Bucket", "Key", "VersionId"}}
# input-output-resultwriter.html: ResultWriter's Resource is s3:putObject, its Parameters Bucket and Prefix.
RESULT_WRITERS = {"arn:aws:states:::s3:putObject": {"Bucket", "Prefix"}}
AWS_SDK = re.compile(r"arn:aws:states:::aws-sdk:([a-z0-9]+):([a-zA-Z0-9]+)")
# Members the SDKs know but no Step Functions page says its SDK integration takes: S3's conditional writes
# (IfMatch, IfNoneMatch) came to the S3 API in August 2024, and the integration's support for them is not
# documented, so a state machine using them might be refused ("The field ... is not supported").
UNCONFIRMED = {("s3", "PutObject"): {"IfMatch", "IfNoneMatch"}}


def check_task_parameters(state_name: str, resource: str, parameters: dict[str, Any]) -> None:
    """A Task state's Parameters against its Resource's documented request."""
    if resource in OPTIMIZED:
        service, operation, listed = OPTIMIZED[resource]
        _check_members(state_name, resource, parameters, listed, service, operation)
        return
    match = AWS_SDK.fullmatch(resource)
    if match is None:
        raise refused(f"State {state_name!r}: {resource!r} is not an integration the backend checks.",
                      "Use batch:submitJob.sync, dynamodb:getItem or an aws-sdk integration.")
    service, action = match.group(1), match.group(2)
    operation = action[:1].upper() + action[1:]
    if input_shape(service, operation) is None:
        raise refused(f"State {state_name!r}: {service}:{action} is not an API action of the AWS SDK.",
                      "Check the action's name against the service's API reference (camelCase).")
    unconfirmed = UNCONFIRMED.get((service, operation), set()) & {_member(k) for k in parameters}
    if unconfirmed:
        raise refused(f"State {state_name!r} passes {sorted(unconfirmed)} to {service}:{action}: Step Functions does "
                      "not document these newer members for its SDK integration.",
                      "Record the outcome with members the integration has long had (Bucket, Key, Body).")
    _check_members(state_name, resource, parameters, None, service, operation)


def check_item_reader(state_name: str, reader: dict[str, Any]) -> None:
    _check_fixed(state_name, "ItemReader", ITEM_READERS, reader)


def check_result_writer(state_name: str, writer: dict[str, Any]) -> None:
    _check_fixed(state_name, "ResultWriter", RESULT_WRITERS, writer)


def _check_fixed(state_name: str, field: str, allowed: dict[str, set[str]], value: dict[str, Any]) -> None:
    resource = value.get("Resource")
    if resource not in allowed:
        raise refused(f"State {state_name!r}: {field} Resource {resource!r} is not one of {sorted(allowed)}.",
                      f"Give {field} one of those resources.")
    extra = {_member(k) for k in value.get("Parameters") or {}} - allowed[resource]
    if extra:
        raise refused(f"State {state_name!r}: {field} Parameters {sorted(extra)} are not among "
                      f"{sorted(allowed[resource])}.", f"Give {field} only those Parameters.")


def _member(key: str) -> str:
    return key[:-2] if key.endswith(".$") else key


def _check_members(state_name: str, resource: str, parameters: dict[str, Any], listed: set[str] | None,
                   service: str, operation: str) -> None:
    """Each member is documented (``listed``, else the API's shape); literal values are checked against the
    shape all the way down; every required member is given."""
    shape = input_shape(service, operation)
    members = {_member(k) for k in parameters}
    if listed is not None and members - listed:
        raise refused(f"State {state_name!r}: {resource} does not take {sorted(members - listed)}.",
                      f"Its documented parameters are {sorted(listed)}.")
    _check_structure(f"State {state_name!r}: {resource}", parameters, shape)


def _check_structure(where: str, value: dict[str, Any], shape: Any) -> None:
    names = {_pascal(name): name for name in shape.members}
    given = {_member(k) for k in value}
    unknown = sorted(given - set(names))
    if unknown:
        raise refused(f"{where}: {unknown} are not members of {shape.name}.",
                      f"Its members are {sorted(names)[:40]}.")
    missing = sorted(_pascal(m) for m in getattr(shape, "required_members", []) if _pascal(m) not in given)
    if missing:
        raise refused(f"{where}: the required {missing} of {shape.name} are missing.", "Give them.")
    for key, item in value.items():
        if not key.endswith(".$"):
            _check_value(f"{where}.{key}", item, shape.members[names[key]])


def _check_value(where: str, value: Any, shape: Any) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise refused(f"{where} must be an object.", "Write it as one.")
        _check_structure(where, value, shape)
    elif kind == "list":
        if not isinstance(value, list):
            raise refused(f"{where} must be a list.", "Write it as one.")
        for index, item in enumerate(value):
            _check_value(f"{where}[{index}]", item, shape.member)
    elif kind in ("string", "blob") and not isinstance(value, str):
        raise refused(f"{where} must be a string, not {value!r}.", "Quote it.")
    elif kind in ("integer", "long") and not (isinstance(value, int) and not isinstance(value, bool)):
        raise refused(f"{where} must be a whole number, not {value!r}.", "Write a whole number.")
    elif kind == "boolean" and not isinstance(value, bool):
        raise refused(f"{where} must be true or false, not {value!r}.", "Write true or false.")


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]
