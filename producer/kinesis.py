"""Putting events onto a Kinesis data stream with PutRecords."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from producer import limits
from producer.batching import (
    DEFAULT_RETRY_POLICY,
    BatchLimits,
    BatchProducer,
    BatchResponse,
    PreparedEntry,
    RetryPolicy,
)
from producer.clients import kinesis_client
from producer.errors import ProducerConfigurationError, RecordFailure
from producer.events import Event, EventError, encode_event, key_from_field
from producer.result import KinesisReceipt

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

KINESIS_LIMITS = BatchLimits(
    service="Kinesis",
    max_entries=limits.KINESIS_MAX_RECORDS_PER_REQUEST,
    max_entry_bytes=limits.KINESIS_MAX_RECORD_BYTES,
    max_request_bytes=limits.KINESIS_MAX_REQUEST_BYTES,
    what_counts="data plus partition key",
)
ARN_PREFIX = "arn:"


class KinesisProducer(BatchProducer["PutRecordsRequestEntryTypeDef", KinesisReceipt]):
    """Puts events onto one stream; every record needs a partition key, fixed or read from the event.

    The partition key picks the shard and, for the dispatcher, the order of delivery: records sharing
    a key are delivered one after another. There is deliberately no random default.
    """

    limits = KINESIS_LIMITS

    def __init__(
        self,
        stream: str,
        *,
        partition_key: str | None = None,
        partition_key_field: str | None = None,
        client: KinesisClient | None = None,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`stream`: a stream name or ARN. `partition_key_field`: a JSON field, "a.b" for a nested one."""
        super().__init__(retry, sleep)
        if (partition_key is None) == (partition_key_field is None):
            raise ProducerConfigurationError("give exactly one of partition_key and partition_key_field")
        if partition_key is not None and (problem := _partition_key_problem(partition_key)):
            raise ProducerConfigurationError(problem)
        self._stream = stream
        self._partition_key = partition_key
        self._partition_key_field = partition_key_field
        self._client = client

    @property
    def destination(self) -> str:
        return f"stream {self._stream}"

    def _prepare(self, index: int, event: Event) -> PreparedEntry[PutRecordsRequestEntryTypeDef]:
        data = encode_event(event)
        if self._partition_key_field is not None:
            partition_key = key_from_field(event, self._partition_key_field)
            if problem := _partition_key_problem(partition_key):
                raise EventError(problem)
        else:
            assert self._partition_key is not None  # one of the two is set, checked in __init__
            partition_key = self._partition_key
        size = len(data) + len(partition_key.encode("utf-8"))
        return PreparedEntry(index, size, {"Data": data, "PartitionKey": partition_key})

    def _send_batch(
        self, entries: Sequence[PreparedEntry[PutRecordsRequestEntryTypeDef]]
    ) -> BatchResponse[KinesisReceipt]:
        if self._client is None:
            self._client = kinesis_client()
        records = [entry.request for entry in entries]
        if self._stream.startswith(ARN_PREFIX):
            response = self._client.put_records(StreamARN=self._stream, Records=records)
        else:
            response = self._client.put_records(StreamName=self._stream, Records=records)
        # The response lists one result per request record, in request order.
        outcome: BatchResponse[KinesisReceipt] = BatchResponse(receipts={}, retryable=[])
        for entry, record in zip(entries, response["Records"], strict=True):
            if "ErrorCode" in record:
                # ProvisionedThroughputExceededException or InternalFailure: both pass on a later try.
                failure = RecordFailure(entry.index, record["ErrorCode"], record.get("ErrorMessage", ""))
                outcome.retryable.append(failure)
            else:
                outcome.receipts[entry.index] = KinesisReceipt(record["ShardId"], record["SequenceNumber"])
        return outcome


def _partition_key_problem(partition_key: str) -> str | None:
    if 1 <= len(partition_key) <= limits.KINESIS_MAX_PARTITION_KEY_CHARACTERS:
        return None
    return (
        f"partition key has {len(partition_key)} characters; "
        f"Kinesis takes 1 to {limits.KINESIS_MAX_PARTITION_KEY_CHARACTERS}"
    )
