"""A deployed environment as the redrive target: function `<env>-<subscription>` invoked with Lambda's Invoke,
the parked-records queue `<env>-<subscription>-parked`, the on-failure bucket named by the event source mapping, and
the parked-payload bucket named in the function's environment.

AWS credentials, region and endpoint come from the standard environment (or `endpoint_url`); on a loopback endpoint
what the shell does not set is the local runtime's (local.aws.client_for_endpoint).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from dispatcher.config import PAYLOAD_BUCKET_ENV
from infra.naming import ResourceNames
from infra.registry.limits import Environment
from local.aws import client_for_endpoint
from local.workers import InvocationResult, add_emf_metrics
from redrive.errors import TargetNotFoundError
from redrive.target import RedriveTarget

PARKED_QUEUE_SUFFIX = "parked"  # infra/subscription_consumer.py names the queue <env>-<subscription>-parked
S3_ARN_PREFIX = "arn:aws:s3:::"
# A synchronous Invoke holds the connection for the whole invocation: read for longer than the function can run.
INVOKE_READ_MARGIN_SECONDS = 30
# The Invoke call itself is not retried on a read timeout: the invocation may have delivered, and a second one
# would only deliver again (harmless, receivers dedupe, but the redrive would count it twice).
INVOKE_MAX_ATTEMPTS = 1
FUNCTION_ERROR_DETAIL_CHARACTERS = 500


def aws_target(subscription: str, environment: Environment, endpoint_url: str | None = None) -> RedriveTarget:
    """Find the subscription's deployed resources; TargetNotFoundError names the first one missing."""
    names = ResourceNames(environment)
    function_name = names.name(subscription)
    lambda_client = client_for_endpoint("lambda", endpoint_url)
    sqs = client_for_endpoint("sqs", endpoint_url)
    s3 = client_for_endpoint("s3", endpoint_url)
    try:
        configuration = lambda_client.get_function_configuration(FunctionName=function_name)
        mappings = lambda_client.list_event_source_mappings(FunctionName=function_name)["EventSourceMappings"]
    except ClientError as error:
        raise TargetNotFoundError(f"function {function_name}: {error}") from None
    timeout = float(configuration["Timeout"])
    payload_bucket = configuration.get("Environment", {}).get("Variables", {}).get(PAYLOAD_BUCKET_ENV)
    if not payload_bucket:
        raise TargetNotFoundError(f"function {function_name}: its environment names no {PAYLOAD_BUCKET_ENV}")
    queue_name = names.name(subscription, PARKED_QUEUE_SUFFIX)
    try:
        queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    except ClientError as error:
        raise TargetNotFoundError(f"parked-records queue {queue_name}: {error}") from None
    invoker = client_for_endpoint(
        "lambda",
        endpoint_url,
        Config(
            read_timeout=int(timeout) + INVOKE_READ_MARGIN_SECONDS,
            retries={"mode": "standard", "total_max_attempts": INVOKE_MAX_ATTEMPTS},
        ),
    )

    async def invoke(event: dict[str, Any]) -> InvocationResult:
        return await asyncio.to_thread(invoke_synchronously, invoker, function_name, event)

    return RedriveTarget(
        subscription=subscription,
        function_name=function_name,
        invoke=invoke,
        function_timeout_seconds=timeout,
        sqs=sqs,
        parked_records_url=queue_url,
        s3=s3,
        on_failure_bucket=on_failure_bucket(mappings),
        payload_bucket=str(payload_bucket),
    )


def on_failure_bucket(mappings: list[dict[str, Any]]) -> str | None:
    """The S3 on-failure destination of the function's (stream) event source mapping, if any."""
    for mapping in mappings:
        destination = mapping.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination", "")
        if destination.startswith(S3_ARN_PREFIX):
            return str(destination.removeprefix(S3_ARN_PREFIX))
    return None


def invoke_synchronously(client: Any, function_name: str, event: dict[str, Any]) -> InvocationResult:
    """Lambda's RequestResponse Invoke as an InvocationResult; the EMF metrics come from the log tail (its
    last 4 KB, which holds a one-record invocation's metrics line)."""
    response = client.invoke(
        FunctionName=function_name,
        InvocationType="RequestResponse",
        LogType="Tail",
        Payload=json.dumps(event).encode(),
    )
    payload = response["Payload"].read()
    metrics: dict[str, float] = {}
    for line in base64.b64decode(response.get("LogResult", "")).decode("utf-8", errors="replace").splitlines():
        add_emf_metrics(line, metrics)
    request_id = str(response.get("ResponseMetadata", {}).get("RequestId", ""))
    function_error = response.get("FunctionError")
    if function_error:
        detail = payload.decode("utf-8", errors="replace")[:FUNCTION_ERROR_DETAIL_CHARACTERS]
        return InvocationResult(request_id, error=f"{function_error}: {detail}", error_type=function_error)
    return InvocationResult(request_id, response=json.loads(payload) if payload else None, metrics=metrics)
