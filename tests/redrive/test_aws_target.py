"""The deployed target: the on-failure bucket from the event source mapping, the parked-payload bucket from the
function's environment (moto), and Lambda's Invoke answer read as an InvocationResult (function errors, the log
tail's EMF counts)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import boto3
import pytest

from dispatcher.config import PAYLOAD_BUCKET_ENV
from redrive import TargetNotFoundError
from redrive.aws_target import aws_target, invoke_synchronously, on_failure_bucket
from tests.redrive.conftest import SUBSCRIPTION

EMF_LINE = json.dumps(
    {
        "_aws": {"CloudWatchMetrics": [{"Namespace": "CallbackDispatcher", "Metrics": [{"Name": "Parked"}]}]},
        "Parked": [1.0],
    }
)


class RecordedLambda:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **arguments: Any) -> dict[str, Any]:
        self.calls.append(arguments)
        return self.answer


def test_the_on_failure_bucket_is_the_mappings_s3_destination() -> None:
    mappings: list[dict[str, Any]] = [
        {"DestinationConfig": {"OnFailure": {}}},
        {"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:s3:::prod-failed-batches-1a2b"}}},
    ]
    assert on_failure_bucket(mappings) == "prod-failed-batches-1a2b"
    assert on_failure_bucket([{"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:x"}}}]) is None


def test_a_synchronous_invoke_reads_the_response_and_the_metrics_of_its_log_tail() -> None:
    log_tail = base64.b64encode(f"START\n{EMF_LINE}\nEND\n".encode()).decode()
    client = RecordedLambda({"Payload": io.BytesIO(b'{"batchItemFailures": []}'), "LogResult": log_tail})

    result = invoke_synchronously(client, "prod-orders-to-ledger", {"Records": []})

    assert result.response == {"batchItemFailures": []}
    assert result.metrics == {"Parked": 1.0}
    assert client.calls[0]["InvocationType"] == "RequestResponse"
    assert client.calls[0]["LogType"] == "Tail"


def test_a_function_error_is_an_error_result() -> None:
    client = RecordedLambda({"Payload": io.BytesIO(b'{"errorMessage": "boom"}'), "FunctionError": "Unhandled"})

    result = invoke_synchronously(client, "prod-orders-to-ledger", {"Records": []})

    assert result.failed
    assert result.error == 'Unhandled: {"errorMessage": "boom"}'


def deploy_function(environment: dict[str, str]) -> None:
    """A subscription's function and parked-records queue as the stack names them, in moto."""
    role = boto3.client("iam").create_role(RoleName="dispatcher", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as package:
        package.writestr("handler.py", "def handler(event, context): pass\n")
    boto3.client("lambda").create_function(
        FunctionName=f"prod-{SUBSCRIPTION}",
        Runtime="python3.13",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": archive.getvalue()},
        Timeout=30,
        Environment={"Variables": environment},
    )
    boto3.client("sqs").create_queue(QueueName=f"prod-{SUBSCRIPTION}-parked")


def test_the_target_reads_its_payload_bucket_from_the_functions_environment(aws: None) -> None:
    # Given a deployed function whose environment names its parked-payload bucket
    deploy_function({PAYLOAD_BUCKET_ENV: "prod-parked-payloads"})

    # When the redrive finds its target
    target = aws_target(SUBSCRIPTION, "prod")

    # Then stored payloads are read from that bucket only
    assert target.payload_bucket == "prod-parked-payloads"
    assert target.function_timeout_seconds == 30


def test_a_function_without_a_payload_bucket_is_not_a_target(aws: None) -> None:
    deploy_function({})

    with pytest.raises(TargetNotFoundError, match=PAYLOAD_BUCKET_ENV):
        aws_target(SUBSCRIPTION, "prod")
