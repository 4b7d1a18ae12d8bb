"""Lambda's Kinesis and SQS events, parsed into the records the dispatcher delivers.

One parser serves all three sources; the kind is detected from the records themselves.
Each record carries what the endpoint contract needs: its payload bytes, its stable webhook-id and
its position in the source (for ordering headers, failure reports, parked messages and delivered ids).

A record never fails its batch: whatever is wrong with one record's contents (data that is not base64,
a body that is not UTF-8, JSON too deep or with absurd numbers, a malformed sequence number or
timestamp, characters no header may carry) ends with that record delivered as bytes or parked with
the reason. Only an event without the shape Lambda gives every Kinesis or SQS batch (the fields that
name a record to Lambda: its source, its sequence number or message id) raises UnsupportedEventError.
The readers of the other fields, which never fail a record, are `record_fields`.
"""

from __future__ import annotations

import binascii
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import quote

import pydantic_core

from dispatcher.record_fields import (
    ascii_decimal,
    epoch_time,
    kind_of,
    redrive_time,
    sequence_ordinal,
    text_attribute,
    utf8,
)

# Visible ASCII (0x21-0x7E) but "%" (0x25): a value made only of these is its own header value. "%" is left
# out so that percent-encoding stays injective ("a b" -> "a%20b", "a%20b" -> "a%2520b"). One compiled match
# per value: header_safe runs four times per record, and a per-character loop was 2% of an invocation.
HEADER_SAFE_VALUE = re.compile(r"[\x21-\x24\x26-\x7e]+")
# An unreadable ApproximateReceiveCount might be a re-send: counted as a second receive, the message is looked
# up among the delivered ids rather than risk a second POST.
UNREADABLE_RECEIVE_COUNT = 2
# The record field the redrive engine adds beside `eventSource` (the RFC 3339 time of the redrive). Lambda never
# sends it and producers cannot set it: they write only Kinesis data/partitionKey and SQS bodies and attributes.
REDRIVE_FIELD = "dispatchRedrive"


class UnsupportedEventError(ValueError):
    """The invocation event is not a Kinesis or SQS batch this function can deliver."""


class SourceKind(enum.Enum):
    KINESIS = "kinesis"
    SQS = "sqs"
    SQS_FIFO = "sqs-fifo"


@dataclass(slots=True)  # not frozen=True: its __init__ (object.__setattr__ per field) took 3 us a record
class SourceRecord:
    """One record of a batch, with everything delivery, reporting and parking need. Immutable by contract:
    no code assigns to a record's fields once parsed (dataclasses.replace makes a changed copy)."""

    item_identifier: str  # what batchItemFailures names: Kinesis sequence number or SQS messageId
    kind: SourceKind
    source_name: str  # stream or queue name
    source_arn: str
    payload: bytes
    webhook_id: str  # always a valid header value
    is_json: bool
    produced_at: datetime
    partition_key: str | None = None  # Kinesis partition key or FIFO message group
    sequence_number: str | None = None  # Kinesis or FIFO sequence number (decimal string, as the source wrote it)
    ordinal: int | None = None  # `sequence_number` as an integer, when it is one: compare these, never strings
    shard_id: str | None = None
    receive_count: int = 1  # SQS ApproximateReceiveCount; Kinesis does not say
    redriven_at: datetime | None = None  # when the redrive engine re-sent it (REDRIVE_FIELD); None first time
    unreadable_reason: str | None = None  # set when the record cannot be delivered as it is: park, never crash
    extra_source_fields: Mapping[str, Any] = field(default_factory=dict)  # SQS extras of `source_fields()`

    @property
    def content_type(self) -> str:
        """What the POST and the parked message say the payload is."""
        return "application/json" if self.is_json else "application/octet-stream"

    def source_fields(self) -> dict[str, Any]:
        """Where the record came from, as the parked message's `source` object."""
        fields: dict[str, Any] = {"type": self.kind.value, "name": self.source_name, "arn": self.source_arn}
        if self.kind is SourceKind.KINESIS:
            fields |= {
                "shard_id": self.shard_id,
                "sequence_number": self.sequence_number,
                "partition_key": self.partition_key,
            }
        else:
            fields["message_id"] = self.item_identifier
            if self.kind is SourceKind.SQS_FIFO:
                fields |= {"message_group_id": self.partition_key, "sequence_number": self.sequence_number}
        return fields | dict(self.extra_source_fields)

    def source_fields_for_logs(self) -> dict[str, Any]:
        """`source_fields()` without message attribute values, which may carry producers' secrets: names only."""
        fields = self.source_fields()
        attributes = fields.pop("message_attributes", None)
        if isinstance(attributes, Mapping):
            fields["message_attribute_names"] = sorted(map(str, attributes))
        return fields


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
    # Lambda's event is decoded JSON, so its objects are dicts: checking for dict, not the Mapping ABC (whose
    # isinstance took a tenth of parsing a record).
    sources = {raw.get("eventSource") if isinstance(raw, dict) else None for raw in raw_records}
    if sources == {"aws:kinesis"}:
        records = tuple(_kinesis_record(raw) for raw in raw_records)
        kind = SourceKind.KINESIS
    elif sources == {"aws:sqs"}:
        records = tuple(_sqs_record(raw) for raw in raw_records)
        kind = records[0].kind
    else:
        raise UnsupportedEventError(
            f"unsupported eventSource {sorted(map(str, sources))}: expected 'aws:kinesis' or 'aws:sqs'"
        )
    if len({record.source_arn for record in records}) > 1:
        raise UnsupportedEventError("event mixes records of several sources (eventSourceARN differs)")
    return Batch(kind=kind, source_name=records[0].source_name, records=records)


def _kinesis_record(raw: Mapping[str, Any]) -> SourceRecord:
    kinesis = raw.get("kinesis")
    if not isinstance(kinesis, dict):
        _unsupported("kinesis", kinesis, "an object")
    sequence_number = _identifier(kinesis, "sequenceNumber")
    arn = _identifier(raw, "eventSourceARN")
    stream = arn.rsplit("/", 1)[-1]
    problems: list[str] = []
    ordinal = sequence_ordinal("sequenceNumber", sequence_number, problems)
    data = kinesis.get("data")
    if isinstance(data, str):  # an empty string is a valid, empty record
        try:
            # Strict: only the alphabet, padding only at the end (what b64decode(validate=True) accepts, without
            # its Python wrapper and pattern lookup per record; tests/unit/test_records.py compares the two).
            payload = binascii.a2b_base64(data, strict_mode=True)
        except (binascii.Error, ValueError) as error:
            # Keep the raw field so nothing is lost; the record is parked with this reason.
            payload = utf8(data)
            problems.append(f"Kinesis data is not valid base64 ({error}); payload_base64 holds the raw field")
    else:
        payload = b""
        problems.append(f"Kinesis field 'data' is {kind_of(data)}, not a base64 string")
    partition_key = kinesis.get("partitionKey")
    if not isinstance(partition_key, str):
        problems.append(f"Kinesis field 'partitionKey' is {kind_of(partition_key)}, not a string")
        partition_key = None
    event_id = raw.get("eventID")
    shard_id = (event_id.split(":", 1)[0] if isinstance(event_id, str) else "") or "shardId-unknown"
    position_id = f"{stream}:{sequence_number}"
    is_json, webhook_id = _inspect_payload(payload, position_id) if not problems else (False, header_safe(position_id))
    return SourceRecord(
        item_identifier=sequence_number,
        kind=SourceKind.KINESIS,
        source_name=stream,
        source_arn=arn,
        payload=payload,
        webhook_id=webhook_id,
        is_json=is_json,
        produced_at=epoch_time(kinesis.get("approximateArrivalTimestamp"), scale=1),
        partition_key=partition_key,
        sequence_number=sequence_number,
        ordinal=ordinal,
        shard_id=shard_id,
        redriven_at=redrive_time(raw.get(REDRIVE_FIELD)),
        unreadable_reason="; ".join(problems) or None,
    )


def _sqs_record(raw: Mapping[str, Any]) -> SourceRecord:
    message_id = _identifier(raw, "messageId")
    arn = _identifier(raw, "eventSourceARN")
    queue = arn.rsplit(":", 1)[-1]
    is_fifo = queue.endswith(".fifo")
    problems: list[str] = []
    body = raw.get("body")
    if isinstance(body, str):
        payload = utf8(body)
    else:
        payload = b""
        problems.append(f"SQS field 'body' is {kind_of(body)}, not a string")
    attributes = raw.get("attributes")
    if not isinstance(attributes, dict):  # decoded JSON, as in parse_event
        attributes = {}
    extra: dict[str, Any] = {}
    group = sequence_number = ordinal = None
    if is_fifo:
        group = text_attribute(attributes, "MessageGroupId")
        if group is None:
            problems.append("FIFO message has no MessageGroupId attribute")
        sequence_number = text_attribute(attributes, "SequenceNumber")
        ordinal = sequence_ordinal("SequenceNumber", sequence_number or "", problems)
        dedup_id = text_attribute(attributes, "MessageDeduplicationId") or message_id
        position_id = f"{queue}:{dedup_id}"
        extra["message_deduplication_id"] = dedup_id
    else:
        position_id = message_id
    if raw.get("messageAttributes"):
        extra["message_attributes"] = raw["messageAttributes"]
    is_json, webhook_id = _inspect_payload(payload, position_id) if not problems else (False, header_safe(position_id))
    receive_count = ascii_decimal(text_attribute(attributes, "ApproximateReceiveCount"))
    sent_ms = ascii_decimal(text_attribute(attributes, "SentTimestamp"))
    return SourceRecord(
        item_identifier=message_id,
        kind=SourceKind.SQS_FIFO if is_fifo else SourceKind.SQS,
        source_name=queue,
        source_arn=arn,
        payload=payload,
        webhook_id=webhook_id,
        is_json=is_json,
        produced_at=epoch_time(sent_ms, scale=1000),
        partition_key=group,
        sequence_number=sequence_number,
        ordinal=ordinal,
        receive_count=receive_count if receive_count is not None else UNREADABLE_RECEIVE_COUNT,
        redriven_at=redrive_time(raw.get(REDRIVE_FIELD)),
        unreadable_reason="; ".join(problems) or None,
        extra_source_fields=extra,
    )


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with parse_constant builds a decoder per call, a third of the cost of a small payload.
_JSON_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def read_json(payload: bytes) -> Any:
    """The JSON document `payload` holds, as the standard library reads it; ValueError (or RecursionError) when it
    holds none: not UTF-8, NaN or Infinity, nested deeper than the parser's recursion limit, integers longer
    than Python accepts.

    pydantic-core's reader (jiter, already in the asset for the configuration) reads it first: a third of the
    standard library's time. It refuses some JSON the standard library reads (lone surrogates, nesting deeper
    than 200), so its refusal is never the verdict: the standard library then decides. Where it reads a
    document, the standard library reads the same one (tests/unit/test_json_payloads.py holds it to that).
    """
    try:
        return pydantic_core.from_json(payload, allow_inf_nan=False, cache_strings="keys")
    except ValueError:
        return _JSON_DECODER.decode(payload.decode("utf-8"))


def _inspect_payload(payload: bytes, position_id: str) -> tuple[bool, str]:
    """(is the payload JSON, webhook-id): the payload's own string "id" wins over the source position.

    JSON this function cannot read (`read_json`) is delivered as bytes under the position's id.
    """
    try:
        document = read_json(payload)
    except (ValueError, RecursionError):  # ValueError includes UnicodeDecodeError and JSONDecodeError
        return False, header_safe(position_id)
    if isinstance(document, dict):
        own_id = document.get("id")
        if isinstance(own_id, str) and own_id:
            return True, header_safe(own_id)
    return True, header_safe(position_id)


def _identifier(container: Mapping[str, Any], key: str) -> str:
    """A field Lambda itself writes to name the record or its source: without it the event is not a batch."""
    value = container.get(key)
    if not isinstance(value, str) or not value:
        _unsupported(key, value, "a non-empty string")
    return value


def _unsupported(key: str, value: object, expected: str) -> NoReturn:
    raise UnsupportedEventError(f"record field {key!r} is missing or not {expected}: got {kind_of(value)}")


def header_safe(value: str) -> str:
    """Header values must be visible ASCII: anything else (a Unicode partition key, CR/LF that would
    inject a header) is percent-encoded, "%" included, so two values never encode alike."""
    if HEADER_SAFE_VALUE.fullmatch(value):
        return value
    return quote(utf8(value), safe="")
