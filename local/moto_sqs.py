"""SQS semantics the local AWS (moto 5.2, run in this process) gets wrong, enforced on its SQS backend.

moto's ReceiveMessage reads and changes a queue's messages without a lock while the server answers requests in
parallel threads, and decides which FIFO message groups are busy from a set it re-reads halfway through a scan.
Under load that breaks two promises SQS keeps, and the pollers cannot repair either from outside:

- a message is received by one ReceiveMessage at a time: two concurrent long polls both saw a message visible
  and both handed it out (a duplicate within its visibility timeout, which SQS never invents);
- a FIFO message group is handed out only while none of its messages is in flight, earliest first: when several
  in-flight messages of a group became visible again together, moto skipped the first while a later one still
  counted as in flight, and handed out the later one first.

So every change to a queue's messages (send, receive, delete, change of visibility) holds the queue's own lock
(the condition moto already notifies when a message is added), a receive decides visibility and busy groups from
one reading of the clock, and a long poll waits on that condition with the lock released.

A third: a FIFO queue drops a message whose deduplication id it took in the last 5 minutes, even when that message
was received and deleted since; moto compared only with the messages still in the queue, so a record handed to a
retry lane twice (a re-sent batch) could be delivered twice after the first was done. Each FIFO queue keeps the
deduplication ids it took with when, for the 5 minutes. (A queue whose DeduplicationScope is messageGroup, as the
retry lanes', is deduplicated queue-wide here: a lane's deduplication ids are entry ids, each in one group only.)

A fourth: SQS lets ChangeMessageVisibility keep a message out of sight for at most 12 hours from the receive that
handed it out; moto counts the 12 hours from when the message was sent, so a retry lane that defers a message for
hours after it waited days (docs/retry-lanes.md) was refused. The limit is counted from the latest receive.

The patch is process-wide and idempotent: `enforce_sqs_semantics()` before starting a ThreadedMotoServer.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from copy import deepcopy
from typing import Any, cast

from moto.core.utils import unix_time_millis
from moto.sqs.exceptions import InvalidParameterValue, ReceiptHandleIsInvalid
from moto.sqs.models import (
    DEDUPLICATION_TIME_IN_SECONDS,
    Message,
    Queue,
    SQSBackend,
    _filter_message_attributes,
    sqs_backends,
)

FIFO_SEQUENCE_BASE = 18_000_000_000_000_000_000  # SQS FIFO sequence numbers are 20-digit decimals
MILLISECONDS_PER_SECOND = 1000
MAX_VISIBILITY_SECONDS = 12 * 3600  # how long after a receive a message can be kept out of sight, at most
_PATCHED_MARKER = "enforces_sqs_semantics"
# When each message was last received (epoch milliseconds), set under its queue's lock; gone with the message.
# Per FIFO queue, the deduplication ids it took and when (epoch milliseconds), for DEDUPLICATION_TIME_IN_SECONDS.
_deduplication_ids: weakref.WeakKeyDictionary[Queue, dict[str, int]] = weakref.WeakKeyDictionary()
_last_received_ms: weakref.WeakKeyDictionary[Message, float] = weakref.WeakKeyDictionary()


def enforce_sqs_semantics() -> None:
    """Patch moto's SQS backend (once per process) as the module docstring describes."""
    if getattr(SQSBackend.receive_message, _PATCHED_MARKER, False):
        return
    original_send = SQSBackend.send_message
    original_add = Queue.add_message

    def add_message(self: Queue, message: Message) -> None:
        deduplication_id = message.deduplication_id
        if not self.fifo_queue or deduplication_id is None:
            original_add(self, message)
            return
        with _lock_of(self):
            sent_ms = cast(int, message.sent_timestamp)
            taken = _deduplication_ids.setdefault(self, {})
            window_ms = DEDUPLICATION_TIME_IN_SECONDS * MILLISECONDS_PER_SECOND
            for expired in [key for key, taken_ms in taken.items() if sent_ms - taken_ms >= window_ms]:
                del taken[expired]
            if deduplication_id in taken:
                return  # accepted, never delivered: as SQS answers a duplicate within the window
            taken[deduplication_id] = sent_ms
            original_add(self, message)

    original_delete = SQSBackend.delete_message
    sequence_numbers = itertools.count(FIFO_SEQUENCE_BASE)

    def send_message(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Message:
        # moto draws a FIFO message's SequenceNumber at random, or gives none with content-based deduplication;
        # SQS's grow with every message of a group, and receivers compare them to drop stale events. The number
        # is set before the queue's lock is released, so no receive can hand the message out without it.
        queue = self.get_queue(queue_name)
        with _lock_of(queue):
            message = original_send(self, queue_name, *args, **kwargs)
            if queue.fifo_queue:
                message.sequence_number = str(next(sequence_numbers))
            return message

    def delete_message(self: SQSBackend, queue_name: str, receipt_handle: str) -> None:
        lock = _lock_of(self.get_queue(queue_name))
        with lock:
            original_delete(self, queue_name, receipt_handle)
            lock.notify_all()  # a FIFO group may be free now

    def change_message_visibility(
        self: SQSBackend, queue_name: str, receipt_handle: str, visibility_timeout: int
    ) -> None:
        queue = self.get_queue(queue_name)
        lock = _lock_of(queue)
        with lock:
            message = next((held for held in queue._messages if held.had_receipt_handle(receipt_handle)), None)
            if message is None:
                raise ReceiptHandleIsInvalid
            received_ms = _last_received_ms.get(message, message.sent_timestamp or 0)
            visible_again_ms = unix_time_millis() + int(visibility_timeout) * MILLISECONDS_PER_SECOND
            if visible_again_ms - received_ms > MAX_VISIBILITY_SECONDS * MILLISECONDS_PER_SECOND:
                raise InvalidParameterValue(
                    f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: Total "
                    f"VisibilityTimeout for the message is beyond the limit [{MAX_VISIBILITY_SECONDS} seconds]"
                )
            message.change_visibility(visibility_timeout)
            if message.visible:
                queue.pending_messages.discard(message)
            lock.notify_all()  # the message may be visible now

    def receive_message(
        self: SQSBackend,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> list[Message]:
        queue = self.get_queue(queue_name)
        lock = _lock_of(queue)
        poll_ends = time.monotonic() + wait_seconds_timeout
        with lock:
            while True:
                received, next_visible_in = _receive_visible(queue, count, visibility_timeout)
                poll_left = poll_ends - time.monotonic()
                if received or poll_left <= 0:
                    break
                # Woken by a send, delete or visibility change; or when the next in-flight message's
                # visibility timeout ends; or when the long poll is over.
                lock.wait(timeout=min(poll_left, next_visible_in))
            # Copied under the lock: the answer must show the message as this receive left it.
            copies = [deepcopy(message) for message in received]
        for copy in copies:
            _filter_message_attributes(copy, message_attribute_names or [])
        return copies

    setattr(add_message, _PATCHED_MARKER, True)
    Queue.add_message = add_message  # type: ignore[method-assign]
    for name, patched in (
        ("send_message", send_message),
        ("delete_message", delete_message),
        ("change_message_visibility", change_message_visibility),
        ("receive_message", receive_message),
    ):
        setattr(patched, _PATCHED_MARKER, True)
        setattr(SQSBackend, name, patched)


def oldest_sent_at(account_id: str, region: str, queue_name: str) -> float | None:
    """When the oldest message still in the queue (visible, in flight or delayed) was sent, in epoch seconds; None
    when it is empty. Read from moto's backend in this process: SQS's API tells no message's age without
    receiving it, which would change its visibility."""
    queue = sqs_backends[account_id][region].get_queue(queue_name)
    with _lock_of(queue):
        # moto declares sent_timestamp as None; send sets it to epoch milliseconds before the message is queued.
        sent: list[int] = [cast(int, message.sent_timestamp) for message in queue._messages]
    return min(sent) / MILLISECONDS_PER_SECOND if sent else None


def _lock_of(queue: Queue) -> threading.Condition:
    """The queue's lock: moto's own condition, which its add_message holds and notifies."""
    return queue._messages_lock


def _receive_visible(queue: Queue, count: int, visibility_timeout: int) -> tuple[list[Message], float]:
    """Mark up to `count` visible messages received, in queue order, and return them with the seconds until the
    next message that is in flight or delayed now may become receivable. Runs under the queue's lock.

    Everything is judged at one instant: a FIFO group is busy if any of its messages is in flight at that
    instant, so a group whose in-flight messages all became visible hands out its earliest message first.
    Messages past their receive limit go to the dead-letter queue instead, as SQS moves them. (Retention is not
    enforced: local runs last minutes, retention days.)
    """
    now = unix_time_millis()
    in_flight = [message for message in queue._messages if message.visible_at >= now]
    waiting = [message.visible_at for message in in_flight] + [
        message.delayed_until for message in queue._messages if message.delayed_until > now
    ]
    next_visible_in = (min(waiting) - now) / MILLISECONDS_PER_SECOND if waiting else float("inf")
    busy_groups = {message.group_id for message in in_flight} if queue.fifo_queue else set()
    queue.pending_messages.difference_update(set(queue._messages) - set(in_flight))
    max_receive_count = int(queue.redrive_policy["maxReceiveCount"]) if queue.redrive_policy else None
    received: list[Message] = []
    to_dead_letter_queue: list[Message] = []
    for message in queue._messages:
        if len(received) >= count:
            break
        if message.visible_at >= now or message.delayed_until > now or message.group_id in busy_groups:
            continue
        if (
            queue.dead_letter_queue is not None
            and max_receive_count is not None
            and message.approximate_receive_count >= max_receive_count
        ):
            to_dead_letter_queue.append(message)
            continue
        message.mark_received(visibility_timeout=visibility_timeout)
        _last_received_ms[message] = now
        queue.pending_messages.add(message)
        received.append(message)
    for message in to_dead_letter_queue:
        queue._messages.remove(message)
        queue.dead_letter_queue.add_message(message)  # type: ignore[union-attr]
    return received, next_visible_in
