"""The deployed target's pieces that need no AWS: the on-failure bucket from the event source mapping, and
Lambda's Invoke answer read as an InvocationResult (function errors, the log tail's EMF counts)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from redrive.aws_target import invoke_synchronously, on_failure_bucket

EMF_LINE = json.dumps(
    {
        "_aws": {"CloudWatchMetrics": [{"Namespace": "CallbackDispatcher", "Metrics": [{"Name": "DeadLettered"}]}]},
        "DeadLettered": [1.0],
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
    assert result.metrics == {"DeadLettered": 1.0}
    assert client.calls[0]["InvocationType"] == "RequestResponse"
    assert client.calls[0]["LogType"] == "Tail"


def test_a_function_error_is_an_error_result() -> None:
    client = RecordedLambda({"Payload": io.BytesIO(b'{"errorMessage": "boom"}'), "FunctionError": "Unhandled"})

    result = invoke_synchronously(client, "prod-orders-to-ledger", {"Records": []})

    assert result.failed
    assert result.error == 'Unhandled: {"errorMessage": "boom"}'
