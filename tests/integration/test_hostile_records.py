"""Hostile records through the function's `process_batch` and production wiring, with aiohttp sending to a
real endpoint on 127.0.0.1 (issue 8, items 4, 6 and 7): what the in-memory fakes cannot show is the HTTP
client refusing a header value, or Powertools writing a log line."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from dispatcher.outcomes import Outcome
from dispatcher.records import header_safe, parse_event
from tests.events import STREAM, event, kinesis_record, sequence_number, sqs_record
from tests.fakes import SECRET
from tests.integration.conftest import AwsResources, DispatcherFactory, FakeLambdaContext, FunctionStarter
from tests.integration.support import LoopbackEndpoint, recorded_logs

pytestmark = pytest.mark.integration

NESTED_1000_DEEP = b"[" * 1_000 + b"]" * 1_000  # about 2 KB: a RecursionError for Python's json module


def test_deeply_nested_json_neither_fails_the_batch_nor_stops_its_neighbours(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter
) -> None:
    # Given a Kinesis batch whose middle record is JSON nested 1,000 deep
    invoke = warm_function()
    batch = event(
        kinesis_record(0, {"id": "evt-0"}, "pk-0"),
        kinesis_record(1, NESTED_1000_DEEP, "pk-1"),
        kinesis_record(2, {"id": "evt-2"}, "pk-2"),
    )
    # When Lambda invokes the function with it
    response = invoke(batch, FakeLambdaContext())
    # Then every record reaches the endpoint, the nested one as its exact bytes under its position's id,
    # signed so that a Standard Webhooks receiver verifies it
    assert response == {"batchItemFailures": []}
    fallback_id = f"{STREAM}:{sequence_number(1)}"
    assert endpoint.hits() == {"evt-0": 1, fallback_id: 1, "evt-2": 1}
    (nested,) = endpoint.for_id(fallback_id)
    assert nested.body == NESTED_1000_DEEP
    assert nested.headers["content-type"] == "application/octet-stream"
    # (the reference package's verify() parses the body as JSON after checking it, so sign() is compared)
    signed_at = datetime.fromtimestamp(int(nested.headers["webhook-timestamp"]), tz=UTC)
    expected = Webhook(SECRET).sign(fallback_id, signed_at, nested.body.decode())
    assert expected in nested.headers["webhook-signature"].split()
    assert aws.parked_messages() == []


def test_header_hostile_source_fields_reach_the_endpoint_encoded(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter
) -> None:
    # Given an SQS FIFO batch whose queue name, message ids and deduplication ids carry CR/LF and non-ASCII,
    # and a message the endpoint refuses, with a message attribute holding a credential
    invoke = warm_function()
    queue = "jobs\r\nX-Injected 1ü.fifo"
    hostile = sqs_record("m\r\n1", {"amount": 1}, queue=queue, group="g\r\nü", position=1, dedup_id="d\r\nü")
    plain = sqs_record("m-2", {"amount": 2}, queue=queue, group="g-2", position=2, dedup_id="d-2")
    plain["messageAttributes"] = {"token": {"stringValue": "attribute-secret-value", "dataType": "String"}}
    endpoint.always(header_safe(f"{queue}:d-2"), 410)  # parked: its log line names its position
    # When Lambda invokes the function with it
    with recorded_logs("dispatcher.outcomes", "dispatcher.parked_message", "callback-dispatcher") as logged:
        response = invoke(event(hostile, plain), FakeLambdaContext())
    # Then the HTTP client sends every header (nothing is rejected), the hostile one encoded
    assert response == {"batchItemFailures": []}
    (received,) = endpoint.for_id(header_safe(f"{queue}:d\r\nü"))
    assert received.headers["dispatch-source"] == header_safe(queue)
    assert received.headers["dispatch-partition-key"] == header_safe("g\r\nü")
    assert json.loads(received.body) == {"amount": 1}
    # And the parked record's log line names the message attribute, never its value
    (parked,) = aws.parked_messages()
    assert parked["source"]["message_id"] == "m-2"
    (park_warning,) = [record for record in logged if record.getMessage().startswith("record parked")]
    assert park_warning.__dict__["source_position"]["message_attribute_names"] == ["token"]
    assert all("attribute-secret-value" not in repr(record.__dict__) for record in logged)


async def test_an_endpoint_query_string_never_reaches_a_reason_or_a_log(make_dispatcher: DispatcherFactory) -> None:
    # Given an endpoint URL carrying a token in its query string, served by something that answers garbage
    async def answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65_536)
        writer.write(b"not an HTTP status line\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dispatcher = make_dispatcher(endpoint=f"http://127.0.0.1:{port}/hook?token=query-secret", max_attempts=1)
    # When a record is dispatched to it
    try:
        with recorded_logs("dispatcher") as logged:  # every module of the function
            report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, {"id": "evt-0"}))), 30)
    finally:
        server.close()
    # Then the failure is reported with what went wrong, and neither its reason nor a log carries the token
    (result,) = report.results
    assert result.outcome is Outcome.FAILED
    assert "ClientResponseError" in result.reason
    assert "query-secret" not in result.reason
    assert all("query-secret" not in repr(record.__dict__) for record in logged)
