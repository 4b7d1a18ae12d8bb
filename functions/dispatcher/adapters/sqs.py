"""The parking lot on SQS: one message per parked record, sent in batches."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dispatcher.adapters.aws import aws_client

SEND_BATCH_LIMIT = 10  # entries per SendMessageBatch
SEND_BATCH_MAX_BYTES = 256 * 1024  # payload of one SendMessageBatch accepted by every SQS endpoint


class SqsParkingLot:
    def __init__(self, queue_url: str, client_factory: Callable[[], Any] = lambda: aws_client("sqs")) -> None:
        self._queue_url = queue_url
        self._is_fifo = queue_url.endswith(".fifo")
        self._client_factory = client_factory
        self._client: Any = None

    def park(self, messages: Sequence[str]) -> list[int]:
        if self._client is None:
            self._client = self._client_factory()
        unparked: list[int] = []
        for chunk in _send_batches(messages):
            entries = [self._entry(index, messages[index]) for index in chunk]
            try:
                response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except Exception:
                unparked.extend(chunk)
                continue
            unparked.extend(int(failure["Id"]) for failure in response.get("Failed", []))
        return sorted(unparked)

    def _entry(self, index: int, body: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
        if self._is_fifo:
            entry["MessageGroupId"] = "parked"
            entry["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()
        return entry


def _send_batches(messages: Sequence[str]) -> Iterator[list[int]]:
    """Indexes grouped by SendMessageBatch's count and size limits (a larger message goes alone)."""
    chunk: list[int] = []
    size = 0
    for index, message in enumerate(messages):
        length = len(message.encode())
        if chunk and (len(chunk) == SEND_BATCH_LIMIT or size + length > SEND_BATCH_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(index)
        size += length
    if chunk:
        yield chunk
