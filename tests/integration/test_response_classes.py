"""How each class of response from a real endpoint on 127.0.0.1 is treated: delivered, parked in the real
SQS parked-records queue (moto; a payload too large for the message in the real payload bucket), or retried and then
reported as a batch item failure."""

from __future__ import annotations

import base64
import email.utils
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from dispatcher.adapters.sqs import SQS_MESSAGE_MAX_BYTES
from dispatcher.outcomes import Outcome
from dispatcher.records import parse_event
from tests.events import SHARD, STREAM, event, kinesis_record, sequence_number, sqs_record
from tests.fakes import SECRET
from tests.integration.conftest import AwsResources, DispatcherFactory, FakeLambdaContext, FunctionStarter
from tests.integration.support import LoopbackEndpoint, Reply, recorded_logs

pytestmark = pytest.mark.integration

PAYLOAD = b'{"id": "evt-42", "amount": 10.00}'
WEBHOOK_ID = "evt-42"
LARGEST_RECORD_BYTES = 1024 * 1024  # the largest record Kinesis and SQS accept (1 MiB)
LARGE_WEBHOOK_ID = "evt-large"


def json_payload(webhook_id: str, size: int) -> bytes:
    """A JSON record of exactly `size` bytes carrying `webhook_id`."""
    head, tail = b'{"id": "' + webhook_id.encode() + b'", "blob": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def assert_parked_at_about_now(document: dict[str, Any], started: float, finished: float) -> None:
    parked_at = datetime.fromisoformat(document["parked_at"])
    assert parked_at.tzinfo is not None
    assert started - 1 <= parked_at.astimezone(UTC).timestamp() <= finished + 1


@pytest.mark.parametrize("status", [200, 204])
async def test_2xx_is_delivered_once(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory, status: int
) -> None:
    # Given an endpoint answering with a 2xx
    endpoint.default = Reply(status)
    dispatcher = make_dispatcher()

    # When a record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then it was POSTed once and is neither reported nor parked
    assert report.response() == {"batchItemFailures": []}
    assert endpoint.hits() == {WEBHOOK_ID: 1}
    assert report.stats.delivered == 1
    assert aws.parked_messages() == []


@pytest.mark.parametrize("status", [302, 308])
async def test_redirect_is_not_followed_and_the_record_is_parked(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory, status: int
) -> None:
    # Given an endpoint redirecting to another path of the same server
    endpoint.default = Reply(status, {"Location": endpoint.url("/redirect-target")})
    dispatcher = make_dispatcher()

    # When a record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then the redirect target received nothing, the record was tried once and parked, not reported
    assert endpoint.to("/redirect-target") == []
    assert len(endpoint.to("/hook")) == 1
    assert report.response() == {"batchItemFailures": []}
    (parked,) = aws.parked_messages()
    assert parked["webhook_id"] == WEBHOOK_ID
    assert parked["last_status"] == status
    assert parked["attempts"] == 1
    assert str(status) in parked["reason"]


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_4xx_is_parked_in_the_parked_records_queue_with_its_payload_and_not_reported(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory, status: int
) -> None:
    # Given an endpoint that will never take one record, and a delivered record after it on the same key
    endpoint.always(WEBHOOK_ID, status)
    dispatcher = make_dispatcher()
    batch = event(kinesis_record(0, PAYLOAD, "acct-7"), kinesis_record(1, b'{"id": "evt-43"}', "acct-7"))

    # When the batch is dispatched
    started = time.time()
    report = await dispatcher.dispatch(parse_event(batch), 30)
    finished = time.time()

    # Then the record was tried once, nothing is reported, the next record of its key was delivered
    assert report.response() == {"batchItemFailures": []}
    assert endpoint.hits() == {WEBHOOK_ID: 1, "evt-43": 1}
    assert report.stats.parked == 1
    # and the parked-records queue holds one message in the documented format
    (parked,) = aws.parked_messages()
    assert parked["subscription"] == "it-orders"
    assert parked["webhook_id"] == WEBHOOK_ID
    assert base64.b64decode(parked["payload_base64"]) == PAYLOAD
    assert parked["source"] == {
        "type": "kinesis",
        "name": STREAM,
        "arn": batch["Records"][0]["eventSourceARN"],
        "shard_id": SHARD,
        "sequence_number": sequence_number(0),
        "partition_key": "acct-7",
    }
    assert str(status) in parked["reason"]
    assert parked["last_status"] == status
    assert parked["attempts"] == 1
    assert_parked_at_about_now(parked, started, finished)


async def test_410_of_an_sqs_message_is_parked_with_the_message_position(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a standard-queue message the endpoint answers 410 Gone for
    endpoint.default = Reply(410)
    dispatcher = make_dispatcher()
    body = b"not json \x00 but kept"

    # When it is dispatched
    report = await dispatcher.dispatch(parse_event(event(sqs_record("msg-1", body))), 30)

    # Then it is parked (not reported) with its payload and messageId
    assert report.response() == {"batchItemFailures": []}
    (parked,) = aws.parked_messages()
    assert base64.b64decode(parked["payload_base64"]) == body
    assert parked["webhook_id"] == "msg-1"
    assert parked["source"]["type"] == "sqs"
    assert parked["source"]["name"] == "billing-callbacks"
    assert parked["source"]["message_id"] == "msg-1"
    assert parked["last_status"] == 410
    assert "Gone" in parked["reason"]


async def test_record_whose_data_is_not_base64_is_parked_and_the_batch_goes_on(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a Kinesis batch with one record whose data field is not valid base64
    dispatcher = make_dispatcher()
    batch = event(kinesis_record(0, None, raw_data="%%% not base64 %%%"), kinesis_record(1, PAYLOAD))

    # When it is dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then the unreadable record is parked with the raw field and a reason; the other is delivered
    assert report.response() == {"batchItemFailures": []}
    assert endpoint.hits() == {WEBHOOK_ID: 1}
    (parked,) = aws.parked_messages()
    assert base64.b64decode(parked["payload_base64"]) == b"%%% not base64 %%%"
    assert "base64" in parked["reason"]
    assert parked["last_status"] is None
    assert parked["source"]["sequence_number"] == sequence_number(0)


@pytest.mark.parametrize(("first", "second"), [(500, 503), (502, 504)])
async def test_5xx_is_retried_with_the_attempt_counted_until_delivered(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory, first: int, second: int
) -> None:
    # Given an endpoint failing twice before it takes the record
    endpoint.script(WEBHOOK_ID, first, second, 200)
    dispatcher = make_dispatcher(max_attempts=3)

    # When the record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then it is delivered on the third attempt, each attempt numbered, signed afresh and verifiable
    assert report.response() == {"batchItemFailures": []}
    attempts = endpoint.for_id(WEBHOOK_ID)
    assert [request.headers["dispatch-attempt"] for request in attempts] == ["1", "2", "3"]
    assert {request.headers["idempotency-key"] for request in attempts} == {WEBHOOK_ID}
    for request in attempts:
        assert request.body == PAYLOAD
        Webhook(SECRET).verify(request.body, request.headers)
    assert report.stats.retried == 2
    assert aws.parked_messages() == []


async def test_5xx_on_every_attempt_is_reported_and_not_parked(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an endpoint answering 500 every time
    endpoint.always(WEBHOOK_ID, 500)
    dispatcher = make_dispatcher(max_attempts=2)
    batch = event(kinesis_record(0, PAYLOAD))

    # When the record is dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then it was tried max_attempts times and is reported for Lambda to retry, not parked
    assert report.response() == {"batchItemFailures": [{"itemIdentifier": sequence_number(0)}]}
    assert endpoint.hits() == {WEBHOOK_ID: 2}
    assert aws.parked_messages() == []


async def test_429_retry_after_seconds_is_honoured(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an endpoint that throttles the first request with Retry-After: 1
    endpoint.script(WEBHOOK_ID, Reply(429, {"Retry-After": "1"}), 200)
    dispatcher = make_dispatcher(max_attempts=2)

    # When the record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then it is delivered by the second attempt, which came no earlier than a second after the 429
    # (a lower bound on the order of events; the backoff alone would have waited at most 0.2 s)
    assert report.response() == {"batchItemFailures": []}
    first, second = endpoint.for_id(WEBHOOK_ID)
    assert first.responded_at is not None
    assert second.received_at - first.responded_at >= 0.95
    assert second.headers["dispatch-attempt"] == "2"
    # and the retry was signed afresh with its own, later timestamp
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    Webhook(SECRET).verify(second.body, second.headers)


async def test_429_retry_after_http_date_is_honoured(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an endpoint that throttles the first request until a date two whole seconds ahead
    not_before = int(time.time()) + 2
    retry_after = email.utils.formatdate(not_before, usegmt=True)
    endpoint.script(WEBHOOK_ID, Reply(429, {"Retry-After": retry_after}), 200)
    dispatcher = make_dispatcher(max_attempts=2)

    # When the record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then the second attempt was made (and signed) no earlier than that date
    assert report.response() == {"batchItemFailures": []}
    first, second = endpoint.for_id(WEBHOOK_ID)
    assert int(first.headers["webhook-timestamp"]) < not_before <= int(second.headers["webhook-timestamp"])


async def test_timeout_is_retried_then_reported(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an endpoint that answers only after 3 s, and a 0.5 s request timeout
    endpoint.default = Reply(200, delay_seconds=3.0)
    dispatcher = make_dispatcher(request_timeout_seconds=0.5, max_attempts=2)
    batch = event(kinesis_record(0, PAYLOAD))

    # When the record is dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then both attempts reached the endpoint, neither was answered in time, and the record is reported
    assert report.response() == {"batchItemFailures": [{"itemIdentifier": sequence_number(0)}]}
    assert [request.headers["dispatch-attempt"] for request in endpoint.for_id(WEBHOOK_ID)] == ["1", "2"]
    (result,) = report.results
    assert result.outcome is Outcome.FAILED
    assert "timed out" in result.reason
    assert aws.parked_messages() == []


async def test_connection_refused_is_retried_then_reported(
    aws: AwsResources, make_dispatcher: DispatcherFactory, refusing_port: int
) -> None:
    # Given an endpoint on a closed port of 127.0.0.1
    dispatcher = make_dispatcher(endpoint=f"http://127.0.0.1:{refusing_port}/hook", max_attempts=2)
    batch = event(kinesis_record(0, PAYLOAD), kinesis_record(1, b"second", "pk-2"))

    # When a batch is dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then every record is reported after its attempts, none parked
    assert report.response() == {
        "batchItemFailures": [{"itemIdentifier": sequence_number(0)}, {"itemIdentifier": sequence_number(1)}]
    }
    assert report.stats.status_classes["network"] == 4
    assert all("no response" in result.reason for result in report.results)
    assert aws.parked_messages() == []


async def test_record_that_cannot_be_parked_is_reported_never_dropped(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a parked-records queue that does not exist, and an endpoint answering 404
    endpoint.default = Reply(404)
    missing_queue = aws.parked_queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    dispatcher = make_dispatcher(parked_queue_url=missing_queue)
    batch = event(kinesis_record(0, PAYLOAD))

    # When the record is dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then it is reported for Lambda to retry, since it could not be parked
    assert report.response() == {"batchItemFailures": [{"itemIdentifier": sequence_number(0)}]}
    (result,) = report.results
    assert result.outcome is Outcome.FAILED
    assert "could not park" in result.reason
    assert aws.parked_messages() == []


async def test_fifo_parked_records_queue_receives_parked_records(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a FIFO parked-records queue and an endpoint answering 410
    name = aws.parked_queue_url.rsplit("/", 1)[1] + ".fifo"
    fifo_parked_queue = aws.sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    endpoint.default = Reply(410)
    dispatcher = make_dispatcher(parked_queue_url=fifo_parked_queue)

    # When two records are dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD), kinesis_record(1, b"two"))), 30)

    # Then both are parked there and not reported
    assert report.response() == {"batchItemFailures": []}
    messages = aws.sqs.receive_message(QueueUrl=fifo_parked_queue, MaxNumberOfMessages=10)["Messages"]
    parked = sorted(base64.b64decode(json.loads(message["Body"])["payload_base64"]) for message in messages)
    assert parked == sorted([PAYLOAD, b"two"])


def test_a_1_mib_record_refused_with_413_is_parked_with_its_payload_in_s3(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter
) -> None:
    # Given the function, and an endpoint answering 413 Content Too Large to the largest record a source accepts
    payload = json_payload(LARGE_WEBHOOK_ID, LARGEST_RECORD_BYTES)
    endpoint.always(LARGE_WEBHOOK_ID, 413)
    invoke = warm_function()

    # When the handler gets it
    response = invoke(event(kinesis_record(0, payload, "acct-7")), FakeLambdaContext())

    # Then the endpoint received the exact bytes once, and the record is parked, not reported
    assert [request.body for request in endpoint.for_id(LARGE_WEBHOOK_ID)] == [payload]
    assert response == {"batchItemFailures": []}
    # and its parked message, which SQS accepted, points at an object holding exactly those bytes
    stored = aws.stored_payloads()
    messages = aws.sqs.receive_message(QueueUrl=aws.parked_queue_url, MaxNumberOfMessages=10)["Messages"]
    (message,) = messages
    assert len(message["Body"].encode()) <= SQS_MESSAGE_MAX_BYTES
    parked = json.loads(message["Body"])
    assert "payload_base64" not in parked
    assert parked["payload_s3"]["bucket"] == aws.payload_bucket
    assert parked["payload_s3"]["key"].startswith("parked/it-orders/")
    assert stored == {parked["payload_s3"]["key"]: payload}
    # with every other field of the documented format
    assert parked["webhook_id"] == LARGE_WEBHOOK_ID
    assert parked["item_identifier"] == sequence_number(0)
    assert parked["source"]["partition_key"] == "acct-7"
    assert parked["content_type"] == "application/json"
    assert (parked["last_status"], parked["attempts"]) == (413, 1)
    assert "413" in parked["reason"]


@pytest.mark.parametrize(
    ("payload_bytes", "stored_aside"),
    [
        (190_000, False),  # base64 and envelope just under SQS's 256 KiB: inline
        (200_000, True),  # just over: claim check
    ],
)
async def test_the_payload_is_inline_whenever_the_message_fits_and_in_s3_only_otherwise(
    aws: AwsResources,
    endpoint: LoopbackEndpoint,
    make_dispatcher: DispatcherFactory,
    payload_bytes: int,
    stored_aside: bool,
) -> None:
    # Given a record of this size the endpoint refuses
    payload = json_payload(LARGE_WEBHOOK_ID, payload_bytes)
    endpoint.default = Reply(422)
    dispatcher = make_dispatcher()

    # When it is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, payload))), 30)

    # Then it is parked either inline or in S3, never both, and the bytes come back exact either way
    assert report.response() == {"batchItemFailures": []}
    (parked,) = aws.parked_messages()
    stored = aws.stored_payloads()
    if stored_aside:
        assert "payload_base64" not in parked
        assert stored == {parked["payload_s3"]["key"]: payload}
    else:
        assert "payload_s3" not in parked
        assert stored == {}
        assert base64.b64decode(parked["payload_base64"]) == payload


async def test_parking_the_same_large_record_again_rewrites_its_one_object(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a large record refused by the endpoint, parked by an invocation whose report Lambda never got
    payload = json_payload(LARGE_WEBHOOK_ID, LARGEST_RECORD_BYTES)
    endpoint.default = Reply(413)
    batch = event(kinesis_record(0, payload))
    await make_dispatcher().dispatch(parse_event(batch), 30)

    # When Lambda sends the batch again to a fresh environment, which parks it again
    await make_dispatcher().dispatch(parse_event(batch), 30)

    # Then both parked messages point at the same single object
    keys = {parked["payload_s3"]["key"] for parked in aws.parked_messages()}
    assert len(keys) == 1
    assert aws.stored_payloads() == {keys.pop(): payload}


async def test_a_payload_that_cannot_be_stored_is_reported_and_logged_with_the_cause(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a payload bucket that does not exist, and an endpoint refusing a large record and a small one
    payload = json_payload(LARGE_WEBHOOK_ID, LARGEST_RECORD_BYTES)
    endpoint.default = Reply(413)
    dispatcher = make_dispatcher(payload_bucket=f"{aws.payload_bucket}-missing")

    # When both are dispatched
    with recorded_logs("dispatcher") as logs:
        report = await dispatcher.dispatch(
            parse_event(event(kinesis_record(0, payload), kinesis_record(1, PAYLOAD))), 30
        )

    # Then the large one is reported for Lambda to retry, never dropped, and its message was never sent
    assert report.response() == {"batchItemFailures": [{"itemIdentifier": sequence_number(0)}]}
    large, small = report.results
    assert large.outcome is Outcome.FAILED
    assert "could not park" in large.reason
    assert "NoSuchBucket" in large.reason
    # while the small one, which needs no bucket, is parked inline
    assert small.outcome is Outcome.PARKED
    (parked,) = aws.parked_messages()
    assert parked["webhook_id"] == WEBHOOK_ID
    # and the log names the record and the cause, without the payload's bytes
    (failure,) = [record for record in logs if record.getMessage().startswith("record could not be parked")]
    assert failure.webhook_id == LARGE_WEBHOOK_ID  # type: ignore[attr-defined]
    assert "NoSuchBucket" in failure.cause  # type: ignore[attr-defined]
    assert all("xxxxxxxx" not in str(record.__dict__) for record in logs)
