"""Lambda's Kinesis and SQS events, parsed into the records the dispatcher delivers.

One parser serves all three sources; the kind is detected from the records themselves.
Each record carries what the endpoint contract needs: its payload bytes, its stable webhook-id and
its position in the source (for ordering headers, failure reports, the dead-letter queue and dedupe).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import quote

T = TypeVar("T")

HEADER_SAFE_CHARACTERS = frozenset(chr(code) for code in range(0x21, 0x7F))


class UnsupportedEventError(ValueError):
    """The invocation event is not a Kinesis or SQS batch this function can deliver."""


class SourceKind(enum.Enum):
    KINESIS = "kinesis"
    SQS = "sqs"
    SQS_FIFO = "sqs-fifo"


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record of a batch, with everything delivery, reporting and parking need."""

    item_identifier: str  # what batchItemFailures names: Kinesis sequence number or SQS messageId
    kind: SourceKind
    source_name: str  # stream or queue name
    source_arn: str
    payload: bytes
    webhook_id: str
    is_json: bool
    produced_at: datetime
    partition_key: str | None = None  # Kinesis partition key or FIFO message group
    sequence: str | None = None  # Kinesis or FIFO sequence number (decimal string)
    shard_id: str | None = None
    receive_count: int = 1  # SQS ApproximateReceiveCount; Kinesis does not say
    unreadable_reason: str | None = None  # set when the payload could not be decoded: park, never crash
    extra_position: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sequence_number(self) -> int:
        """Kinesis and FIFO sequence numbers are up to 128-bit decimals: compare them as integers."""
        return int(self.sequence) if self.sequence is not None else 0

    def position(self) -> dict[str, Any]:
        """Where the record came from, as the dead-letter format's `source` object."""
        position: dict[str, Any] = {"type": self.kind.value, "name": self.source_name, "arn": self.source_arn}
        if self.kind is SourceKind.KINESIS:
            position |= {
                "shard_id": self.shard_id,
                "sequence_number": self.sequence,
                "partition_key": self.partition_key,
            }
        else:
            position["message_id"] = self.item_identifier
            if self.kind is SourceKind.SQS_FIFO:
                position |= {"message_group_id": self.partition_key, "sequence_number": self.sequence}
        return position | dict(self.extra_position)


@dataclass(frozen=True, slots=True)
class Batch:
    """The records of one invocation: all from one source (and for Kinesis one shard), in source order."""

    kind: SourceKind
    source_name: str
    records: tuple[SourceRecord, ...]

    @property
    def ordered_by_source(self) -> bool:
        """FIFO queues are delivered in order per message group whatever the subscription says."""
        return self.kind is SourceKind.SQS_FIFO


def parse_event(event: Mapping[str, Any]) -> Batch:
    """Parse a Lambda Kinesis or SQS event; raises UnsupportedEventError for anything else."""
    raw_records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(raw_records, list):
        raise UnsupportedEventError("event has no 'Records' list: not a Kinesis or SQS batch")
    if not raw_records:
        raise UnsupportedEventError("event has an empty 'Records' list")
    sources = {raw.get("eventSource") if isinstance(raw, Mapping) else None for raw in raw_records}
    if sources == {"aws:kinesis"}:
        records = tuple(_kinesis_record(raw) for raw in raw_records)
        kind = SourceKind.KINESIS
    elif sources == {"aws:sqs"}:
        records = tuple(_sqs_record(raw) for raw in raw_records)
        kind = records[0].kind
        if any(record.kind is not kind for record in records):
            raise UnsupportedEventError("event mixes FIFO and standard SQS records")
    else:
        raise UnsupportedEventError(
            f"unsupported eventSource {sorted(map(str, sources))}: expected 'aws:kinesis' or 'aws:sqs'"
        )
    if len({record.source_arn for record in records}) > 1:
        raise UnsupportedEventError("event mixes records of several sources")
    return Batch(kind=kind, source_name=records[0].source_name, records=records)


def _kinesis_record(raw: Mapping[str, Any]) -> SourceRecord:
    kinesis = _required(raw, "kinesis", dict)
    sequence = _required(kinesis, "sequenceNumber", str)
    data = kinesis.get("data")
    if not isinstance(data, str):  # an empty string is a valid, empty record
        raise UnsupportedEventError(f"record field 'data' is missing or not a str: {data!r}")
    partition_key = _required(kinesis, "partitionKey", str)
    arn = _required(raw, "eventSourceARN", str)
    stream = arn.rsplit("/", 1)[-1]
    shard_id = str(raw.get("eventID", "")).split(":", 1)[0] or "shardId-unknown"
    produced_at = datetime.fromtimestamp(float(kinesis.get("approximateArrivalTimestamp", 0)), tz=UTC)
    position_id = f"{stream}:{sequence}"
    try:
        payload = base64.b64decode(data, validate=True)
        unreadable_reason = None
    except (binascii.Error, ValueError) as error:
        # Keep the raw field so nothing is lost; the record is parked with this reason.
        payload = data.encode()
        unreadable_reason = f"Kinesis data is not valid base64 ({error}); payload_base64 holds the raw field"
    is_json, webhook_id = _inspect_payload(payload, position_id) if unreadable_reason is None else (False, position_id)
    return SourceRecord(
        item_identifier=sequence,
        kind=SourceKind.KINESIS,
        source_name=stream,
        source_arn=arn,
        payload=payload,
        webhook_id=webhook_id,
        is_json=is_json,
        produced_at=produced_at,
        partition_key=partition_key,
        sequence=sequence,
        shard_id=shard_id,
        unreadable_reason=unreadable_reason,
    )


def _sqs_record(raw: Mapping[str, Any]) -> SourceRecord:
    message_id = _required(raw, "messageId", str)
    body = _required(raw, "body", str)
    arn = _required(raw, "eventSourceARN", str)
    attributes = raw.get("attributes") or {}
    queue = arn.rsplit(":", 1)[-1]
    group = attributes.get("MessageGroupId")
    is_fifo = queue.endswith(".fifo") or group is not None
    sent_ms = int(attributes.get("SentTimestamp", "0"))
    payload = body.encode()
    if is_fifo:
        dedup_id = attributes.get("MessageDeduplicationId") or message_id
        position_id = f"{queue}:{dedup_id}"
        extra: dict[str, Any] = {"message_deduplication_id": dedup_id}
    else:
        position_id = message_id
        extra = {}
    if raw.get("messageAttributes"):
        extra["message_attributes"] = raw["messageAttributes"]
    is_json, webhook_id = _inspect_payload(payload, position_id)
    return SourceRecord(
        item_identifier=message_id,
        kind=SourceKind.SQS_FIFO if is_fifo else SourceKind.SQS,
        source_name=queue,
        source_arn=arn,
        payload=payload,
        webhook_id=webhook_id,
        is_json=is_json,
        produced_at=datetime.fromtimestamp(sent_ms / 1000, tz=UTC),
        partition_key=group,
        sequence=attributes.get("SequenceNumber") if is_fifo else None,
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        extra_position=extra,
    )


def _inspect_payload(payload: bytes, position_id: str) -> tuple[bool, str]:
    """(is the payload JSON, webhook-id): the payload's own string "id" wins over the source position."""
    try:
        document = json.loads(payload)
    except ValueError:  # includes UnicodeDecodeError
        return False, position_id
    if isinstance(document, dict):
        own_id = document.get("id")
        if isinstance(own_id, str) and own_id:
            return True, header_safe(own_id)
    return True, position_id


def _required(container: Mapping[str, Any], key: str, kind: type[T]) -> T:
    value = container.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not value):
        raise UnsupportedEventError(f"record field {key!r} is missing or not a {kind.__name__}: {value!r}")
    return cast(T, value)


def header_safe(value: str) -> str:
    """Header values must be visible ASCII: anything else (a Unicode partition key, CR/LF that would
    inject a header) is percent-encoded."""
    if value and all(character in HEADER_SAFE_CHARACTERS for character in value):
        return value
    return quote(value, safe="")
