"""Ordering and pressure on the endpoint over real HTTP: SQS FIFO groups and Kinesis partition keys go
out one record after another in sequence order, a failure holds back the rest of its group or key only,
and max_in_flight and rate_limit_per_second bound what the endpoint sees.

Timing assertions here are bounds on the order of events (a request arrived only after another was
answered; no more than N requests overlapped), which a slower machine cannot break."""

from __future__ import annotations

import itertools
import time

import pytest

from dispatcher.records import parse_event
from tests.events import event, kinesis_record, sequence_number, sqs_record
from tests.integration.conftest import AwsResources, DispatcherFactory
from tests.integration.support import LoopbackEndpoint, Received, Reply

pytestmark = pytest.mark.integration

QUEUE = "ledger-callbacks.fifo"


def fifo(message_id: str, group: str, position: int) -> dict[str, object]:
    return sqs_record(message_id, f'{{"n": {position}}}'.encode(), queue=QUEUE, group=group, position=position)


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
    assert aws.parked_messages() == []


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


def max_overlap(requests: list[Received]) -> int:
    """The largest number of requests the endpoint was handling at the same moment."""
    edges: list[tuple[float, int]] = []
    for request in requests:
        assert request.responded_at is not None
        edges += [(request.received_at, 1), (request.responded_at, -1)]
    current = peak = 0
    for _, change in sorted(edges):  # at equal times the -1 (answer) sorts before the +1 (arrival)
        current += change
        peak = max(peak, current)
    return peak


async def test_kinesis_records_of_one_partition_key_go_out_one_after_another(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given records on two partition keys, interleaved, an endpoint that answers after 0.05 s, and a
    # failure on the second record of key A
    endpoint.default = Reply(200, delay_seconds=0.05)
    endpoint.always("evt-2", 500)
    dispatcher = make_dispatcher(ordering="partition-key", max_in_flight=8, max_attempts=1)
    keys = ["A", "B", "A", "B", "A", "B"]
    batch = event(
        *(kinesis_record(n, f'{{"id": "evt-{n}"}}'.encode(), key) for n, key in enumerate(keys)),
    )

    # When it is dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then key B went out one record after another in sequence order, and A stopped at its failure
    assert report.response() == {
        "batchItemFailures": [{"itemIdentifier": sequence_number(2)}, {"itemIdentifier": sequence_number(4)}]
    }
    key_b = [request for request in endpoint.received if request.headers["dispatch-partition-key"] == "B"]
    assert [request.webhook_id for request in key_b] == ["evt-1", "evt-3", "evt-5"]
    assert_one_after_another(key_b)
    assert "evt-4" not in endpoint.hits()


async def test_no_more_than_max_in_flight_requests_reach_the_endpoint_at_once(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an endpoint that answers after 0.1 s and a limit of 3 requests in flight
    endpoint.default = Reply(200, delay_seconds=0.1)
    dispatcher = make_dispatcher(ordering="none", max_in_flight=3)
    batch = event(*(kinesis_record(n, f'{{"id": "evt-{n}"}}'.encode(), f"pk-{n}") for n in range(12)))

    # When 12 records are dispatched
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then all are delivered and the endpoint never handled more than 3 at once
    assert report.response() == {"batchItemFailures": []}
    assert len(endpoint.received) == 12
    assert max_overlap(endpoint.received) <= 3


async def test_rate_limit_holds_the_endpoint_to_its_rate_after_a_one_second_burst(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a rate limit of 5 requests per second (a burst of at most 5)
    dispatcher = make_dispatcher(ordering="none", max_in_flight=16, rate_limit_per_second=5)
    batch = event(*(kinesis_record(n, f'{{"id": "evt-{n}"}}'.encode(), f"pk-{n}") for n in range(9)))

    # When 9 records are dispatched
    started = time.monotonic()
    report = await dispatcher.dispatch(parse_event(batch), 30)

    # Then all are delivered; the bucket (full with 5 tokens when the dispatch began, refilled at 5/s)
    # let the last one go no earlier than 0.8 s after the start
    assert report.response() == {"batchItemFailures": []}
    arrivals = sorted(request.received_at for request in endpoint.received)
    assert len(arrivals) == 9
    assert arrivals[-1] - started >= 0.78
    # and no more than the burst plus 0.3 s of refill arrived within the first 0.3 s
    assert sum(arrival < started + 0.3 for arrival in arrivals) <= 5 + 1
