"""The parked records on SQS (the parked-records queue): one message per parked record, sent in batches; a
payload too large for its message goes to the parked-payload bucket first and the message carries its location
(claim check)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dispatcher.adapters.aws import aws_client
from dispatcher.adapters.s3 import S3PayloadStore
from dispatcher.ports import ParkedMessage

SEND_BATCH_LIMIT = 10  # entries per SendMessageBatch
# Bytes of one message, and of one SendMessageBatch, that every SQS endpoint and queue accepts: 256 KiB is the
# default MaximumMessageSize; AWS raised the maximum to 1 MiB in 2025, but not for every queue or emulator.
SQS_MESSAGE_MAX_BYTES = 256 * 1024
SEND_BATCH_MAX_BYTES = 256 * 1024


class SqsParkedRecords:
    def __init__(
        self,
        queue_url: str,
        payloads: S3PayloadStore,
        client_factory: Callable[[], Any] = lambda: aws_client("sqs"),
    ) -> None:
        self._queue_url = queue_url
        self._is_fifo = queue_url.endswith(".fifo")
        self._payloads = payloads
        self._client_factory = client_factory
        self._client: Any = None

    def park(self, messages: Sequence[ParkedMessage]) -> dict[int, str]:
        unparked: dict[int, str] = {}
        bodies: dict[int, str] = {}
        for index, message in enumerate(messages):
            try:
                bodies[index] = self._body(message)
            except Exception as error:
                unparked[index] = f"storing the payload in S3 failed: {describe(error)}"
        if not bodies:
            return unparked
        if self._client is None:
            self._client = self._client_factory()
        for chunk in _send_batches(bodies):
            entries = [self._entry(index, bodies[index]) for index in chunk]
            try:
                response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except Exception as error:
                unparked |= dict.fromkeys(chunk, f"sending to the parked-records queue failed: {describe(error)}")
                continue
            for failure in response.get("Failed", []):
                unparked[int(failure["Id"])] = (
                    f"the parked-records queue refused the message: {failure.get('Code')}: {failure.get('Message')}"
                )
        return dict(sorted(unparked.items()))

    def _body(self, message: ParkedMessage) -> str:
        """The payload inline when the message fits SQS, else stored first and referenced."""
        inline = _render({**message.fields, "payload_base64": base64.b64encode(message.payload).decode()})
        if len(inline.encode()) <= SQS_MESSAGE_MAX_BYTES:
            return inline
        return _render({**message.fields, "payload_s3": self._payloads.put(message)})

    def _entry(self, index: int, body: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
        if self._is_fifo:
            entry["MessageGroupId"] = "parked"
            entry["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()
        return entry


def describe(error: BaseException) -> str:
    """An exception in one line for the logs: its type and message (AWS errors never echo the payload)."""
    return f"{type(error).__name__}: {error}"


def _render(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def _send_batches(bodies: dict[int, str]) -> Iterator[list[int]]:
    """Indexes grouped by SendMessageBatch's count and size limits (a larger message goes alone)."""
    chunk: list[int] = []
    size = 0
    for index, body in bodies.items():
        length = len(body.encode())
        if chunk and (len(chunk) == SEND_BATCH_LIMIT or size + length > SEND_BATCH_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(index)
        size += length
    if chunk:
        yield chunk
