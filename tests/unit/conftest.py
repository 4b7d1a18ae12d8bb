from __future__ import annotations

from typing import Any

import pytest

from dispatcher.config import SubscriptionConfig
from dispatcher.delivery import DeliveryTuning, Dispatcher
from dispatcher.outcomes import BatchReport
from dispatcher.records import parse_event
from tests.fakes import FakeDeliveredIds, FakeEndpoint, FakeParkedRecords, FakeSecret

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
    """A Dispatcher wired to in-memory fakes, with the sleeps it asked for recorded."""

    def __init__(self, config: SubscriptionConfig, tuning: DeliveryTuning = FAST) -> None:
        self.endpoint = FakeEndpoint()
        self.delivered_ids = FakeDeliveredIds()
        self.parked_records = FakeParkedRecords()
        self.secret = FakeSecret()
        self.sleeps: list[float] = []
        self.dispatcher = Dispatcher(
            config, self.endpoint, self.delivered_ids, self.parked_records, self.secret, tuning, sleep=self._sleep
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def dispatch(self, event: dict[str, Any], remaining_seconds: float = 60.0) -> BatchReport:
        return await self.dispatcher.dispatch(parse_event(event), remaining_seconds)


@pytest.fixture
def harness() -> Harness:
    return Harness(subscription())


def failed_ids(report: BatchReport) -> list[str]:
    return [failure["itemIdentifier"] for failure in report.response()["batchItemFailures"]]
