"""The local AWS's SQS keeps the promises SQS makes to concurrent consumers (local/moto_sqs.py), against the moto
server the pollers use, with the load made by the test itself."""

from __future__ import annotations

import sys
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.utils import unix_time_millis
from moto.sqs import models as moto_models

from local import moto_sqs
from local.moto_sqs import oldest_sent_at
from local.soak import cpu_load
from local.spec import LOCAL_ACCOUNT_ID
from tests.local.conftest import REGION, LocalAws

pytestmark = pytest.mark.integration

CONCURRENT_POLLERS = 10
STANDARD_MESSAGES = 300
FIFO_GROUPS = 4
FIFO_MESSAGES_PER_GROUP = 25
LONG_POLL_SECONDS = 1
# Far longer than any test takes: a message received twice within it was handed out twice, not timed out.
HELD_VISIBILITY_SECONDS = 300
# The interpreter switches threads every 5 ms by default; far more often here, so the moto server's request
# threads interleave inside a receive as they would on a busy machine.
THREAD_SWITCH_INTERVAL_SECONDS = 1e-6
ELEVEN_HOURS_MS = 11 * 3600 * 1000
TEN_HOURS_SECONDS = 10 * 3600
THREE_HOURS_MS = 3 * 3600 * 1000
FIVE_MINUTES_MS = 5 * 60 * 1000


@contextmanager
def busy_machine() -> Iterator[None]:
    """Both kinds of load the defects needed: other processes on every CPU, and threads switched often."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(THREAD_SWITCH_INTERVAL_SECONDS)
    try:
        with cpu_load():
            yield
    finally:
        sys.setswitchinterval(previous)


def sqs_client(aws: LocalAws) -> Any:
    """A client of its own for each polling thread."""
    return boto3.session.Session(region_name=REGION).client("sqs", endpoint_url=aws.endpoint_url)


def in_parallel(pollers: int, poll: Callable[[Any], None], aws: LocalAws) -> None:
    with ThreadPoolExecutor(max_workers=pollers) as pool:
        for future in [pool.submit(poll, sqs_client(aws)) for _ in range(pollers)]:
            future.result()


def send_all(aws: LocalAws, url: str, bodies: list[str], group_of: Callable[[str], str] | None = None) -> None:
    for start in range(0, len(bodies), 10):
        entries: list[Any] = []
        for index, body in enumerate(bodies[start : start + 10]):
            entry: dict[str, str] = {"Id": str(index), "MessageBody": body}
            if group_of is not None:
                entry["MessageGroupId"] = group_of(body)
            entries.append(entry)
        assert not aws.sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def test_concurrent_long_polls_receive_each_message_once_within_its_visibility_timeout(aws: LocalAws) -> None:
    # SQS: a received message stays invisible to every other ReceiveMessage until its visibility timeout ends.
    # Given a standard queue of 300 messages that stay in flight far longer than the test
    queue = aws.create_queue(visibility_timeout=HELD_VISIBILITY_SECONDS)
    bodies = [f"m{index}" for index in range(STANDARD_MESSAGES)]
    send_all(aws, queue.url, bodies)
    received: list[str] = []

    def poll(sqs: Any) -> None:
        while messages := sqs.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=LONG_POLL_SECONDS
        ).get("Messages", []):
            received.extend(message["Body"] for message in messages)  # list.extend is atomic

    # When ten pollers long-poll it at once on a busy machine, none deleting anything
    with busy_machine():
        in_parallel(CONCURRENT_POLLERS, poll, aws)
    # Then every message was received, and none twice
    assert [body for body, times in Counter(received).items() if times > 1] == []
    assert sorted(received) == sorted(bodies)


def test_a_fifo_group_is_not_handed_out_while_one_of_its_messages_is_in_flight(aws: LocalAws) -> None:
    # SQS FIFO: while a message of a group is in flight, no later message of that group is returned.
    # Given a group of two messages, the first of them received and not yet deleted
    queue = aws.create_queue(fifo=True, visibility_timeout=HELD_VISIBILITY_SECONDS)
    send_all(aws, queue.url, ["first", "second"], group_of=lambda body: "g")
    (first,) = aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=1)["Messages"]
    # When another consumer receives
    while_in_flight = aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10).get("Messages", [])
    # Then it gets nothing; once the first is deleted, it gets the second
    aws.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=first["ReceiptHandle"])
    after_delete = aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)["Messages"]
    assert (first["Body"], while_in_flight, [message["Body"] for message in after_delete]) == ("first", [], ["second"])


def test_a_fifo_group_whose_messages_time_out_together_comes_back_from_its_earliest(aws: LocalAws) -> None:
    # SQS FIFO: messages whose visibility timeout ended are returned again in their group's order. (moto alone
    # skipped the earlier ones while a later one still counted as in flight and handed out the last one first.)
    # Given a group of three messages received together and never deleted
    queue = aws.create_queue(fifo=True, visibility_timeout=1)
    send_all(aws, queue.url, ["1", "2", "3"], group_of=lambda body: "g")
    assert len(aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)["Messages"]) == 3
    # When a consumer long-polls for one message as their visibility timeout ends
    again = aws.sqs.receive_message(
        QueueUrl=queue.url, MaxNumberOfMessages=1, WaitTimeSeconds=5, AttributeNames=["All"]
    )["Messages"]
    # Then it gets the earliest, received for the second time
    assert [(message["Body"], message["Attributes"]["ApproximateReceiveCount"]) for message in again] == [("1", "2")]


def test_concurrent_fifo_consumers_never_share_a_group_and_finish_each_in_order(aws: LocalAws) -> None:
    # SQS FIFO: at most one consumer holds a group's messages at a time, and a group's messages come out in
    # order even when a consumer gives some back (ChangeMessageVisibility 0) instead of deleting them.
    # Given four groups of 25 messages
    queue = aws.create_queue(fifo=True, visibility_timeout=HELD_VISIBILITY_SECONDS)
    bodies = [f"g{group}/{step:02d}" for step in range(FIFO_MESSAGES_PER_GROUP) for group in range(FIFO_GROUPS)]
    send_all(aws, queue.url, bodies, group_of=lambda body: body.split("/")[0])
    holder_of: dict[str, int] = {}  # group -> the consumer holding its messages
    shared_groups: list[str] = []
    finished: defaultdict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()

    def consume(sqs: Any) -> None:
        me = threading.get_ident()
        while messages := sqs.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=3, WaitTimeSeconds=LONG_POLL_SECONDS, AttributeNames=["All"]
        ).get("Messages", []):
            groups = {message["Attributes"]["MessageGroupId"] for message in messages}
            with lock:
                shared_groups.extend(group for group in groups if holder_of.get(group, me) != me)
                holder_of.update(dict.fromkeys(groups, me))
            # The first message is finished; the others, given back on every other receive, come again later.
            give_back = messages[1:] if int(messages[0]["Attributes"]["ApproximateReceiveCount"]) == 1 else []
            keep = [message for message in messages if message not in give_back]
            with lock:  # let go of the groups before the queue does, so a next holder is never taken for a second
                finished_now = [message["Body"] for message in keep]
                for body in finished_now:
                    finished[body.split("/")[0]].append(body)
                for group in groups:
                    del holder_of[group]
            for message in keep:
                sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
            for message in give_back:
                sqs.change_message_visibility(
                    QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )

    # When ten consumers work through them at once on a busy machine
    with busy_machine():
        in_parallel(CONCURRENT_POLLERS, consume, aws)
    # Then no group was ever held by two consumers, and every group was finished once each, in order
    assert shared_groups == []
    for group in range(FIFO_GROUPS):
        assert finished[f"g{group}"] == [f"g{group}/{step:02d}" for step in range(FIFO_MESSAGES_PER_GROUP)]


def test_fifo_sequence_numbers_grow_in_send_order(aws: LocalAws) -> None:
    # SQS FIFO: a message's SequenceNumber is larger than those of the messages sent before it.
    # Given messages sent one after another to two groups
    queue = aws.create_queue(fifo=True, visibility_timeout=HELD_VISIBILITY_SECONDS)
    bodies = [f"{uuid.uuid4().hex}" for _ in range(20)]
    send_all(aws, queue.url, bodies, group_of=lambda body: "a" if body < "8" else "b")
    # When they are received
    received = []
    while messages := aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
        "Messages", []
    ):
        received.extend(messages)
        for message in messages:
            aws.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
    # Then their sequence numbers, compared as integers, follow the order they were sent in
    by_body = {message["Body"]: int(message["Attributes"]["SequenceNumber"]) for message in received}
    assert [by_body[body] for body in bodies] == sorted(by_body.values())


def test_a_fifo_message_deferred_by_its_consumer_keeps_its_group_waiting_until_it_is_visible(aws: LocalAws) -> None:
    # SQS FIFO, as a retry lane uses it: a consumer that extends a received message's visibility holds the whole
    # group behind it until then, while other groups flow.
    # Given a group of two messages and another group, the first message received and deferred for the hold
    queue = aws.create_queue(fifo=True, visibility_timeout=1)
    send_all(aws, queue.url, ["held-1", "held-2", "other-1"], group_of=lambda body: body.split("-")[0])
    (head,) = aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=1)["Messages"]
    aws.sqs.change_message_visibility(
        QueueUrl=queue.url, ReceiptHandle=head["ReceiptHandle"], VisibilityTimeout=HELD_VISIBILITY_SECONDS
    )
    # When a consumer receives
    deferred = aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=2)["Messages"]
    # Then only the other group's message comes; when the head is made visible, the group comes back from it
    aws.sqs.change_message_visibility(QueueUrl=queue.url, ReceiptHandle=head["ReceiptHandle"], VisibilityTimeout=0)
    due = aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)["Messages"]
    assert (head["Body"], [message["Body"] for message in deferred]) == ("held-1", ["other-1"])
    assert [message["Body"] for message in due] == ["held-1", "held-2"]


def test_the_twelve_hours_of_visibility_count_from_the_receive_not_from_the_send(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQS: ChangeMessageVisibility keeps a message out of sight for at most 12 hours after the receive that
    # handed it out, however long ago it was sent (moto alone counted from the send).
    # Given a message sent 11 hours ago (a lane record that waited that long), received now
    queue = aws.create_queue(fifo=True, visibility_timeout=1)
    send_all(aws, queue.url, ["waited"], group_of=lambda body: "g")
    aws.message_in_backend(queue, "waited").sent_timestamp -= ELEVEN_HOURS_MS
    (message,) = aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=1)["Messages"]
    # When its consumer defers it by 10 hours, Then SQS takes it
    aws.sqs.change_message_visibility(
        QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=TEN_HOURS_SECONDS
    )
    # And when, three hours after that receive, it asks for 10 hours more, it is refused, naming the limit
    received_ms = unix_time_millis()
    monkeypatch.setattr(moto_sqs, "unix_time_millis", lambda: received_ms + THREE_HOURS_MS)
    with pytest.raises(ClientError, match=r"beyond the limit \[43200 seconds\]"):
        aws.sqs.change_message_visibility(
            QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=TEN_HOURS_SECONDS
        )


def test_the_oldest_message_is_read_without_receiving_it(aws: LocalAws) -> None:
    # Given an empty queue, then two messages sent, the first of them received and in flight
    queue = aws.create_queue(fifo=True, visibility_timeout=HELD_VISIBILITY_SECONDS)
    empty = oldest_sent_at(LOCAL_ACCOUNT_ID, REGION, queue.name)
    send_all(aws, queue.url, ["first", "second"], group_of=lambda body: "g")
    first, second = (aws.message_in_backend(queue, body) for body in ("first", "second"))
    second.sent_timestamp = first.sent_timestamp + 1
    (received,) = aws.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=1)["Messages"]
    # When the oldest is read, Then it is the first, in flight or not, and the second once the first is deleted
    in_flight = oldest_sent_at(LOCAL_ACCOUNT_ID, REGION, queue.name)
    aws.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=received["ReceiptHandle"])
    after_delete = oldest_sent_at(LOCAL_ACCOUNT_ID, REGION, queue.name)
    assert (empty, in_flight, after_delete) == (None, first.sent_timestamp / 1000, second.sent_timestamp / 1000)
    # And reading it received nothing: the second is still there for a consumer, received for the first time
    (message,) = aws.sqs.receive_message(QueueUrl=queue.url, AttributeNames=["All"])["Messages"]
    assert (message["Body"], message["Attributes"]["ApproximateReceiveCount"]) == ("second", "1")


def test_a_fifo_queue_drops_a_deduplication_id_it_took_within_five_minutes_even_once_deleted(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQS FIFO: a message whose deduplication id the queue took in the last 5 minutes is accepted and never
    # delivered, even if the first was received and deleted since (a record handed to a retry lane twice).
    # Given a message with deduplication id "entry-1", received and deleted
    queue = aws.create_queue(fifo=True, visibility_timeout=HELD_VISIBILITY_SECONDS)

    def send(body: str, deduplication_id: str) -> None:
        aws.sqs.send_message(
            QueueUrl=queue.url, MessageBody=body, MessageGroupId="g", MessageDeduplicationId=deduplication_id
        )

    send("first", "entry-1")
    assert aws.drain(queue.url) == ["first"]
    # When it is sent again with the same id, and another with a new id
    send("again", "entry-1")
    send("other", "entry-2")
    # Then only the other is delivered
    assert aws.drain(queue.url) == ["other"]
    # And once the 5 minutes are over, the first id is taken again
    sent_ms = unix_time_millis()
    monkeypatch.setattr(moto_models, "unix_time_millis", lambda: sent_ms + FIVE_MINUTES_MS)
    send("later", "entry-1")
    assert aws.drain(queue.url) == ["later"]
