from __future__ import annotations

import time
from typing import Any

import pytest

from dispatcher.config import SubscriptionConfig
from dispatcher.delivery import DeliveryTuning, Dispatcher
from dispatcher.lane_rounds import LaneReport
from dispatcher.outcomes import BatchReport
from dispatcher.records import parse_event
from dispatcher.retry_lane import LanePorts
from tests.fakes import (
    LANE_QUEUE,
    FakeClock,
    FakeDeliveredIds,
    FakeEndpoint,
    FakeParkedRecords,
    FakeSecret,
    InMemoryHeldKeys,
    RecordingRetryLane,
)

# No real sleeping in unit tests: backoff waits are recorded instead.
FAST = DeliveryTuning(backoff_base_seconds=0.0, backoff_cap_seconds=0.0, finish_reserve_seconds=0.0)


def subscription(**overrides: Any) -> SubscriptionConfig:
    fields: dict[str, Any] = {
        "name": "orders-to-ledger",
        "endpoint": "https://ledger.example.com/hooks",
        "signing_secret": "payments/ledger-hook",
        "max_attempts": 3,
    }
    return SubscriptionConfig.model_validate(fields | overrides)


class Harness:
    """A Dispatcher wired to in-memory fakes, with the sleeps it asked for recorded; with `lane`, also to a
    retry lane and held keys in memory, on a wall clock that moves only when the test moves it."""

    def __init__(self, config: SubscriptionConfig, tuning: DeliveryTuning = FAST, *, lane: bool = False) -> None:
        self.endpoint = FakeEndpoint()
        self.delivered_ids = FakeDeliveredIds()
        self.parked_records = FakeParkedRecords()
        self.secret = FakeSecret()
        self.sleeps: list[float] = []
        self.clock = FakeClock(float(int(time.time())))  # near now: receivers check signature timestamps
        self.lane = RecordingRetryLane(self.clock)
        self.held_keys = InMemoryHeldKeys()
        self.dispatcher = Dispatcher(
            config,
            self.endpoint,
            self.delivered_ids,
            self.parked_records,
            self.secret,
            tuning,
            wall_clock=self.clock,
            sleep=self._sleep,
            lane=LanePorts(LANE_QUEUE, self.lane, self.held_keys) if lane else None,
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def dispatch(self, event: dict[str, Any], remaining_seconds: float = 60.0) -> BatchReport:
        return await self.dispatcher.dispatch(parse_event(event), remaining_seconds, event["Records"])

    async def lane_round(self, remaining_seconds: float = 60.0) -> LaneReport | None:
        """One invocation by the lane's mapping, settled as the mapping does; None when nothing is visible."""
        lane_event = self.lane.receive_event()
        if lane_event is None:
            return None
        assert self.dispatcher.is_lane_event(lane_event)
        report = await self.dispatcher.run_lane_round(lane_event, remaining_seconds)
        self.lane.settle(lane_event, report.response())
        return report


@pytest.fixture
def harness() -> Harness:
    return Harness(subscription())


def failed_ids(report: BatchReport) -> list[str]:
    return [failure["itemIdentifier"] for failure in report.response()["batchItemFailures"]]
