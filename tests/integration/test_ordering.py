"""SQS FIFO over real HTTP: message groups go out one message after another in sequence order, and a
failure holds back the rest of its group only."""

from __future__ import annotations

import itertools

import pytest

from dispatcher.records import parse_event
from tests.events import event, sqs_record
from tests.integration.conftest import AwsResources, DispatcherFactory
from tests.integration.support import LoopbackEndpoint, Received, Reply

pytestmark = pytest.mark.integration

QUEUE = "ledger-callbacks.fifo"


def fifo(message_id: str, group: str, sequence: int) -> dict[str, object]:
    return sqs_record(message_id, f'{{"n": {sequence}}}'.encode(), queue=QUEUE, group=group, sequence=sequence)


def webhook_id(message_id: str) -> str:
    return f"{QUEUE}:dedup-{message_id}"


def assert_one_after_another(requests: list[Received]) -> None:
    """Each request arrived only after the previous one had been answered, in sequence order."""
    sequences = [int(request.headers["dispatch-sequence"]) for request in requests]
    assert sequences == sorted(sequences)
    for earlier, later in itertools.pairwise(requests):
        assert earlier.responded_at is not None
        assert later.received_at >= earlier.responded_at


async def test_failure_in_one_group_holds_back_that_group_only(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a FIFO batch of three groups, interleaved as the queue hands them out; message a2 fails on
    # every attempt, and the endpoint is slow enough that concurrent sending within a group would overlap
    endpoint.default = Reply(200, delay_seconds=0.05)
    endpoint.always(webhook_id("a2"), 500)
    # ordering "none" on purpose: FIFO groups are ordered whatever the subscription says
    dispatcher = make_dispatcher(ordering="none", max_in_flight=8, max_attempts=2)
    batch = event(
        fifo("a1", "A", 1),
        fifo("b1", "B", 2),
        fifo("a2", "A", 3),
        fifo("b2", "B", 4),
        fifo("a3", "A", 5),
        fifo("b3", "B", 6),
        fifo("a4", "A", 7),
        fifo("c1", "C", 8),
    )

    # When it is dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then the failed message and everything after it in its group are reported; nothing else
    assert report.response() == {
        "batchItemFailures": [{"itemIdentifier": "a2"}, {"itemIdentifier": "a3"}, {"itemIdentifier": "a4"}]
    }
    # and the held-back messages never reached the endpoint, while the other groups were delivered
    assert endpoint.hits() == {
        webhook_id("a1"): 1,
        webhook_id("a2"): 2,
        webhook_id("b1"): 1,
        webhook_id("b2"): 1,
        webhook_id("b3"): 1,
        webhook_id("c1"): 1,
    }
    by_group: dict[str, list[Received]] = {}
    for request in endpoint.received:
        by_group.setdefault(request.headers["dispatch-partition-key"], []).append(request)
    assert [request.webhook_id for request in by_group["B"]] == [webhook_id(m) for m in ("b1", "b2", "b3")]
    assert_one_after_another(by_group["B"])
    assert_one_after_another(by_group["A"])
    assert aws.dead_letters() == []


async def test_groups_proceed_in_parallel(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given two groups of two messages and an endpoint that answers after 0.3 s
    endpoint.default = Reply(200, delay_seconds=0.3)
    dispatcher = make_dispatcher(max_in_flight=8)
    batch = event(fifo("a1", "A", 1), fifo("b1", "B", 2), fifo("a2", "A", 3), fifo("b2", "B", 4))

    # When it is dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then the first messages of both groups were in flight together (each arrived before the other's
    # answer), while within a group the second waited for the first
    assert report.response() == {"batchItemFailures": []}
    first_a, first_b = endpoint.for_id(webhook_id("a1"))[0], endpoint.for_id(webhook_id("b1"))[0]
    assert first_a.responded_at is not None
    assert first_b.responded_at is not None
    assert first_b.received_at < first_a.responded_at
    assert first_a.received_at < first_b.responded_at
    assert_one_after_another([first_a, *endpoint.for_id(webhook_id("a2"))])
    assert_one_after_another([first_b, *endpoint.for_id(webhook_id("b2"))])
