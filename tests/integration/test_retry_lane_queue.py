"""The retry lane's SQS adapter on a real FIFO queue (moto): order per message group survives refusals, a
refused message stops its group and only its group, and deferring hides a received message."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.adapters.retry_lane import SqsRetryLane
from dispatcher.adapters.sqs import SEND_BATCH_LIMIT, SEND_BATCH_MAX_BYTES, SQS_MESSAGE_MAX_BYTES
from dispatcher.ports import LaneMessage
from dispatcher.retry_lane import MAX_DEFER_SECONDS
from tests.integration.conftest import AwsResources

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

pytestmark = pytest.mark.integration


def lane_message(group: str, position: int, body_bytes: int = 0) -> LaneMessage:
    body = json.dumps({"group": group, "position": position, "padding": "x" * body_bytes})
    return LaneMessage(group=f"key:{group}", deduplication_id=f"{group}-{position}", body=body)


def create_lane(sqs: SQSClient) -> str:
    """A fresh FIFO queue (moto's state is shared by every test of the process)."""
    return sqs.create_queue(
        QueueName=f"lane-{uuid.uuid4().hex[:12]}.fifo",
        Attributes={"FifoQueue": "true", "VisibilityTimeout": "60"},
    )["QueueUrl"]


def drain(sqs: SQSClient, queue_url: str) -> list[MessageTypeDef]:
    """Every message of the queue in the order FIFO hands it out (received, then deleted)."""
    received: list[MessageTypeDef] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return received
        for message in messages:
            received.append(message)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def positions_by_group(messages: list[MessageTypeDef]) -> dict[str, list[int]]:
    by_group: dict[str, list[int]] = {}
    for message in messages:
        body = json.loads(message["Body"])
        by_group.setdefault(body["group"], []).append(body["position"])
    return by_group


class RefusingSqs:
    """The real SQS client, except that SQS refuses the entries whose deduplication id is listed (as a service
    fault would), while accepting the others of the same call."""

    def __init__(self, client: SQSClient, refused: set[str]) -> None:
        self._client = client
        self._refused = refused

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        accepted = [entry for entry in Entries if entry["MessageDeduplicationId"] not in self._refused]
        response: dict[str, Any] = (
            dict(self._client.send_message_batch(QueueUrl=QueueUrl, Entries=accepted)) if accepted else {}  # type: ignore[arg-type]
        )
        failed = [
            {"Id": entry["Id"], "Code": "InternalError", "Message": "try again", "SenderFault": False}
            for entry in Entries
            if entry["MessageDeduplicationId"] in self._refused
        ]
        return {**response, "Failed": [*response.get("Failed", []), *failed]}


def test_messages_reach_the_lane_in_order_per_group_with_their_group_and_deduplication_ids(
    aws: AwsResources,
) -> None:
    # Given 3 groups' messages interleaved, 25 in all
    queue_url = create_lane(aws.sqs)
    messages = [lane_message(group, position) for position in range(9) for group in ("a", "b", "c")][:25]

    # When they are sent
    unsent = SqsRetryLane(queue_url, client_factory=lambda: aws.sqs).send(messages)

    # Then all are in the lane, each group in the order given, under the given FIFO ids
    received = drain(aws.sqs, queue_url)
    assert unsent == {}
    assert positions_by_group(received) == {"a": list(range(9)), "b": list(range(8)), "c": list(range(8))}
    assert {(m["Attributes"]["MessageGroupId"], m["Attributes"]["MessageDeduplicationId"]) for m in received} == {
        (message.group, message.deduplication_id) for message in messages
    }


def test_ten_messages_of_ten_groups_take_one_request_and_one_groups_messages_one_request_each(
    aws: AwsResources,
) -> None:
    # Given a lane
    queue_url = create_lane(aws.sqs)
    lane = SqsRetryLane(queue_url, client_factory=lambda: aws.sqs)

    # When 10 messages of 10 groups are sent
    aws.requests.clear()
    assert lane.send([lane_message(f"g{group}", 0) for group in range(10)]) == {}

    # Then one SendMessageBatch carried them
    assert aws.requests.of("sqs") == ["SendMessageBatch"]

    # When 3 messages of one group are sent
    aws.requests.clear()
    assert lane.send([lane_message("solo", position) for position in range(3)]) == {}

    # Then each went on its own, after the previous one was in the queue
    assert aws.requests.of("sqs") == ["SendMessageBatch"] * 3
    assert positions_by_group(drain(aws.sqs, queue_url))["solo"] == [0, 1, 2]


def test_a_message_too_large_for_the_lane_stops_its_group_only(aws: AwsResources) -> None:
    # Given group a's second message larger than SQS takes, and group b's messages
    queue_url = create_lane(aws.sqs)
    messages = [
        lane_message("a", 0),
        lane_message("a", 1, body_bytes=SQS_MESSAGE_MAX_BYTES),
        lane_message("b", 0),
        lane_message("a", 2),
        lane_message("b", 1),
    ]

    # When they are sent
    unsent = SqsRetryLane(queue_url, client_factory=lambda: aws.sqs).send(messages)

    # Then the large message and the later one of its group are returned, each saying why
    assert sorted(unsent) == [1, 3]
    assert f"more than the retry lane's {SQS_MESSAGE_MAX_BYTES}" in unsent[1]
    assert "an earlier message of its group (key:a) was not sent" in unsent[3]
    # and the lane holds exactly the rest, in order
    assert positions_by_group(drain(aws.sqs, queue_url)) == {"a": [0], "b": [0, 1]}


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (LaneMessage("key:a", "a-0", '{"nul": "\x00"}'), "body has characters SQS does not accept"),
        (LaneMessage("key:a", "a-0", '{"lone surrogate": "\ud800"}'), "body has characters SQS does not accept"),
        (LaneMessage("key:a", "a" * 129, "{}"), "deduplication id is not 1 to 128 printable ASCII"),
        (LaneMessage("key:ä", "a-0", "{}"), "group is not 1 to 128 printable ASCII"),
        (LaneMessage("", "a-0", "{}"), "group is not 1 to 128 printable ASCII"),
    ],
)
def test_a_message_sqs_would_refuse_is_returned_with_why_before_any_request(
    aws: AwsResources, message: LaneMessage, named: str
) -> None:
    # Given a message SQS would refuse for what it holds
    queue_url = create_lane(aws.sqs)
    aws.requests.clear()

    # When it is sent
    unsent = SqsRetryLane(queue_url, client_factory=lambda: aws.sqs).send([message])

    # Then it is returned naming what is wrong, and SQS was not asked
    assert named in unsent[0]
    assert aws.requests.of("sqs") == []


def test_a_message_sqs_refuses_stops_its_group_and_the_others_go_on(aws: AwsResources) -> None:
    # Given SQS refusing group a's second message (a fault on its side) among messages of groups a and b
    queue_url = create_lane(aws.sqs)
    messages = [lane_message(group, position) for position in range(4) for group in ("a", "b")]
    lane = SqsRetryLane(queue_url, client_factory=lambda: RefusingSqs(aws.sqs, refused={"a-1"}))

    # When they are sent
    unsent = lane.send(messages)

    # Then a-1 and every later message of group a are returned; SQS's reason is kept
    assert sorted(unsent) == [2, 4, 6]
    assert "InternalError: try again" in unsent[2]
    # and no later message of group a got ahead of it into the lane
    assert positions_by_group(drain(aws.sqs, queue_url)) == {"a": [0], "b": [0, 1, 2, 3]}


def test_a_failed_request_returns_its_messages_with_the_error_and_raises_nothing(aws: AwsResources) -> None:
    # Given a lane URL whose queue does not exist
    queue_url = create_lane(aws.sqs)
    aws.sqs.delete_queue(QueueUrl=queue_url)

    # When messages are sent to it
    unsent = SqsRetryLane(queue_url, client_factory=lambda: aws.sqs).send(
        [lane_message("a", 0), lane_message("b", 0), lane_message("a", 1)]
    )

    # Then every one is returned, the first of each group with the error's name
    assert sorted(unsent) == [0, 1, 2]
    assert "sending to the retry lane failed" in unsent[0]
    assert "QueueDoesNotExist" in unsent[0]


class FifoQueueDouble:
    """SQS's SendMessageBatch in memory: accepts every entry but the refused ones and records each call."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.calls: list[list[dict[str, Any]]] = []
        self.queue: list[str] = []  # deduplication ids, in the order accepted

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append(Entries)
        failed = []
        for entry in Entries:
            if entry["MessageDeduplicationId"] in self.refused:
                failed.append({"Id": entry["Id"], "Code": "InternalError", "Message": "", "SenderFault": False})
            else:
                self.queue.append(entry["MessageDeduplicationId"])
        return {"Successful": [], "Failed": failed}


lane_batches = st.lists(
    st.tuples(st.sampled_from("abcd"), st.integers(min_value=0, max_value=SEND_BATCH_MAX_BYTES // 8)),
    max_size=40,
)


@given(batch=lane_batches, refused_positions=st.sets(st.integers(min_value=0, max_value=39)))
def test_whatever_sqs_refuses_each_group_reaches_the_lane_as_a_prefix_in_order_and_the_rest_is_returned(
    batch: list[tuple[str, int]], refused_positions: set[int]
) -> None:
    # Given messages of a few groups, of any size a batch may hold, and SQS refusing any of them
    messages = [LaneMessage(f"key:{group}", f"m{position}", "x" * size) for position, (group, size) in enumerate(batch)]
    sqs = FifoQueueDouble(refused={f"m{position}" for position in refused_positions})
    send: Callable[[list[LaneMessage]], dict[int, str]] = SqsRetryLane("lane.fifo", client_factory=lambda: sqs).send

    # When they are sent
    unsent = send(messages)

    # Then each group's messages from its first refused one on are returned, and only those
    expected_unsent = set()
    for group in {message.group for message in messages}:
        indexes = [index for index, message in enumerate(messages) if message.group == group]
        refused = [index for index in indexes if index in refused_positions]
        expected_unsent |= {index for index in indexes if refused and index >= refused[0]}
    assert set(unsent) == expected_unsent
    # and the lane holds exactly the others, each group in the order given
    sent = [message.deduplication_id for index, message in enumerate(messages) if index not in expected_unsent]
    assert sorted(sqs.queue) == sorted(sent)
    for group in {message.group for message in messages}:
        in_group = {message.deduplication_id for message in messages if message.group == group}
        assert [entry for entry in sqs.queue if entry in in_group] == [entry for entry in sent if entry in in_group]
    # and every request stayed within SendMessageBatch's limits, with one message per group
    for call in sqs.calls:
        assert len(call) <= SEND_BATCH_LIMIT
        assert sum(len(entry["MessageBody"].encode()) for entry in call) <= SEND_BATCH_MAX_BYTES
        assert len({entry["MessageGroupId"] for entry in call}) == len(call)


def test_a_hand_over_takes_as_few_requests_as_its_busiest_key_allows() -> None:
    # Given 18 keys with one record each, then one key with 12
    messages = [LaneMessage(f"key:single-{key}", f"s{key}", "{}") for key in range(18)]
    messages += [LaneMessage("key:busy", f"b{position}", "{}") for position in range(12)]
    sqs = FifoQueueDouble(refused=set())

    # When they are sent
    unsent = SqsRetryLane("lane.fifo", client_factory=lambda: sqs).send(messages)

    # Then the busy key's 12 records took 12 requests, which carried the 18 others too
    assert unsent == {}
    assert len(sqs.calls) == 12
    assert [entry for entry in sqs.queue if entry.startswith("b")] == [f"b{position}" for position in range(12)]


def received_handles(sqs: SQSClient, queue_url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return [message["ReceiptHandle"] for message in messages]


def test_a_deferred_message_stays_hidden_and_one_deferred_by_zero_comes_back_at_once(aws: AwsResources) -> None:
    # Given two groups' messages received from the lane
    queue_url = create_lane(aws.sqs)
    lane = SqsRetryLane(queue_url, client_factory=lambda: aws.sqs)
    assert lane.send([lane_message("a", 0), lane_message("b", 0)]) == {}
    first, second = received_handles(aws.sqs, queue_url)

    # When one is deferred for an hour and the other for 0 seconds
    undeferred = lane.defer({first: 3600, second: 0})

    # Then only the second can be received again
    assert undeferred == {}
    again = aws.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)["Messages"]
    assert [json.loads(message["Body"])["group"] for message in again] == ["b"]


class RecordingSqs:
    """The real SQS client, recording every ChangeMessageVisibilityBatch request."""

    def __init__(self, client: SQSClient) -> None:
        self._client = client
        self.visibility_requests: list[list[dict[str, Any]]] = []

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.visibility_requests.append(Entries)
        return self._client.change_message_visibility_batch(QueueUrl=QueueUrl, Entries=Entries)  # type: ignore[arg-type]


def test_a_defer_beyond_what_sqs_allows_is_capped_below_twelve_hours_since_the_receipt(aws: AwsResources) -> None:
    # Given a received message
    queue_url = create_lane(aws.sqs)
    assert SqsRetryLane(queue_url, client_factory=lambda: aws.sqs).send([lane_message("a", 0)]) == {}
    (handle,) = received_handles(aws.sqs, queue_url)
    recording = RecordingSqs(aws.sqs)

    # When it is deferred for two days
    undeferred = SqsRetryLane(queue_url, client_factory=lambda: recording).defer({handle: 2 * 24 * 3600})

    # Then it is deferred for as long as SQS allows a message received up to one invocation ago
    assert undeferred == {}
    assert [entry["VisibilityTimeout"] for entry in recording.visibility_requests[0]] == [MAX_DEFER_SECONDS]
    assert MAX_DEFER_SECONDS == 12 * 3600 - 900
    assert received_handles(aws.sqs, queue_url) == []


def test_defers_go_ten_per_request_and_a_stale_receipt_handle_is_returned_with_why(aws: AwsResources) -> None:
    # Given 10 groups' messages received, and one receipt handle that names no message
    queue_url = create_lane(aws.sqs)
    lane = SqsRetryLane(queue_url, client_factory=lambda: aws.sqs)
    assert lane.send([lane_message(f"g{group}", 0) for group in range(10)]) == {}
    handles = received_handles(aws.sqs, queue_url)
    assert len(handles) == 10
    stale = "not-a-receipt-handle"
    aws.requests.clear()

    # When all 11 are deferred
    undeferred = lane.defer({**dict.fromkeys(handles, 600), stale: 600})

    # Then two requests were made, and only the stale handle is returned, with SQS's reason
    assert aws.requests.of("sqs") == ["ChangeMessageVisibilityBatch"] * 2
    assert list(undeferred) == [stale]
    assert "the retry lane refused to defer the message" in undeferred[stale]
    assert received_handles(aws.sqs, queue_url) == []
