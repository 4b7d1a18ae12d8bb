"""The retry lane's promise, as a property: whatever interleaving of per-key outages and recoveries, lane
refusals, new records, source batches (Kinesis re-sending from the lowest reported record) and lane rounds
over time, every record is delivered or parked, and the records of a key are delivered in sequence order."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dispatcher import retry_lane
from dispatcher.ports import HttpResponse
from tests.events import event, kinesis_record
from tests.unit.conftest import Harness, subscription

KEYS = ("a", "b", "c", "d")
SCHEDULE = (10, 20, 40)
SOURCE_BATCH_SIZE = 4
DRAIN_STEPS = 1_000  # lane rounds and waits allowed to empty the lane once every key is up


@dataclass
class KeyOutageEndpoint:
    """Answers 503 to the records of the keys that are down, 200 otherwise; remembers each 2xx in order."""

    down: set[str] = field(default_factory=set)
    accepted: list[tuple[str, int]] = field(default_factory=list)  # (key, stream position)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_seconds: float) -> HttpResponse:
        key = headers["dispatch-partition-key"]
        if key in self.down:
            return HttpResponse(503)
        self.accepted.append((key, int(headers["webhook-id"].rsplit("-", 1)[1])))
        return HttpResponse(200)

    async def close(self) -> None:
        pass


Step = tuple[str, Any]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("produce"), st.lists(st.sampled_from(KEYS), min_size=1, max_size=2 * SOURCE_BATCH_SIZE)),
        st.tuples(st.just("down"), st.sampled_from(KEYS)),
        st.tuples(st.just("up"), st.sampled_from(KEYS)),
        st.tuples(st.just("lane refuses"), st.sampled_from(KEYS)),
        st.tuples(st.just("lane takes"), st.sampled_from(KEYS)),
        st.tuples(st.just("source batch"), st.none()),
        st.tuples(st.just("lane round"), st.none()),
        st.tuples(st.just("wait"), st.sampled_from((5, 30, 100))),
    ),
    min_size=10,
    max_size=40,
)


class Simulation:
    def __init__(self) -> None:
        self.harness = Harness(subscription(retry_schedule_seconds=SCHEDULE, max_attempts=2), lane=True)
        self.endpoint = KeyOutageEndpoint()
        self.harness.dispatcher.sender = self.endpoint
        self.stream: list[dict[str, Any]] = []
        self.checkpoint = 0  # the position Lambda sends the shard's next batch from

    async def step(self, action: str, argument: Any) -> None:
        if action == "produce":
            for key in argument:
                position = len(self.stream)
                self.stream.append(kinesis_record(position, {"id": f"evt-{position}"}, key))
        elif action == "down":
            self.endpoint.down.add(argument)
        elif action == "up":
            self.endpoint.down.discard(argument)
        elif action == "lane refuses":
            self.harness.lane.refuse_groups.add(retry_lane.group_id(argument, ""))
        elif action == "lane takes":
            self.harness.lane.refuse_groups.discard(retry_lane.group_id(argument, ""))
        elif action == "source batch":
            await self.source_batch()
        elif action == "lane round":
            await self.harness.lane_round()
        else:  # time passes, and the lane's mapping polls
            self.harness.clock.advance(argument)
            await self.harness.lane_round()

    async def source_batch(self) -> None:
        """As Lambda's Kinesis mapping: a batch from the checkpoint; after a partial failure, the checkpoint
        moves to the lowest reported record, otherwise past the batch."""
        records = self.stream[self.checkpoint : self.checkpoint + SOURCE_BATCH_SIZE]
        if not records:
            return
        report = await self.harness.dispatch(event(*records))
        reported = {failure["itemIdentifier"] for failure in report.response()["batchItemFailures"]}
        positions = [n for n, r in enumerate(records, self.checkpoint) if r["kinesis"]["sequenceNumber"] in reported]
        self.checkpoint = min(positions) if positions else self.checkpoint + len(records)

    async def drain(self) -> None:
        """Every key up and the lane taking everything: the source runs dry, then the lane, over time."""
        self.endpoint.down.clear()
        self.harness.lane.refuse_groups.clear()
        for _ in range(DRAIN_STEPS):
            if self.checkpoint < len(self.stream):
                await self.source_batch()
            elif await self.harness.lane_round() is None:
                next_visible = self.harness.lane.next_visible_at()
                if next_visible is None:
                    return
                self.harness.clock.now = next_visible
        raise AssertionError("the source and the lane did not drain")


async def simulate(down: set[str], actions: list[Step]) -> Simulation:
    simulation = Simulation()
    simulation.endpoint.down |= down
    for action, argument in actions:
        await simulation.step(action, argument)
    await simulation.drain()
    return simulation


@given(st.sets(st.sampled_from(KEYS)), steps)
def test_every_record_is_delivered_or_parked_and_each_key_in_order(down: set[str], actions: list[Step]) -> None:
    simulation = asyncio.run(simulate(down, actions))
    parked = {int(message["webhook_id"].rsplit("-", 1)[1]) for message in simulation.harness.parked_records.messages}
    delivered = [position for _, position in simulation.endpoint.accepted]
    # Nothing lost: each record reached the endpoint or was set aside with its payload
    assert set(delivered) | parked == set(range(len(simulation.stream)))
    # Order per key: the first deliveries of a key's records come in stream order (parked ones leave a gap)
    first_deliveries = list(dict.fromkeys(simulation.endpoint.accepted))
    for key in KEYS:
        positions = [position for delivered_key, position in first_deliveries if delivered_key == key]
        assert positions == sorted(positions), f"key {key!r} delivered out of order: {positions}"
    # and nothing is left behind: the lane is empty and no key is held
    assert len(simulation.harness.lane) == 0
    assert simulation.harness.held_keys.sets == {}
