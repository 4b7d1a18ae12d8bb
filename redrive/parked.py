"""A parked record read back from the parked-records queue, rebuilt into the Lambda event it came from.

The function parks a record as one JSON message (README "Parked message format"). To re-deliver it with
the SAME webhook-id, the record is rebuilt at its ORIGINAL source position (stream ARN, shard, sequence number,
partition key; or queue ARN, message id, FIFO group, sequence number and deduplication id), and the function
derives the webhook-id from it exactly as it did the first time. Nothing is put back on the source: other
subscriptions of a stream or queue would see the record again.

Every rebuilt event is parsed back with the function's own parser and refused unless it yields the parked
webhook-id and payload, so a redrive can never reach an endpoint under an id it cannot dedupe.

The payload is in the message (`payload_base64`) or, when it was too large for it, in S3 (`payload_s3`: bucket
and key), read through the reader the caller passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatcher.records import SourceKind, UnsupportedEventError, parse_event
from redrive.errors import NotRedrivableError

KINESIS_SCHEMA_VERSION = "1.0"
# The function parks a Kinesis record whose `data` was not base64 with this reason; payload_base64 then holds
# the raw field, so the original record cannot be rebuilt (real Lambda events always carry valid base64).
UNREADABLE_KINESIS_REASON_PREFIX = "Kinesis data is not valid base64"
# A redriven SQS record is a first delivery attempt: the function then never looks it up in its delivered-ids
# store (only re-sent messages, ApproximateReceiveCount > 1, are), so a parked message is never skipped.
FIRST_RECEIVE = "1"
REDRIVE_RECEIPT_HANDLE = "redrive"  # events carry one; the function never uses it, and nothing is received


@dataclass(frozen=True, slots=True)
class StoredPayload:
    """Where the function stored a payload too large for its parked message."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


# Reads a stored payload's bytes; raises NotRedrivableError when it cannot (missing, or not where it may be).
PayloadReader = Callable[[StoredPayload], bytes]


def parked_payload(document: Mapping[str, Any], read_stored: PayloadReader) -> tuple[bytes, StoredPayload | None]:
    """The payload of a parked message, from the message itself or from S3, and where it is stored if so.
    Raises KeyError, TypeError or binascii.Error when the message has neither field or a malformed one."""
    if "payload_s3" in document:
        location = document["payload_s3"]
        stored = StoredPayload(str(location["bucket"]), str(location["key"]))
        return read_stored(stored), stored
    return base64.b64decode(document["payload_base64"], validate=True), None


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """One parked message of the subscription, with the fields a redrive needs."""

    subscription: str
    webhook_id: str
    item_identifier: str  # Kinesis sequence number or SQS messageId: what the function reports failed
    source: Mapping[str, Any]
    payload: bytes
    produced_at: datetime
    reason: str
    parked_at: str
    stored_payload: StoredPayload | None = None  # set when the payload came from S3 (claim check)

    @classmethod
    def from_message(cls, body: str, read_stored: PayloadReader) -> ParkedRecord:
        """Parse a parked message body, reading its payload from S3 if it is stored there; NotRedrivableError
        names what is missing or malformed."""
        try:
            document = json.loads(body)
        except ValueError as error:
            raise NotRedrivableError(f"the message is not JSON: {error}") from None
        if not isinstance(document, dict):
            raise NotRedrivableError("the message is not a JSON object")
        try:
            source = document["source"]
            payload, stored_payload = parked_payload(document, read_stored)
            record = cls(
                subscription=str(document["subscription"]),
                webhook_id=str(document["webhook_id"]),
                item_identifier=str(document.get("item_identifier") or _source_identifier(source)),
                source=source,
                payload=payload,
                produced_at=datetime.fromisoformat(document["produced_at"]),
                reason=str(document.get("reason", "")),
                parked_at=str(document.get("parked_at", "")),
                stored_payload=stored_payload,
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            raise NotRedrivableError(f"the message lacks a valid field: {error}") from None
        if not isinstance(source, Mapping) or source.get("type") not in {kind.value for kind in SourceKind}:
            raise NotRedrivableError(f"unknown source type in {source!r}")
        return record

    @property
    def kind(self) -> SourceKind:
        return SourceKind(self.source["type"])

    def position(self) -> str:
        return describe_position(self.source)

    def lambda_event(self) -> dict[str, Any]:
        """The one-record Lambda event the function first received this record in, checked to parse back to
        the same webhook-id and payload; NotRedrivableError otherwise."""
        try:
            raw = self._kinesis_record() if self.kind is SourceKind.KINESIS else self._sqs_record()
        except (KeyError, TypeError, ValueError) as error:
            raise NotRedrivableError(f"the source position lacks a field: {error}") from None
        event = {"Records": [raw]}
        try:
            (rebuilt,) = parse_event(event).records
        except UnsupportedEventError as error:
            raise NotRedrivableError(f"the rebuilt event does not parse: {error}") from None
        if rebuilt.webhook_id != self.webhook_id or rebuilt.payload != self.payload:
            raise NotRedrivableError(
                f"the rebuilt record has webhook-id {rebuilt.webhook_id!r}, not the parked {self.webhook_id!r}"
            )
        return event

    def _kinesis_record(self) -> dict[str, Any]:
        if self.reason.startswith(UNREADABLE_KINESIS_REASON_PREFIX):
            raise NotRedrivableError("its Kinesis data was not base64 at the source: it can never be delivered")
        source = self.source
        arn, shard_id, sequence = str(source["arn"]), str(source["shard_id"]), str(source["sequence_number"])
        return {
            "kinesis": {
                "kinesisSchemaVersion": KINESIS_SCHEMA_VERSION,
                "partitionKey": str(source["partition_key"]),
                "sequenceNumber": sequence,
                "data": base64.b64encode(self.payload).decode("ascii"),
                "approximateArrivalTimestamp": self.produced_at.timestamp(),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{sequence}",
            "eventName": "aws:kinesis:record",
            "awsRegion": _region(arn),
            "eventSourceARN": arn,
        }

    def _sqs_record(self) -> dict[str, Any]:
        source = self.source
        arn = str(source["arn"])
        body = self.payload.decode("utf-8")  # an SQS body is text; the function parked body.encode()
        attributes = {
            "ApproximateReceiveCount": FIRST_RECEIVE,
            "SentTimestamp": str(round(self.produced_at.timestamp() * 1000)),
            "ApproximateFirstReceiveTimestamp": str(round(time.time() * 1000)),
        }
        if self.kind is SourceKind.SQS_FIFO:
            attributes |= {
                "MessageGroupId": str(source["message_group_id"]),
                "SequenceNumber": str(source["sequence_number"]),
                "MessageDeduplicationId": str(source["message_deduplication_id"]),
            }
        return {
            "messageId": str(source["message_id"]),
            "receiptHandle": REDRIVE_RECEIPT_HANDLE,
            "body": body,
            "attributes": attributes,
            "messageAttributes": dict(source.get("message_attributes") or {}),
            "md5OfBody": hashlib.md5(self.payload).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": _region(arn),
        }


def describe_position(source: Mapping[str, Any]) -> str:
    """A source position in one line: `orders shardId-000000000001 #4955… key=o-1` or `refunds.fifo m-1 group=c`."""
    name = source.get("name", "?")
    if source.get("type") == SourceKind.KINESIS.value:
        return f"{name} {source.get('shard_id')} #{source.get('sequence_number')} key={source.get('partition_key')}"
    position = f"{name} {source.get('message_id')}"
    if source.get("message_group_id") is not None:
        position += f" group={source['message_group_id']} #{source.get('sequence_number')}"
    return position


def _source_identifier(source: Any) -> str:
    """Messages parked before item_identifier was written name the record only in `source`."""
    if not isinstance(source, Mapping):
        raise TypeError(f"source is not an object: {source!r}")
    identifier = source.get("sequence_number") if source.get("type") == "kinesis" else source.get("message_id")
    if not identifier:
        raise KeyError("source.sequence_number or source.message_id")
    return str(identifier)


def _region(arn: str) -> str:
    return arn.split(":")[3]
