"""Given a record the real dispatcher parked, when it is rebuilt, then the function's own parser reads it back at
the same source position with the same webhook-id and payload."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatcher.records import parse_event
from redrive import NotRedrivableError, ParkedRecord
from redrive.parked import StoredPayload
from tests.events import kinesis_record, sqs_record
from tests.redrive.conftest import ParkedSubscription

MESSAGE_ATTRIBUTES = {"tenant": {"stringValue": "t-1", "dataType": "String"}}
LARGEST_RECORD_BYTES = 1024 * 1024  # the largest record Kinesis and SQS accept (1 MiB)
# Every field of a parked message but its payload.
PARKED_FIELDS = {
    "subscription": "s",
    "webhook_id": "w",
    "item_identifier": "m-1",
    "source": {"type": "sqs", "name": "q", "arn": "arn:aws:sqs:eu-west-1:123456789012:q", "message_id": "m-1"},
    "produced_at": "2026-01-01T00:00:00.000Z",
}


def no_stored_payloads(stored: StoredPayload) -> bytes:
    raise AssertionError(f"no payload should be read from S3, but {stored} was")


ORIGINAL_RECORDS = {
    "kinesis, webhook-id from the position": kinesis_record(3, {"type": "order.created"}, "customer-7"),
    "kinesis, the payload's own id": kinesis_record(4, {"id": "evt-42", "type": "order.paid"}),
    "kinesis, binary payload": kinesis_record(5, b"\x00\xffnot json"),
    "sqs standard": sqs_record("m-1", {"type": "invoice.paid"}) | {"messageAttributes": MESSAGE_ATTRIBUTES},
    "sqs standard, text payload": sqs_record("m-2", b"plain text, not json"),
    "sqs fifo": sqs_record("m-3", {"type": "refund"}, queue="refunds.fifo", group="customer-9", position=17),
}


@pytest.mark.parametrize("original", ORIGINAL_RECORDS.values(), ids=ORIGINAL_RECORDS.keys())
async def test_a_parked_record_is_rebuilt_at_its_original_position(
    parked_subscription: ParkedSubscription, original: dict[str, Any]
) -> None:
    # Given the function parked the record after a 422
    await parked_subscription.park(original)
    (body,) = parked_subscription.parked_bodies()

    # When it is rebuilt from the parked message
    rebuilt_event = ParkedRecord.from_message(body, parked_subscription.read_stored).lambda_event()

    # Then the function parses the same record back: same webhook-id, payload and source position
    (expected,) = parse_event({"Records": [original]}).records
    (rebuilt,) = parse_event(rebuilt_event).records
    assert rebuilt.webhook_id == expected.webhook_id == json.loads(body)["webhook_id"]
    assert rebuilt.payload == expected.payload
    assert rebuilt.source_fields() == expected.source_fields()
    assert rebuilt.produced_at == expected.produced_at
    assert rebuilt.partition_key == expected.partition_key
    assert rebuilt.receive_count == 1  # a first delivery: never looked up as an SQS re-send


async def test_a_record_unreadable_at_the_source_is_not_redrivable(parked_subscription: ParkedSubscription) -> None:
    # Given a Kinesis record whose data was not base64, parked as such
    await parked_subscription.park(kinesis_record(1, None, raw_data="%%% not base64"))
    (body,) = parked_subscription.parked_bodies()

    # When / Then it cannot be rebuilt: delivering its raw field would not be the original record
    with pytest.raises(NotRedrivableError, match="not base64"):
        ParkedRecord.from_message(body, parked_subscription.read_stored).lambda_event()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps({"subscription": "s", "webhook_id": "w"}), "lacks a valid field"),
        (json.dumps(PARKED_FIELDS), "lacks a valid field: 'payload_base64'"),
        (json.dumps(PARKED_FIELDS | {"payload_s3": "s3://bucket/key"}), "lacks a valid field"),
        (json.dumps(PARKED_FIELDS | {"payload_s3": {"bucket": "b"}}), "lacks a valid field: 'key'"),
    ],
)
def test_a_malformed_message_is_not_redrivable(body: str, problem: str) -> None:
    with pytest.raises(NotRedrivableError, match=problem):
        ParkedRecord.from_message(body, no_stored_payloads)


async def test_a_record_whose_position_no_longer_gives_its_webhook_id_is_refused(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given a parked message whose webhook-id does not match its source position (edited by hand, say)
    await parked_subscription.park(sqs_record("m-9", {"type": "invoice.paid"}))
    (body,) = parked_subscription.parked_bodies()
    tampered = json.dumps(json.loads(body) | {"webhook_id": "someone-else"})

    # When / Then it is refused: the endpoint could not dedupe it against the original
    with pytest.raises(NotRedrivableError, match="someone-else"):
        ParkedRecord.from_message(tampered, parked_subscription.read_stored).lambda_event()


async def test_a_record_whose_payload_was_stored_in_s3_is_rebuilt_with_its_exact_bytes(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given the function parked the largest record a source accepts: its payload went to S3
    payload = b"\x00\xff" * (LARGEST_RECORD_BYTES // 2)
    original = kinesis_record(6, payload)
    await parked_subscription.park(original)
    (body,) = parked_subscription.parked_bodies()
    (key,) = parked_subscription.stored_payloads()

    # When it is rebuilt from the parked message
    record = ParkedRecord.from_message(body, parked_subscription.read_stored)

    # Then the payload is read from where the message points, and the function parses the same record back
    assert record.stored_payload == StoredPayload(parked_subscription.payload_bucket, key)
    (rebuilt,) = parse_event(record.lambda_event()).records
    (expected,) = parse_event({"Records": [original]}).records
    assert (rebuilt.payload, rebuilt.webhook_id) == (payload, expected.webhook_id)
