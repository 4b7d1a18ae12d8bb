"""The SQS event source mapping, emulated over the local AWS's SQS API.

A number of concurrent pollers (ScalingConfig.MaximumConcurrency, never above the function's reserved
concurrency, which is also the default) each long-poll ReceiveMessage, gather a batch (BatchSize, and
MaximumBatchingWindowInSeconds for standard queues), drop what FilterCriteria rejects (those messages are
deleted, as Lambda deletes them), invoke the function and then delete only the messages that succeeded:

- full success: every message is deleted;
- ReportBatchItemFailures: every message but the reported ones is deleted;
- a function error (exception, timeout, crash) or an invalid partial response (not an object, an empty, null
  or unknown itemIdentifier, a wrong key): nothing is deleted.

Undeleted messages come back when their visibility timeout ends; the queue itself counts receives
(ApproximateReceiveCount) and moves a message to its source DLQ after maxReceiveCount - the local AWS
implements those, as SQS does. FIFO queues: SQS hands out a message group's messages only while none of the
group is in flight, so a group has at most one batch in flight and its order holds (the local AWS is made to
keep that promise under load by local.moto_sqs); FIFO ignores the batching window, as Lambda does.

ApproximateAgeOfOldestMessage is approximated from what the pollers have seen: now minus the oldest
SentTimestamp among the messages received and not yet deleted, leaving out those received three times or more
(as AWS does) and those expected in the source DLQ. Messages no poller has received yet (a backlog
deeper than the pollers' batches) are not seen, so under a deep backlog the figure runs low.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Unpack

from botocore.exceptions import BotoCoreError, ClientError

from local.esm.base import INVOCATION_PAYLOAD_LIMIT_BYTES, Invoker, MappingPoller, PollerOptions, aws_client
from local.esm.filters import matches_any
from local.spec import ConsumerSpec, SqsMappingSpec

logger = logging.getLogger(__name__)

# Lambda long-polls for 20 s. Locally 1 s: boto3 calls run in threads that cancellation cannot interrupt, and a
# stopping runtime must not wait out a 20 s poll.
LONG_POLL_SECONDS = 1
RECEIVE_LIMIT = 10  # SQS' maximum messages per ReceiveMessage and per DeleteMessageBatch
RECEIVE_ERROR_PAUSE_SECONDS = 1.0  # after a failed ReceiveMessage (the local AWS restarting), before the next
AGE_REPORT_INTERVAL_SECONDS = 1.0
RECEIVES_AFTER_WHICH_AGE_STOPS_COUNTING = 3  # AWS leaves such messages out of ApproximateAgeOfOldestMessage
# The system attributes Lambda puts in an SQS record's `attributes`, in its order (all strings).
LAMBDA_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "AWSTraceHeader",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
    "DeadLetterQueueSourceArn",
)


class OldestMessageTracker:
    """The approximation of ApproximateAgeOfOldestMessage described in the module docstring."""

    def __init__(self) -> None:
        self._sent_at: dict[str, float] = {}  # message id -> SentTimestamp, epoch seconds

    def received(self, message_id: str, sent_at: float, receive_count: int) -> None:
        if receive_count >= RECEIVES_AFTER_WHICH_AGE_STOPS_COUNTING:
            self._sent_at.pop(message_id, None)
        else:
            self._sent_at[message_id] = sent_at

    def gone(self, message_id: str) -> None:
        self._sent_at.pop(message_id, None)

    def oldest_age_seconds(self, now: float) -> float:
        return max(0.0, now - min(self._sent_at.values())) if self._sent_at else 0.0


class SqsPoller(MappingPoller[SqsMappingSpec]):
    """The event source mapping of one consumer whose source is an SQS queue.

    `await run()` polls until cancelled; `started` is set once the pollers are running. `clock` (epoch seconds)
    is what message ages are measured against. Counters go to `stats`.
    """

    mapping_type = SqsMappingSpec

    def __init__(self, consumer: ConsumerSpec, function: Invoker, **options: Unpack[PollerOptions]) -> None:
        super().__init__(consumer, function, **options)
        self.oldest_messages = OldestMessageTracker()
        reserved = consumer.function.reserved_concurrency
        self.concurrency = min(self.mapping.maximum_concurrency or reserved, reserved)
        self._sqs = aws_client("sqs", self._endpoint_url, self._region)
        self._max_receive_count: int | None = None  # the redrive policy's; None: the queue has no source DLQ
        self._maximum_message_bytes = 0

    async def run(self) -> None:
        await self._read_queue_settings()
        async with asyncio.TaskGroup() as tasks:
            for _ in range(self.concurrency):
                tasks.create_task(self._poll())
            tasks.create_task(self._report_oldest_message_age())
            self.started.set()

    async def _read_queue_settings(self) -> None:
        response = await asyncio.to_thread(
            self._sqs.get_queue_attributes,
            QueueUrl=self.mapping.queue_url,
            AttributeNames=["RedrivePolicy", "MaximumMessageSize"],
        )
        attributes = response.get("Attributes", {})
        policy = attributes.get("RedrivePolicy")
        self._max_receive_count = int(json.loads(policy)["maxReceiveCount"]) if policy else None
        self._maximum_message_bytes = int(attributes["MaximumMessageSize"])

    async def _poll(self) -> None:
        while True:
            messages = await self._receive_batch()
            if messages:
                await self._handle(messages)

    async def _receive_batch(self) -> list[dict[str, Any]]:
        """Long-poll until a message arrives, then keep receiving until the batch is full, the batching window
        has closed, or a further message might not fit under Lambda's payload cap (see `_next_receive`)."""
        window = 0.0 if self.mapping.is_fifo else self.mapping.batching_window_seconds
        batch: list[dict[str, Any]] = []
        window_closes = 0.0
        payload_bytes = 0
        while (receive := self._next_receive(len(batch), payload_bytes, window_closes)) is not None:
            count, wait_seconds = receive
            received = await self._receive(count, wait_seconds)
            if received and not batch:
                window_closes = time.monotonic() + window
            batch.extend(received)
            payload_bytes += sum(len(message["Body"]) for message in received)
            if batch and not received and wait_seconds == 0:
                await asyncio.sleep(window_closes - time.monotonic())  # the window's last fraction of a second
        return batch

    def _next_receive(self, batched: int, payload_bytes: int, window_closes: float) -> tuple[int, int] | None:
        """(MaxNumberOfMessages, WaitTimeSeconds) of the next ReceiveMessage of a batch holding `batched`
        messages, or None when the batch is complete. A receive asks for no more messages of the queue's maximum
        size than still fit under Lambda's payload cap."""
        if batched >= self.mapping.batch_size:
            return None
        fitting = (INVOCATION_PAYLOAD_LIMIT_BYTES - payload_bytes) // self._maximum_message_bytes
        count = min(RECEIVE_LIMIT, self.mapping.batch_size - batched, max(fitting, 1))
        if not batched:
            return count, LONG_POLL_SECONDS
        remaining = window_closes - time.monotonic()
        if remaining <= 0 or fitting < 1:
            return None
        return count, min(LONG_POLL_SECONDS, int(remaining))  # WaitTimeSeconds takes whole seconds

    async def _queue_call(self, operation: Callable[..., Any], **parameters: Any) -> Any:
        """Call the queue's API in a thread: boto3 blocks."""
        return await asyncio.to_thread(operation, QueueUrl=self.mapping.queue_url, **parameters)

    async def _receive(self, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        try:
            response = await self._queue_call(
                self._sqs.receive_message,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except (BotoCoreError, ClientError) as error:
            logger.warning("%s: ReceiveMessage failed: %s", self._name, error)
            await asyncio.sleep(RECEIVE_ERROR_PAUSE_SECONDS)
            return []
        messages: list[dict[str, Any]] = response.get("Messages", [])
        for message in messages:
            attributes = message.get("Attributes", {})
            self.oldest_messages.received(
                message["MessageId"],
                int(attributes.get("SentTimestamp", "0")) / 1000,
                int(attributes.get("ApproximateReceiveCount", "1")),
            )
        return messages

    async def _handle(self, messages: list[dict[str, Any]]) -> None:
        passed = await self._drop_filtered_out([self._event_record(message) for message in messages])
        if not passed:
            return
        message_ids = {record["messageId"] for record in passed}
        _, verdict = await self._invoke(passed, message_ids)
        kept_ids = message_ids if verdict.whole_batch_failed else verdict.reported_failures
        await self._delete([record for record in passed if record["messageId"] not in kept_ids])
        self._note_moves_to_source_dlq([record for record in passed if record["messageId"] in kept_ids])
        self.stats.oldest_message_age_seconds = self.oldest_messages.oldest_age_seconds(self._clock())

    async def _drop_filtered_out(self, event_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Delete the records FilterCriteria rejects, as Lambda does; return those it lets through."""
        passed: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for record in event_records:
            passing = matches_any(self.mapping.filter_patterns, _filter_document(record))
            (passed if passing else rejected).append(record)
        if rejected:
            self.stats.filtered_out += len(rejected)
            await self._delete(rejected)
        return passed

    def _note_moves_to_source_dlq(self, kept: list[dict[str, Any]]) -> None:
        """Count the failed messages the queue will move to its source DLQ instead of delivering again."""
        if self._max_receive_count is None:
            return
        for record in kept:
            if int(record["attributes"].get("ApproximateReceiveCount", "1")) >= self._max_receive_count:
                self.stats.moved_to_source_dlq += 1
                self.oldest_messages.gone(record["messageId"])

    async def _delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), RECEIVE_LIMIT):
            chunk = records[start : start + RECEIVE_LIMIT]
            entries = [
                {"Id": str(index), "ReceiptHandle": record["receiptHandle"]} for index, record in enumerate(chunk)
            ]
            try:
                response = await self._queue_call(self._sqs.delete_message_batch, Entries=entries)
            except (BotoCoreError, ClientError) as error:
                # Like Lambda: the messages come back after their visibility timeout and are delivered again.
                logger.warning("%s: DeleteMessageBatch failed: %s", self._name, error)
                continue
            for failure in response.get("Failed", []):
                logger.warning("%s: could not delete a message: %s", self._name, failure)
            for record in chunk:
                self.oldest_messages.gone(record["messageId"])

    def _event_record(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {name: attributes[name] for name in LAMBDA_RECORD_ATTRIBUTES if name in attributes},
            "messageAttributes": {
                name: _lambda_message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record | {"eventSource": "aws:sqs", "eventSourceARN": self.mapping.queue_arn, "awsRegion": self._region}

    async def _report_oldest_message_age(self) -> None:
        while True:
            self.stats.oldest_message_age_seconds = self.oldest_messages.oldest_age_seconds(self._clock())
            await asyncio.sleep(AGE_REPORT_INTERVAL_SECONDS)


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """An SQS message attribute in the shape Lambda's SQS event gives it (binary values base64-encoded)."""
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return attribute | {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }


def _filter_document(record: dict[str, Any]) -> dict[str, Any]:
    """What FilterCriteria patterns see: the record, with a JSON body as an object (a plain body stays a string)."""
    try:
        body = json.loads(record["body"])
    except ValueError:
        return record
    return record | {"body": body}
