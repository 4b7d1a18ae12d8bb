"""What a receiving service gets over real HTTP: the payload bytes unchanged, Standard Webhooks headers
that verify with the reference `standardwebhooks` package, and the dispatch-* ordering headers, for
Kinesis, SQS standard and SQS FIFO events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatcher.posting import USER_AGENT
from dispatcher.records import parse_event
from tests.events import STREAM, event, fifo_sequence_number, kinesis_record, sequence_number, sqs_record
from tests.fakes import OLD_SECRET, SECRET
from tests.integration.conftest import AwsResources, DispatcherFactory
from tests.integration.support import LOOPBACK, LoopbackEndpoint, Received, Reply

pytestmark = pytest.mark.integration

NEVER_CONFIGURED = "whsec_" + base64.b64encode(b"n" * 32).decode()

# Bytes a re-serialisation would change: odd spacing, a trailing zero, a non-ASCII character.
JSON_WITH_ID = b'{"id": "evt-0001",  "amount": 1.50, "note": "caf\xc3\xa9"}'
JSON_WITHOUT_ID = b"[1, 2,  3.0]"
JSON_WITH_NUMERIC_ID = b'{"id": 42, "kind": "numeric ids do not count"}'
TEXT = b"plain text, not JSON: caf\xc3\xa9"
BINARY = bytes(range(256))  # not even UTF-8

SECRET_STRINGS = {
    "one secret": (SECRET,),
    "two secrets during a rotation": (SECRET, OLD_SECRET),
}


def assert_verifies(request: Received, secrets: tuple[str, ...]) -> None:
    """Each configured secret alone verifies the request with the reference package; another does not."""
    assert len(request.headers["webhook-signature"].split(" ")) == len(secrets)
    for secret in secrets:
        Webhook(secret).verify(request.body, request.headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(NEVER_CONFIGURED).verify(request.body, request.headers, json_parse=False)


def assert_signed_now(request: Received, started: float, finished: float) -> None:
    timestamp = int(request.headers["webhook-timestamp"])
    assert int(started) <= timestamp <= int(finished) + 1


@pytest.mark.parametrize("secrets", SECRET_STRINGS.values(), ids=SECRET_STRINGS.keys())
async def test_kinesis_records_arrive_unchanged_signed_and_with_their_stream_position(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory, secrets: tuple[str, ...]
) -> None:
    # Given a signing secret holding one or two whsec_ secrets, and a Kinesis batch of JSON and text payloads
    aws.set_secret(" ".join(secrets))
    dispatcher = make_dispatcher()
    payloads = [JSON_WITH_ID, JSON_WITHOUT_ID, TEXT, JSON_WITH_NUMERIC_ID]
    batch = event(*(kinesis_record(position, payload, "acct-7") for position, payload in enumerate(payloads)))

    # When the batch is dispatched
    started = time.time()
    report = await dispatcher.dispatch(parse_event(batch), 30)
    finished = time.time()

    # Then every record is delivered once, as a POST carrying its exact bytes
    assert report.response() == {"batchItemFailures": []}
    received = endpoint.received
    assert [request.body for request in received] == payloads
    expected = [
        ("evt-0001", "application/json"),
        (f"{STREAM}:{sequence_number(1)}", "application/json"),
        (f"{STREAM}:{sequence_number(2)}", "application/octet-stream"),
        (f"{STREAM}:{sequence_number(3)}", "application/json"),
    ]
    for position, (request, (webhook_id, content_type)) in enumerate(zip(received, expected, strict=True)):
        assert request.method == "POST"
        assert request.path == "/hook"
        assert request.headers["content-type"] == content_type
        assert request.headers["user-agent"] == USER_AGENT  # the dispatcher's own, never the HTTP library's
        assert request.headers["webhook-id"] == webhook_id
        assert request.headers["idempotency-key"] == webhook_id
        assert request.headers["dispatch-source"] == STREAM
        assert request.headers["dispatch-partition-key"] == "acct-7"
        assert request.headers["dispatch-sequence"] == sequence_number(position)
        assert request.headers["dispatch-produced-at"] == f"2023-11-14T22:13:{20 + position}.500Z"
        assert request.headers["dispatch-attempt"] == "1"
        assert_signed_now(request, started, finished)
        assert_verifies(request, secrets)


async def test_binary_kinesis_payload_arrives_byte_for_byte_and_signed(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a Kinesis record whose data is not UTF-8 at all
    dispatcher = make_dispatcher()

    # When it is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, BINARY))), 30)

    # Then the endpoint gets the same bytes as octet-stream, signed over exactly those bytes
    # (the reference package only verifies text bodies, so the HMAC is checked by hand)
    assert report.response() == {"batchItemFailures": []}
    (request,) = endpoint.received
    assert request.body == BINARY
    assert request.headers["content-type"] == "application/octet-stream"
    signed = f"{request.webhook_id}.{request.headers['webhook-timestamp']}.".encode() + BINARY
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert request.headers["webhook-signature"] == f"v1,{expected}"


@pytest.mark.parametrize("secrets", SECRET_STRINGS.values(), ids=SECRET_STRINGS.keys())
async def test_sqs_standard_messages_arrive_signed_without_ordering_headers(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory, secrets: tuple[str, ...]
) -> None:
    # Given a standard-queue batch: one payload with its own id, one without, one not JSON
    aws.set_secret("\n".join(secrets))  # any whitespace separates the secrets
    dispatcher = make_dispatcher(ordering="none")
    batch = event(
        sqs_record("9d6c1f1e-0001", JSON_WITH_ID),
        sqs_record("9d6c1f1e-0002", JSON_WITHOUT_ID),
        sqs_record("9d6c1f1e-0003", TEXT),
    )

    # When it is dispatched
    started = time.time()
    report = await dispatcher.dispatch(parse_event(batch), 30)
    finished = time.time()

    # Then each message arrives once with the queue as source, identified by its own id or messageId
    assert report.response() == {"batchItemFailures": []}
    by_id = {request.webhook_id: request for request in endpoint.received}
    assert sorted(by_id) == ["9d6c1f1e-0002", "9d6c1f1e-0003", "evt-0001"]
    assert len(endpoint.received) == 3
    for webhook_id, payload, content_type in [
        ("evt-0001", JSON_WITH_ID, "application/json"),
        ("9d6c1f1e-0002", JSON_WITHOUT_ID, "application/json"),
        ("9d6c1f1e-0003", TEXT, "application/octet-stream"),
    ]:
        request = by_id[webhook_id]
        assert request.body == payload
        assert request.headers["content-type"] == content_type
        assert request.headers["idempotency-key"] == webhook_id
        assert request.headers["dispatch-source"] == "billing-callbacks"
        assert request.headers["dispatch-produced-at"] == "2023-11-14T22:13:20.123Z"
        assert request.headers["dispatch-attempt"] == "1"
        assert "dispatch-partition-key" not in request.headers
        assert "dispatch-sequence" not in request.headers
        assert_signed_now(request, started, finished)
        assert_verifies(request, secrets)


@pytest.mark.parametrize("secrets", SECRET_STRINGS.values(), ids=SECRET_STRINGS.keys())
async def test_sqs_fifo_messages_arrive_signed_with_group_and_sequence(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory, secrets: tuple[str, ...]
) -> None:
    # Given a FIFO batch of one message group
    aws.set_secret(" ".join(secrets))
    dispatcher = make_dispatcher()
    queue = "billing-callbacks.fifo"
    batch = event(
        sqs_record("m-1", JSON_WITHOUT_ID, queue=queue, group="acct-7", position=1, dedup_id="order-1-paid"),
        sqs_record("m-2", JSON_WITH_ID, queue=queue, group="acct-7", position=2),
        sqs_record("m-3", TEXT, queue=queue, group="acct-7", position=3, dedup_id="order-1-shipped"),
    )

    # When it is dispatched
    started = time.time()
    report = await dispatcher.dispatch(parse_event(batch), 30)
    finished = time.time()

    # Then the messages arrive in order, identified by queue and deduplication id unless they carry an id
    assert report.response() == {"batchItemFailures": []}
    received = endpoint.received
    assert [request.body for request in received] == [JSON_WITHOUT_ID, JSON_WITH_ID, TEXT]
    assert [request.webhook_id for request in received] == [
        f"{queue}:order-1-paid",
        "evt-0001",
        f"{queue}:order-1-shipped",
    ]
    for position, request in enumerate(received, start=1):
        assert request.headers["idempotency-key"] == request.webhook_id
        assert request.headers["content-type"] == ("application/octet-stream" if position == 3 else "application/json")
        assert request.headers["dispatch-source"] == queue
        assert request.headers["dispatch-partition-key"] == "acct-7"
        assert request.headers["dispatch-sequence"] == fifo_sequence_number(position)
        assert request.headers["dispatch-produced-at"] == "2023-11-14T22:13:20.123Z"
        assert request.headers["dispatch-attempt"] == "1"
        assert_signed_now(request, started, finished)
        assert_verifies(request, secrets)


async def test_records_sharing_a_webhook_id_are_posted_once(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a Kinesis batch where the producer wrote the same event (same "id") twice
    dispatcher = make_dispatcher()
    batch = event(kinesis_record(0, JSON_WITH_ID), kinesis_record(1, JSON_WITH_ID), kinesis_record(2, TEXT))

    # When it is dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then the event is POSTed once, and nothing is reported
    assert report.response() == {"batchItemFailures": []}
    assert endpoint.hits() == {"evt-0001": 1, f"{STREAM}:{sequence_number(2)}": 1}
    assert report.stats.duplicates_skipped == 1


async def test_unsafe_ids_and_keys_cannot_inject_headers(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a payload whose id carries CR/LF and a partition key that is not ASCII
    body = b'{"id": "evt-1\\r\\nX-Injected: yes"}'
    dispatcher = make_dispatcher()

    # When it is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, body, "cl\u00e9 \u00e0 1"))), 30)

    # Then the values arrive percent-encoded, no header is injected, and the signature still verifies
    assert report.response() == {"batchItemFailures": []}
    (request,) = endpoint.received
    assert "x-injected" not in request.headers
    assert request.headers["webhook-id"] == "evt-1%0D%0AX-Injected%3A%20yes"
    assert request.headers["idempotency-key"] == request.headers["webhook-id"]
    assert request.headers["dispatch-partition-key"] == "cl%C3%A9%20%C3%A0%201"
    assert request.body == body
    Webhook(SECRET).verify(request.body, request.headers)


async def test_a_cookie_the_endpoint_sets_never_reaches_another_delivery(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an endpoint, reached by a host name (a cookie jar keeps no cookies of an IP address), that answers
    # the first record with a session cookie
    dispatcher = make_dispatcher(endpoint=endpoint.url().replace(LOOPBACK, "localhost"))
    first = f"{STREAM}:{sequence_number(0)}"
    endpoint.script(first, Reply(200, {"Set-Cookie": "session=stolen-from-a-receiver; Path=/"}))

    # When that record and, in a later invocation, another one are dispatched on the same warm connection pool
    await dispatcher.dispatch(parse_event(event(kinesis_record(0, TEXT))), 30)
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(1, TEXT))), 30)

    # Then the later delivery carries no cookie: deliveries share no state through the endpoint
    assert report.response() == {"batchItemFailures": []}
    assert [request.webhook_id for request in endpoint.received] == [first, f"{STREAM}:{sequence_number(1)}"]
    assert all("cookie" not in request.headers for request in endpoint.received)
