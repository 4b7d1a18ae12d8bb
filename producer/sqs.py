"""Sending events to an SQS queue with SendMessageBatch; FIFO queues get a group and a deduplication id."""

from __future__ import annotations

import hashlib
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
from producer.clients import sqs_client
from producer.errors import ProducerConfigurationError, RecordFailure
from producer.events import Event, EventError, event_text, key_from_field
from producer.result import SqsReceipt

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SQS_LIMITS = BatchLimits(
    service="SQS",
    max_entries=limits.SQS_MAX_ENTRIES_PER_REQUEST,
    max_entry_bytes=limits.SQS_MAX_MESSAGE_BYTES,
    max_request_bytes=limits.SQS_MAX_REQUEST_BYTES,
    what_counts="message body",
)
FIFO_SUFFIX = ".fifo"
URL_SCHEMES = ("https://", "http://")


class SqsProducer(BatchProducer["SendMessageBatchRequestEntryTypeDef", SqsReceipt]):
    """Sends events to one queue, named or given by URL; a name ending in .fifo makes it a FIFO queue.

    FIFO queues need a MessageGroupId per message (`group_id`, or `group_id_field` read from the event)
    and a MessageDeduplicationId: `deduplication_id_field`, or else the SHA-256 of the body, which is
    what SQS's content-based deduplication computes. Either way a message re-sent after a partial
    failure carries the same id, so SQS drops the copy if the first send did land after all.
    On a standard queue a group id is passed through (fair queues use it as the tenant).
    """

    limits = SQS_LIMITS

    def __init__(
        self,
        queue: str,
        *,
        group_id: str | None = None,
        group_id_field: str | None = None,
        deduplication_id_field: str | None = None,
        client: SQSClient | None = None,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`queue`: a queue name (resolved with GetQueueUrl on first send) or a queue URL."""
        super().__init__(retry, sleep)
        self._queue = queue
        self._queue_url = queue if queue.startswith(URL_SCHEMES) else None
        self.is_fifo = queue.rstrip("/").endswith(FIFO_SUFFIX)
        if group_id is not None and group_id_field is not None:
            raise ProducerConfigurationError("give at most one of group_id and group_id_field")
        if self.is_fifo and group_id is None and group_id_field is None:
            raise ProducerConfigurationError(f"FIFO queue {queue} needs group_id or group_id_field")
        if deduplication_id_field is not None and not self.is_fifo:
            raise ProducerConfigurationError(f"deduplication ids apply to FIFO queues only, not {queue}")
        if group_id is not None and (problem := _fifo_id_problem("group id", group_id)):
            raise ProducerConfigurationError(problem)
        self._group_id = group_id
        self._group_id_field = group_id_field
        self._deduplication_id_field = deduplication_id_field
        self._client = client

    @property
    def destination(self) -> str:
        return f"queue {self._queue}"

    def _prepare(self, index: int, event: Event) -> PreparedEntry[SendMessageBatchRequestEntryTypeDef]:
        body = event_text(event)
        # The entry id only has to be unique within one request; the input position maps replies back.
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(index), "MessageBody": body}
        group_id = key_from_field(event, self._group_id_field) if self._group_id_field else self._group_id
        if group_id is not None:
            entry["MessageGroupId"] = _checked_fifo_id("group id", group_id)
        if self.is_fifo:
            deduplication_id = (
                key_from_field(event, self._deduplication_id_field)
                if self._deduplication_id_field
                else hashlib.sha256(body.encode("utf-8")).hexdigest()
            )
            entry["MessageDeduplicationId"] = _checked_fifo_id("deduplication id", deduplication_id)
        return PreparedEntry(index, len(body.encode("utf-8")), entry)

    def _send_batch(
        self, entries: Sequence[PreparedEntry[SendMessageBatchRequestEntryTypeDef]]
    ) -> BatchResponse[SqsReceipt]:
        client = self._sqs()
        if self._queue_url is None:
            self._queue_url = client.get_queue_url(QueueName=self._queue)["QueueUrl"]
        response = client.send_message_batch(QueueUrl=self._queue_url, Entries=[entry.request for entry in entries])
        outcome: BatchResponse[SqsReceipt] = BatchResponse(receipts={}, retryable=[])
        for accepted in response.get("Successful", []):
            receipt = SqsReceipt(accepted["MessageId"], accepted.get("SequenceNumber"))
            outcome.receipts[int(accepted["Id"])] = receipt
        for failed in response.get("Failed", []):
            failure = RecordFailure(int(failed["Id"]), failed["Code"], failed.get("Message", ""))
            # A sender fault (a malformed message) fails again on every try: it is reported, not re-sent.
            (outcome.permanent if failed["SenderFault"] else outcome.retryable).append(failure)
        return outcome

    def _sqs(self) -> SQSClient:
        if self._client is None:
            self._client = sqs_client()
        return self._client


def _fifo_id_problem(kind: str, value: str) -> str | None:
    if 1 <= len(value) <= limits.SQS_MAX_FIFO_ID_CHARACTERS:
        return None
    return f"{kind} has {len(value)} characters; SQS takes 1 to {limits.SQS_MAX_FIFO_ID_CHARACTERS}"


def _checked_fifo_id(kind: str, value: str) -> str:
    if problem := _fifo_id_problem(kind, value):
        raise EventError(problem)
    return value
