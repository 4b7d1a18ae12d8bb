"""Builders of Lambda Kinesis and SQS events shaped exactly as the event source mappings send them."""

from __future__ import annotations

import base64
import json
from typing import Any

REGION = "eu-west-1"
ACCOUNT = "123456789012"
STREAM = "orders"
SHARD = "shardId-000000000000"
SEQUENCE_BASE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
FIFO_SEQUENCE_BASE = 18_800_000_000_000_000_000


def sequence_number(position: int) -> str:
    """The Kinesis sequenceNumber of the record at `position` of the shard, as Kinesis writes it."""
    return str(SEQUENCE_BASE + position)


def fifo_sequence_number(position: int) -> str:
    """The SequenceNumber attribute of the FIFO message at `position` of the queue, as SQS writes it."""
    return str(FIFO_SEQUENCE_BASE + position)


def payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload).encode()


def kinesis_record(
    position: int, payload: Any, partition_key: str = "pk-1", *, raw_data: str | None = None, stream: str = STREAM
) -> dict[str, Any]:
    sequence = sequence_number(position)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence,
            "data": raw_data if raw_data is not None else base64.b64encode(payload_bytes(payload)).decode(),
            "approximateArrivalTimestamp": 1_700_000_000.5 + position,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/dispatcher",
        "awsRegion": REGION,
        "eventSourceARN": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}",
    }


def sqs_record(
    message_id: str,
    payload: Any,
    *,
    queue: str = "billing-callbacks",
    group: str | None = None,
    position: int = 0,
    dedup_id: str | None = None,
    receive_count: int = 1,
) -> dict[str, Any]:
    """An SQS message; with a `group`, a FIFO message at `position` of its queue (SequenceNumber
    `fifo_sequence_number(position)`)."""
    attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": "1700000000123",
        "SenderId": "AIDAEXAMPLE",
        "ApproximateFirstReceiveTimestamp": "1700000000456",
    }
    if group is not None:
        attributes |= {
            "MessageGroupId": group,
            "SequenceNumber": fifo_sequence_number(position),
            "MessageDeduplicationId": dedup_id or f"dedup-{message_id}",
        }
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": payload_bytes(payload).decode(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        "awsRegion": REGION,
    }


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}
