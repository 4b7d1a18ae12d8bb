"""The retry lane on SQS: the subscription's FIFO queue, read by this same function (docs/retry-lanes.md).

Sending keeps each message group's order even when SQS refuses a message: a SendMessageBatch call carries at
most one message per group. SQS answers per entry, so within one call a later entry of a group could be
accepted after an earlier one was refused, and the later record would stay ahead of its predecessor for good
(a sent message cannot be taken back). With one message per group per call, a group's next message is sent
only once its previous one is known to be in the queue. A call still carries up to ten messages of different
groups: a hand-over costs one request per ten records, or one per record of its busiest key if more.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dispatcher.adapters.aws import aws_client
from dispatcher.adapters.sqs import SEND_BATCH_LIMIT, SEND_BATCH_MAX_BYTES, SQS_MESSAGE_MAX_BYTES, describe
from dispatcher.ports import LaneMessage
from dispatcher.retry_lane import MAX_DEFER_SECONDS

CHANGE_VISIBILITY_BATCH_LIMIT = 10  # entries per ChangeMessageVisibilityBatch
# What SQS accepts, checked before sending so that no message is refused for what it holds: the characters of a
# message body (XML 1.0's), and a MessageGroupId or MessageDeduplicationId (1 to 128 printable ASCII).
SQS_BODY = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
SQS_FIFO_ID = re.compile("[!-~]{1,128}")


class SqsRetryLane:
    def __init__(self, queue_url: str, client_factory: Callable[[], Any] = lambda: aws_client("sqs")) -> None:
        self._queue_url = queue_url
        self._client = functools.cache(client_factory)  # built on first use, then reused by warm invocations

    def send(self, messages: Sequence[LaneMessage]) -> dict[int, str]:
        groups: dict[str, deque[int]] = {}  # each group's messages not yet sent, in the order given
        for index, message in enumerate(messages):
            groups.setdefault(message.group, deque()).append(index)
        unsent: dict[int, str] = {}

        def stop(group: str, index: int, why: str) -> None:
            """`index` (already taken from its group) was not sent: neither is any later message of the group."""
            unsent[index] = why
            for later in groups.pop(group, ()):
                unsent[later] = f"not sent: an earlier message of its group ({group}) was not sent"

        while groups:
            call: list[int] = []
            size = 0
            # The groups with the most messages left go first: a group sends one message per call, so the
            # longest one sets the least number of calls, and serving it first reaches that least number.
            for group, waiting in sorted(groups.items(), key=lambda item: -len(item[1])):
                refusal = _refusal(messages[waiting[0]])
                if refusal is not None:
                    stop(group, waiting.popleft(), refusal)
                    continue
                index = waiting[0]
                length = len(messages[index].body.encode())
                if len(call) == SEND_BATCH_LIMIT or size + length > SEND_BATCH_MAX_BYTES:
                    break
                call.append(waiting.popleft())
                size += length
                if not waiting:
                    del groups[group]
            for index, why in self._send_call(messages, call).items():
                stop(messages[index].group, index, why)
        return dict(sorted(unsent.items()))

    def _send_call(self, messages: Sequence[LaneMessage], call: Sequence[int]) -> dict[int, str]:
        if not call:
            return {}
        entries = [
            {
                "Id": str(index),
                "MessageBody": messages[index].body,
                "MessageGroupId": messages[index].group,
                "MessageDeduplicationId": messages[index].deduplication_id,
            }
            for index in call
        ]
        try:
            response = self._client().send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        except Exception as error:
            return dict.fromkeys(call, f"sending to the retry lane failed: {describe(error)}")
        return {
            int(failure["Id"]): f"the retry lane refused the message: {failure.get('Code')}: {failure.get('Message')}"
            for failure in response.get("Failed", [])
        }

    def defer(self, receipt_handles: Mapping[str, int]) -> dict[str, str]:
        handles = list(receipt_handles)
        undeferred: dict[str, str] = {}
        for start in range(0, len(handles), CHANGE_VISIBILITY_BATCH_LIMIT):
            chunk = handles[start : start + CHANGE_VISIBILITY_BATCH_LIMIT]
            entries = [
                {
                    "Id": str(position),
                    "ReceiptHandle": handle,
                    # SQS refuses an extension past 12 hours from the receipt: no more than the lane's rules allow.
                    "VisibilityTimeout": min(max(receipt_handles[handle], 0), MAX_DEFER_SECONDS),
                }
                for position, handle in enumerate(chunk)
            ]
            try:
                response = self._client().change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries)
            except Exception as error:
                undeferred |= dict.fromkeys(chunk, f"deferring in the retry lane failed: {describe(error)}")
                continue
            for failure in response.get("Failed", []):
                undeferred[chunk[int(failure["Id"])]] = (
                    f"the retry lane refused to defer the message: {failure.get('Code')}: {failure.get('Message')}"
                )
        return undeferred


def _refusal(message: LaneMessage) -> str | None:
    """Why SQS would refuse the message for what it holds, or None."""
    if not SQS_BODY.fullmatch(message.body):
        return "the message body has characters SQS does not accept"
    size = len(message.body.encode())
    if size > SQS_MESSAGE_MAX_BYTES:
        return f"the message has {size} bytes, more than the retry lane's {SQS_MESSAGE_MAX_BYTES}"
    for field, value in (("group", message.group), ("deduplication id", message.deduplication_id)):
        if not SQS_FIFO_ID.fullmatch(value):
            return f"the message's {field} is not 1 to 128 printable ASCII characters"
    return None
