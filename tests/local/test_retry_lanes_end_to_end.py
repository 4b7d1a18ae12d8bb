"""Retry lanes end to end, through the local system `dispatcher local` and the demo run (docs/retry-lanes.md): one
key's endpoint fails for a while and the other keys flow. The healthy keys' events are POSTed once each (the
source moves on instead of re-sending its batch), the failing key waits in its retry lane, and once the endpoint
takes it again its events arrive, in order, after every other key's; nothing is lost.

The outage ends on a condition (every healthy event taken and the failing key held), not after a time, so what is
asserted does not depend on how fast the machine is. Takes about 40 s (synthesis included) on a busy 2-CPU machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.moto_api._internal.models import moto_api_backend

from local.demo import FIFO_QUEUE, STREAM, write_demo_registry
from local.receiver import DemoReceiver, FaultKnobs, SubscriptionLedger
from local.runtime import LocalSystem, QueueCounts, RunningConsumer, SubscriptionReadings
from producer import KinesisProducer, SqsProducer
from tests.local.conftest import status_cell

pytestmark = pytest.mark.integration

FAILING_KEY = "customer-1"
KEYS = ("customer-0", FAILING_KEY, "customer-2", "customer-3")
EVENTS_PER_KEY = 5
STREAM_SUBSCRIPTION = "demo-events-ordered"
FIFO_SUBSCRIPTION = "demo-orders-fifo"
# The demo registry's retry schedule is made to outlast an outage this long: rounds 2 s apart for 40 s, far more
# than the outage here lasts (until the healthy events are taken, seconds), so no failing record is parked.
SCHEDULE_OUTLASTS_SECONDS = 34.0
GUARD_SECONDS = 120.0  # a guard against hangs, far above what any phase takes
POLL_SECONDS = 0.2


@pytest.fixture
def receiver() -> Iterator[DemoReceiver]:
    server = DemoReceiver(FaultKnobs(outage_keys=frozenset({FAILING_KEY}), outage_seconds=None))
    server.start()
    yield server
    server.stop()


def events_for(source: str) -> list[dict[str, Any]]:
    """EVENTS_PER_KEY events of every key, the keys interleaved as a busy source would carry them."""
    return [
        {"id": f"lane-{source}-{key}-{number}", "customer": key, "number": number}
        for number in range(EVENTS_PER_KEY)
        for key in KEYS
    ]


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_SECONDS
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


def ids_of(events: list[dict[str, Any]], *, failing: bool) -> list[str]:
    return [str(event["id"]) for event in events if (event["customer"] == FAILING_KEY) == failing]


async def test_a_failing_key_waits_in_its_lane_while_the_other_keys_flow(
    receiver: DemoReceiver, tmp_path: Path
) -> None:
    # Given the demo's system on a fresh embedded AWS (moto's state is shared by the servers of a process), and a
    # receiver whose endpoint answers 503 to every event of one key until the test ends the outage
    moto_api_backend.reset()
    registry = write_demo_registry(tmp_path, receiver, outage_seconds=SCHEDULE_OUTLASTS_SECONDS)
    system = LocalSystem(registry, tmp_path / "work", port=0)
    await system.start()
    try:
        consumers: dict[str, RunningConsumer] = {consumer.subscription: consumer for consumer in system.consumers}
        for consumer in system.consumers:
            receiver.register(consumer.subscription, system.secret_of(consumer), ordered=consumer.ordered)
        ledgers: dict[str, SubscriptionLedger] = {
            name: receiver.ledgers[name] for name in (STREAM_SUBSCRIPTION, FIFO_SUBSCRIPTION)
        }
        receiver.start_key_outage()
        # When events of four keys are put on the stream and the FIFO queue
        produced = {STREAM_SUBSCRIPTION: events_for("stream"), FIFO_SUBSCRIPTION: events_for("fifo")}
        aws = system.aws
        stream = KinesisProducer(f"dev-{STREAM}", partition_key_field="customer", client=aws.client("kinesis"))
        queue = SqsProducer(f"dev-{FIFO_QUEUE}", group_id_field="customer", client=aws.client("sqs"))
        await asyncio.to_thread(stream.send, produced[STREAM_SUBSCRIPTION])
        await asyncio.to_thread(queue.send, produced[FIFO_SUBSCRIPTION])

        # Then, while the outage lasts, every healthy event is taken and the failing key is held in each lane
        def healthy_taken_and_failing_held() -> bool:
            return all(
                set(ids_of(produced[name], failing=False)) <= ledgers[name].accepted.keys()
                and system.held_keys(consumers[name]) == 1
                for name in ledgers
            )

        await until(healthy_taken_and_failing_held, "the healthy keys delivered and the failing key held")
        taken_during_outage = {name: list(ledger.accepted) for name, ledger in ledgers.items()}
        # And `dispatcher local` shows the held key and the age of the oldest record in each lane
        for name in ledgers:
            assert await status_cell(system, consumers[name], "held keys") == "1"
            assert float((await status_cell(system, consumers[name], "oldest in lane")).removesuffix(" s")) >= 0
        # When the endpoint takes the failing key again
        receiver.end_key_outage()
        await until(
            lambda: all(
                ledgers[name].accepted.keys() >= {str(event["id"]) for event in produced[name]} for name in ledgers
            ),
            "every event delivered",
        )
        lanes_empty = SubscriptionReadings(QueueCounts(visible=0, held=0), held_keys=0, oldest_in_lane_seconds=0.0)
        await until(
            lambda: all(system.readings()[name] == lanes_empty for name in ledgers),
            "the failing key released and its lane empty",
        )
        # And `dispatcher local` shows no key held and an empty lane
        for name in ledgers:
            cells = [await status_cell(system, consumers[name], header) for header in ("held keys", "oldest in lane")]
            assert cells == ["0", "0.0 s"]
    finally:
        await system.stop()

    for name, ledger in ledgers.items():
        # Then the outage refused the failing key, and while it lasted every other key's events were taken
        assert ledger.outage_refusals > 0
        assert set(taken_during_outage[name]) == set(ids_of(produced[name], failing=False))
        # And no event was POSTed twice: the healthy keys were not re-sent while the failing key waited
        assert ledger.duplicates == 0
        # And the failing key's events came after every other key's, in the order they were produced
        accepted = list(ledger.accepted)
        assert accepted[len(taken_during_outage[name]) :] == ids_of(produced[name], failing=True)
        # And nothing was lost or stale
        assert sorted(accepted) == sorted(str(event["id"]) for event in produced[name])
        assert ledger.out_of_order == 0
