"""The SQS parked records' claim check as a property: whatever the records' sizes (up to the 1 MiB a source accepts)
and fields, every one is parked, no message or batch exceeds what SQS accepts, and each payload comes back exact
from its message, inline or from S3. The AWS clients here enforce SQS's documented limits; the integration tests
run the same adapter against moto."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.adapters.s3 import S3PayloadStore, parked_payload_prefix
from dispatcher.adapters.sqs import SqsParkedRecords
from dispatcher.ports import ParkedMessage

LARGEST_RECORD_BYTES = 1024 * 1024  # the largest record Kinesis and SQS accept (1 MiB)
# What SQS accepts on every endpoint and queue (the default MaximumMessageSize), stated independently of the adapter.
SQS_MESSAGE_MAX_BYTES = 256 * 1024  # per message
SEND_BATCH_MAX_BYTES = 256 * 1024  # per SendMessageBatch, all entries together
SEND_BATCH_LIMIT = 10  # entries per SendMessageBatch
# Base64 makes 3 bytes 4: payloads around this size put the message right at SQS's limit.
INLINE_BOUNDARY_BYTES = SQS_MESSAGE_MAX_BYTES * 3 // 4
BUCKET = "parked-payloads"
SUBSCRIPTION = "orders-to-ledger"


@dataclass
class LimitedSqs:
    """SendMessageBatch as SQS answers it: a batch over its count or size limit is refused whole, an entry over
    the message size limit fails alone."""

    sent: list[str] = field(default_factory=list)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        bodies = [entry["MessageBody"] for entry in Entries]
        if len(Entries) > SEND_BATCH_LIMIT or sum(len(body.encode()) for body in bodies) > SEND_BATCH_MAX_BYTES:
            raise ValueError("AWS.SimpleQueueService.BatchRequestTooLong")
        failed = [entry for entry in Entries if len(entry["MessageBody"].encode()) > SQS_MESSAGE_MAX_BYTES]
        self.sent.extend(entry["MessageBody"] for entry in Entries if entry not in failed)
        return {
            "Failed": [{"Id": entry["Id"], "Code": "InvalidParameterValue", "Message": "too long"} for entry in failed]
        }


@dataclass
class InMemoryS3:
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:  # noqa: N803
        self.objects[(Bucket, Key)] = Body


def sized_payload(size: int, seed: int) -> bytes:
    pattern = bytes((seed + index * 7) % 256 for index in range(256))
    return (pattern * (size // len(pattern) + 1))[:size]


payload_sizes = st.one_of(
    st.integers(0, LARGEST_RECORD_BYTES),
    st.integers(INLINE_BOUNDARY_BYTES - 2048, INLINE_BOUNDARY_BYTES + 2048),
)
parked_messages = st.lists(
    st.builds(
        lambda size, seed, webhook_id, reason: ParkedMessage(
            {
                "subscription": SUBSCRIPTION,
                "webhook_id": webhook_id,
                "item_identifier": f"seq-{seed}",
                "reason": reason,
            },
            sized_payload(size, seed),
        ),
        payload_sizes,
        st.integers(0, 10**6),
        st.text(min_size=1, max_size=64),
        st.text(max_size=512),  # JSON escapes make these up to 6 bytes a character
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda parked: parked.fields["item_identifier"],
)


@given(parked_messages)
def test_every_record_is_parked_within_sqs_limits_with_its_exact_payload(batch: list[ParkedMessage]) -> None:
    # Given SQS and S3 clients that enforce SQS's limits
    sqs, s3 = LimitedSqs(), InMemoryS3()
    parked_records = SqsParkedRecords(
        "https://sqs.eu-west-1.amazonaws.com/123456789012/parked",
        S3PayloadStore(BUCKET, client_factory=lambda: s3),
        client_factory=lambda: sqs,
    )

    # When the messages are parked
    unparked = parked_records.park(batch)

    # Then none failed, and each message carries its payload exactly once: inline when that fits, else in S3
    assert unparked == {}
    messages = {message["item_identifier"]: message for message in map(json.loads, sqs.sent)}
    assert len(sqs.sent) == len(batch)
    for parked in batch:
        message = messages[parked.fields["item_identifier"]]
        assert message["webhook_id"] == parked.fields["webhook_id"]
        assert message["reason"] == parked.fields["reason"]
        if "payload_s3" in message:
            assert "payload_base64" not in message
            location = message["payload_s3"]
            assert location["bucket"] == BUCKET
            assert location["key"].startswith(parked_payload_prefix(SUBSCRIPTION))
            assert s3.objects[(BUCKET, location["key"])] == parked.payload
            # only because the message with the payload inline would not have fitted
            inline = {name: value for name, value in message.items() if name != "payload_s3"}
            inline["payload_base64"] = base64.b64encode(parked.payload).decode()
            assert len(json.dumps(inline, separators=(",", ":")).encode()) > SQS_MESSAGE_MAX_BYTES
        else:
            assert base64.b64decode(message["payload_base64"]) == parked.payload
