"""The batches and the dispatcher wiring the figures share."""

from __future__ import annotations

import base64
import time
from typing import Any

from dispatcher.adapters.http import AiohttpSender
from dispatcher.config import SubscriptionConfig
from dispatcher.delivery import Dispatcher
from dispatcher.guard import AddressPolicy
from dispatcher.outcomes import DeliveryStats
from dispatcher.ports import DeliveredIds, HttpSender
from dispatcher.records import Batch, parse_event
from tests.events import event, kinesis_record
from tests.fakes import FakeDeliveredIds, FakeParkedRecords, FakeSecret

MAX_IN_FLIGHT = 32
# Far more than any run needs, so no deadline ever cuts a delivery short.
REMAINING_SECONDS = 900.0
PARTITION_KEYS = 64


def subscription(endpoint: str, *, max_attempts: int = 5) -> SubscriptionConfig:
    """ordering none, 32 in flight; loopback allowed (the SSRF guard refuses it otherwise)."""
    return SubscriptionConfig.model_validate(
        {
            "name": "bench",
            "endpoint": endpoint,
            "ordering": "none",
            "max_in_flight": MAX_IN_FLIGHT,
            "request_timeout_seconds": 10.0,
            "max_attempts": max_attempts,
            "signing_secret": "bench/signing-secret",
            "allow_http": True,
            "allow_private_cidrs": ["127.0.0.0/8"],
        }
    )


def payload(position: int) -> dict[str, Any]:
    """A typical small JSON event (about 200 bytes) carrying its own id."""
    return {
        "id": f"evt_{position:08d}",
        "type": "order.updated",
        "created_at": 1_700_000_000 + position,
        "data": {"order_id": f"ord_{position:08d}", "status": "shipped", "amount": 1999, "currency": "EUR"},
    }


def kinesis_event(records: int, first: int = 0) -> dict[str, Any]:
    """`records` Kinesis records at positions first, first + 1, ...: each run takes fresh positions, so no
    record is one the delivered ids already list."""
    return event(
        *(
            kinesis_record(i, payload(i), partition_key=f"pk-{i % PARTITION_KEYS}")
            for i in range(first, first + records)
        )
    )


def kinesis_batch(records: int, first: int = 0) -> Batch:
    return parse_event(kinesis_event(records, first))


def bodies(batch: Batch) -> list[bytes]:
    return [record.payload for record in batch.records]


def event_bodies(lambda_event: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(raw["kinesis"]["data"]) for raw in lambda_event["Records"]]


def contract_headers(config: SubscriptionConfig, batch: Batch) -> list[dict[str, str]]:
    """The headers the dispatcher sends with each record's first attempt, signed, made before any clock runs:
    what a bare client pays for the endpoint contract alone (they are the dispatcher's own, not a copy)."""
    poster = production_dispatcher(config).poster(DeliveryStats(), deadline=time.monotonic() + REMAINING_SECONDS)
    headers = []
    for record in batch.records:
        attempt = poster.attempt(record)
        attempt.made = 1
        headers.append(dict(poster.signed_headers(attempt)))
    return headers


def production_dispatcher(config: SubscriptionConfig, delivered_ids: DeliveredIds | None = None) -> Dispatcher:
    """As `dispatcher.handler.build_dispatcher` wires it: the real AiohttpSender with the SSRF guard,
    with in-memory parking and secret (and store, unless one is given)."""
    sender: HttpSender = AiohttpSender(AddressPolicy(config.allow_private_cidrs), config.max_in_flight)
    return Dispatcher(
        config,
        sender=sender,
        delivered_ids=delivered_ids if delivered_ids is not None else FakeDeliveredIds(),
        parked_records=FakeParkedRecords(),
        secret=FakeSecret(),
    )
