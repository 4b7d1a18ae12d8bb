"""The SQS event source mapping, rule by rule, against moto with a scripted function."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from typing import Any

import pytest

from tests.local.conftest import (
    REGION,
    LocalAws,
    ScriptedFunction,
    eventually,
    item_failures,
    raising,
    running,
    sqs_poller,
)

pytestmark = pytest.mark.integration

DEFERRED_SECONDS = 600  # a head deferred to a due time beyond the test: only the test makes it visible again
OTHER_GROUPS = 3


def bodies_of(function: ScriptedFunction) -> Counter[str]:
    """How many times each message body reached the function."""
    return Counter(body for batch in function.batches for body in batch)


def fail_bodies(*failing: str) -> Any:
    """A function reporting the messages with these bodies as failed, every time."""

    def script(records: list[dict[str, Any]], invocation: int) -> object:
        return item_failures(*(record["messageId"] for record in records if record["body"] in failing))

    return script


async def test_event_has_the_lambda_sqs_record_shape(aws: LocalAws) -> None:
    # Given a standard queue holding a message with attributes
    queue = aws.create_queue()
    sent = aws.sqs.send_message(
        QueueUrl=queue.url,
        MessageBody='{"id": "evt-1"}',
        MessageAttributes={"tenant": {"DataType": "String", "StringValue": "acme"}},
    )
    function = ScriptedFunction()
    # When the mapping delivers it
    async with running(sqs_poller(aws, queue, function)):
        await eventually(lambda: bool(function.events))
    # Then the function receives the record Lambda would send
    (record,) = function.events[0]["Records"]
    attributes = record.pop("attributes")
    assert set(attributes) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert all(isinstance(value, str) for value in attributes.values())
    assert attributes["ApproximateReceiveCount"] == "1"
    assert abs(int(attributes["SentTimestamp"]) / 1000 - time.time()) < 60
    assert isinstance(record.pop("receiptHandle"), str)
    assert isinstance(record.pop("md5OfMessageAttributes"), str)
    assert record == {
        "messageId": sent["MessageId"],
        "body": '{"id": "evt-1"}',
        "messageAttributes": {
            "tenant": {"stringValue": "acme", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
        },
        "md5OfBody": hashlib.md5(b'{"id": "evt-1"}').hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.arn,
        "awsRegion": REGION,
    }


async def test_fifo_records_carry_their_group_and_deduplication_id(aws: LocalAws) -> None:
    # Given a FIFO queue with one message
    queue = aws.create_queue(fifo=True)
    aws.sqs.send_message(
        QueueUrl=queue.url, MessageBody="hello", MessageGroupId="customer-7", MessageDeduplicationId="d1"
    )
    function = ScriptedFunction()
    # When the mapping delivers it
    async with running(sqs_poller(aws, queue, function)):
        await eventually(lambda: bool(function.events))
    # Then its attributes name the message group and the deduplication id
    attributes = function.events[0]["Records"][0]["attributes"]
    assert (attributes["MessageGroupId"], attributes["MessageDeduplicationId"]) == ("customer-7", "d1")


async def test_batches_hold_at_most_batch_size_messages(aws: LocalAws) -> None:
    # Given five messages and BatchSize 2
    queue = aws.create_queue()
    for index in range(5):
        aws.sqs.send_message(QueueUrl=queue.url, MessageBody=f"m{index}")
    function = ScriptedFunction()
    # When the mapping delivers them
    async with running(sqs_poller(aws, queue, function, batch_size=2)):
        await eventually(lambda: sum(map(len, function.batches)) == 5)
    # Then every batch holds two messages at most, and every message was delivered once
    assert all(len(batch) <= 2 for batch in function.batches)
    assert bodies_of(function) == Counter(f"m{index}" for index in range(5))


async def test_batching_window_gathers_messages_that_arrive_apart(aws: LocalAws) -> None:
    # Given one poller, BatchSize 5 and a 3 s batching window
    queue = aws.create_queue(visibility_timeout=10)
    function = ScriptedFunction()
    poller = sqs_poller(aws, queue, function, batch_size=5, batching_window_seconds=3.0, maximum_concurrency=1)
    async with running(poller):
        # When two messages arrive, then three more a little later, within the window
        for body in ("a", "b"):
            aws.sqs.send_message(QueueUrl=queue.url, MessageBody=body)
        await asyncio.sleep(0.5)
        for body in ("c", "d", "e"):
            aws.sqs.send_message(QueueUrl=queue.url, MessageBody=body)
        await eventually(lambda: sum(map(len, function.batches)) == 5)
    # Then they reach the function in one batch
    assert [sorted(batch) for batch in function.batches] == [["a", "b", "c", "d", "e"]]


async def test_only_the_messages_not_reported_are_deleted(aws: LocalAws) -> None:
    # Given three messages and a function that reports "b" failed once
    queue = aws.create_queue(visibility_timeout=1)
    for body in ("a", "b", "c"):
        aws.sqs.send_message(QueueUrl=queue.url, MessageBody=body)

    def script(records: list[dict[str, Any]], invocation: int) -> object:
        return fail_bodies("b")(records, invocation) if invocation == 1 else None

    function = ScriptedFunction(script)
    poller = sqs_poller(aws, queue, function, batch_size=3, maximum_concurrency=1)
    # When the mapping delivers them
    async with running(poller):
        await eventually(lambda: bodies_of(function)["b"] == 2, "the reported message to come back")
        await eventually(lambda: aws.messages_left(queue.url) == 0, "the queue to empty")
    # Then only "b" came back, after its visibility timeout, with its receive count up
    assert bodies_of(function) == Counter({"a": 1, "b": 2, "c": 1})
    assert function.events[-1]["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert poller.stats.records_reported_failed == 1


async def test_a_function_error_deletes_nothing(aws: LocalAws) -> None:
    # Given two messages and a function that raises once
    queue = aws.create_queue(visibility_timeout=1)
    for body in ("a", "b"):
        aws.sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    always_fail = raising()

    def script(records: list[dict[str, Any]], invocation: int) -> object:
        return always_fail(records, invocation) if invocation == 1 else None

    function = ScriptedFunction(script)
    # When the mapping delivers them
    async with running(sqs_poller(aws, queue, function, batch_size=2, maximum_concurrency=1)):
        await eventually(lambda: sum(bodies_of(function).values()) == 4, "both messages to come back")
        await eventually(lambda: aws.messages_left(queue.url) == 0, "the queue to empty")
    # Then both came back and were delivered again
    assert bodies_of(function) == Counter({"a": 2, "b": 2})


@pytest.mark.parametrize(
    "bad_response",
    [
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemId": "x"}]},
        {"batchItemFailures": [{"itemIdentifier": "not-a-message-of-this-batch"}]},
        "not an object",
    ],
    ids=["empty-identifier", "null-identifier", "wrong-key", "unknown-identifier", "not-an-object"],
)
async def test_an_invalid_partial_response_deletes_nothing(aws: LocalAws, bad_response: object) -> None:
    # Given two messages
    queue = aws.create_queue(visibility_timeout=1)
    for body in ("a", "b"):
        aws.sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    function = ScriptedFunction(lambda records, invocation: bad_response if invocation == 1 else None)
    # When the function's first answer is not a valid partial response
    async with running(sqs_poller(aws, queue, function, batch_size=2, maximum_concurrency=1)):
        await eventually(lambda: sum(bodies_of(function).values()) == 4, "both messages to come back")
    # Then both messages came back
    assert bodies_of(function) == Counter({"a": 2, "b": 2})


async def test_a_message_failing_max_receive_count_times_is_moved_to_the_dead_letter_queue(aws: LocalAws) -> None:
    # Given a queue whose redrive policy moves a message to its DLQ after two receives
    queue = aws.create_queue(visibility_timeout=1, max_receive_count=2)
    assert queue.dlq_url is not None
    aws.sqs.send_message(QueueUrl=queue.url, MessageBody="poison")
    function = ScriptedFunction(raising())
    poller = sqs_poller(aws, queue, function, maximum_concurrency=1)
    # When the function fails on it every time
    async with running(poller):
        await eventually(lambda: bodies_of(function)["poison"] == 2)
        await eventually(lambda: aws.messages_left(queue.dlq_url or "") == 1, "the message to reach the DLQ")
    # Then it was delivered twice, then parked in the DLQ with its body
    assert aws.drain(queue.dlq_url) == ["poison"]
    assert aws.messages_left(queue.url) == 0
    assert poller.stats.moved_to_source_dlq == 1
    assert bodies_of(function) == Counter({"poison": 2})


async def test_fifo_groups_stay_in_order_with_one_batch_in_flight_per_group(aws: LocalAws) -> None:
    # Given three message groups of four messages each, and three concurrent pollers
    queue = aws.create_queue(fifo=True, visibility_timeout=10)
    groups = ("g1", "g2", "g3")
    for step in range(4):
        for group in groups:
            aws.sqs.send_message(QueueUrl=queue.url, MessageBody=f"{group}/{step}", MessageGroupId=group)
    function = ScriptedFunction(delay_seconds=0.2)
    # When the mapping delivers them two at a time
    async with running(sqs_poller(aws, queue, function, batch_size=2, maximum_concurrency=3)):
        await eventually(lambda: sum(map(len, function.batches)) == 12)
    # Then no group ever had two batches in flight, and each group arrived in order
    assert function.overlapping_groups == []
    delivered = [body for batch in function.batches for body in batch]
    for group in groups:
        assert [body for body in delivered if body.startswith(f"{group}/")] == [f"{group}/{step}" for step in range(4)]


async def test_fifo_failure_redelivers_the_reported_messages_in_order(aws: LocalAws) -> None:
    # Given one group of three messages, and a function that reports the second and third failed once
    queue = aws.create_queue(fifo=True, visibility_timeout=1)
    for body in ("1", "2", "3"):
        aws.sqs.send_message(QueueUrl=queue.url, MessageBody=body, MessageGroupId="g")

    def script(records: list[dict[str, Any]], invocation: int) -> object:
        return fail_bodies("2", "3")(records, invocation) if invocation == 1 else None

    function = ScriptedFunction(script)
    # When the mapping delivers them
    async with running(sqs_poller(aws, queue, function, batch_size=3, maximum_concurrency=2)):
        await eventually(lambda: sum(map(len, function.batches)) == 5)
    # Then the reported messages come back, in their order, after the first was deleted
    assert function.batches == [["1", "2", "3"], ["2", "3"]]


@pytest.mark.parametrize(
    ("maximum_concurrency", "reserved_concurrency", "expected"),
    [(2, 5, 2), (3, 1, 1), (None, 2, 2)],
    ids=["maximum-concurrency", "capped-by-reserved-concurrency", "default-is-reserved-concurrency"],
)
async def test_concurrent_batches_stay_within_maximum_and_reserved_concurrency(
    aws: LocalAws, maximum_concurrency: int | None, reserved_concurrency: int, expected: int
) -> None:
    # Given eight messages and a slow function
    queue = aws.create_queue(visibility_timeout=10)
    for index in range(8):
        aws.sqs.send_message(QueueUrl=queue.url, MessageBody=f"m{index}")
    function = ScriptedFunction(delay_seconds=0.3)
    poller = sqs_poller(
        aws,
        queue,
        function,
        batch_size=1,
        maximum_concurrency=maximum_concurrency,
        reserved_concurrency=reserved_concurrency,
    )
    # When the mapping delivers them one per batch
    async with running(poller):
        await eventually(lambda: len(function.events) == 8)
    # Then no more batches were in flight at once than the mapping's concurrency allows
    assert poller.concurrency == expected
    assert function.peak_concurrency <= expected


async def test_filtered_out_messages_are_deleted_without_an_invocation(aws: LocalAws) -> None:
    # Given a filter on body.type and messages of two types plus a plain-text one
    queue = aws.create_queue()
    for body in ({"type": "order.created", "id": "a"}, {"type": "order.cancelled", "id": "b"}):
        aws.sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(body))
    aws.sqs.send_message(QueueUrl=queue.url, MessageBody="plain text")
    function = ScriptedFunction()
    poller = sqs_poller(aws, queue, function, filter_patterns=({"body": {"type": ["order.created"]}},))
    # When the mapping reads them
    async with running(poller):
        await eventually(lambda: poller.stats.filtered_out == 2)
        await eventually(lambda: aws.messages_left(queue.url) == 0, "the queue to empty")
    # Then only the matching message reached the function, and the others are gone from the queue
    assert [json.loads(body)["id"] for body in bodies_of(function)] == ["a"]


async def test_age_of_oldest_message_counts_undeleted_messages_received_fewer_than_three_times(aws: LocalAws) -> None:
    # Given a function that always fails, and a mapping whose clock runs ten seconds ahead of the queue's
    queue = aws.create_queue(visibility_timeout=1)
    aws.sqs.send_message(QueueUrl=queue.url, MessageBody="stuck")
    function = ScriptedFunction(raising())
    poller = sqs_poller(aws, queue, function, maximum_concurrency=1, clock=lambda: time.time() + 10)
    async with running(poller):
        # When the message has failed once
        await eventually(lambda: len(function.events) == 1)
        # Then it counts: the oldest message is at least ten seconds old
        await eventually(lambda: poller.stats.oldest_message_age_seconds >= 10, "the age to count the message")
        # And once it has been received three times it no longer counts
        await eventually(lambda: len(function.events) == 3)
        await eventually(lambda: poller.stats.oldest_message_age_seconds == 0, "the age to drop the message")


async def test_cancelling_the_poller_stops_it_while_it_long_polls(aws: LocalAws) -> None:
    # Given a poller long-polling an empty queue
    queue = aws.create_queue()
    task = asyncio.create_task(sqs_poller(aws, queue, ScriptedFunction()).run())
    await asyncio.sleep(0.5)
    # When its task is cancelled
    task.cancel()
    # Then it ends (the guard only stops a hang)
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert task.cancelled()


async def test_a_message_its_function_deferred_keeps_that_visibility_and_its_group_waits(aws: LocalAws) -> None:
    # As a retry lane's function does (docs/retry-lanes.md): it extends the visibility of a group's head to the
    # head's due time and reports the head and the rest of its group failed. Lambda leaves reported messages as
    # they are: in flight with the visibility the function set, which the mapping never resets.
    # Given a group of two messages, and a function that defers the head the first time it sees the group
    queue = aws.create_queue(fifo=True, visibility_timeout=1)
    for body in ("held/1", "held/2"):
        aws.sqs.send_message(QueueUrl=queue.url, MessageBody=body, MessageGroupId="held")
    deferred: list[str] = []  # receipt handles of the deferred heads

    def script(records: list[dict[str, Any]], invocation: int) -> object:
        held = [record for record in records if record["body"].startswith("held/")]
        if not held or deferred:
            return None
        handle = held[0]["receiptHandle"]
        aws.sqs.change_message_visibility(QueueUrl=queue.url, ReceiptHandle=handle, VisibilityTimeout=DEFERRED_SECONDS)
        deferred.append(handle)
        return item_failures(*(record["messageId"] for record in held))

    function = ScriptedFunction(script)
    async with running(sqs_poller(aws, queue, function, batch_size=10, maximum_concurrency=2)):
        await eventually(lambda: bool(deferred), "the head deferred")
        # When the visibility timeout of the queue has run out for the rest of the group, and other groups'
        # messages arrive and are delivered
        follower = aws.message_in_backend(queue, "held/2")
        await eventually(lambda: follower.visible, "the queue's visibility timeout of held/2 to end")
        for number in range(OTHER_GROUPS):
            aws.sqs.send_message(QueueUrl=queue.url, MessageBody=f"other/{number}", MessageGroupId=f"o{number}")
        await eventually(lambda: sum(body.startswith("other/") for body in bodies_of(function)) == OTHER_GROUPS)
        # Then the group never came back while its head was deferred
        assert sum(bodies_of(function)[body] for body in ("held/1", "held/2")) == 2
        # When the head's due time comes, Then the group comes back from its head, in order
        aws.sqs.change_message_visibility(QueueUrl=queue.url, ReceiptHandle=deferred[0], VisibilityTimeout=0)
        await eventually(lambda: bodies_of(function)["held/2"] == 2, "the group delivered again")
    delivered = [body for batch in function.batches for body in batch if body.startswith("held/")]
    assert delivered == ["held/1", "held/2", "held/1", "held/2"]
