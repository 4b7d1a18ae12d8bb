"""The local runtime reads each function's environment with the function's own model, as the function does at
its cold start: a subscription the function would refuse is refused, naming the field at fault."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from dispatcher.config import (
    DLQ_URL_ENV,
    IDEMPOTENCY_TABLE_ENV,
    PAYLOAD_BUCKET_ENV,
    RETRY_LANE_URL_ENV,
    SUBSCRIPTION_ENV,
    ConfigurationError,
)
from local.runtime import RunningConsumer
from local.spec import ConsumerSpec, ConsumerStats, KinesisMappingSpec
from tests.local.conftest import function_spec

STREAM = KinesisMappingSpec(
    stream_name="dev-orders", stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/dev-orders"
)
PARKED_QUEUE_URL = "http://127.0.0.1:4566/123456789012/dev-orders-parked"
RETRY_LANE_URL = "http://127.0.0.1:4566/123456789012/orders-retry-lane.fifo"


def consumer_with(subscription: dict[str, Any]) -> RunningConsumer:
    environment = {
        SUBSCRIPTION_ENV: json.dumps(subscription),
        IDEMPOTENCY_TABLE_ENV: "dev-delivered",
        DLQ_URL_ENV: PARKED_QUEUE_URL,
        PAYLOAD_BUCKET_ENV: "dev-parked-payloads",
        RETRY_LANE_URL_ENV: RETRY_LANE_URL,
    }
    spec = ConsumerSpec(function_spec(environment=environment), STREAM)
    return RunningConsumer(spec, ConsumerStats(), runner=cast(Any, None), task=cast(Any, None))


def test_a_stream_subscription_is_ordered_unless_it_says_none_and_names_its_secret_and_parked_queue() -> None:
    # Given two stream subscriptions, one with the default ordering and one unordered
    ordered = consumer_with({"name": "orders", "endpoint": "https://ledger.example.com/h"})
    unordered = consumer_with({"name": "orders", "endpoint": "https://ledger.example.com/h", "ordering": "none"})
    # Then the runtime reads them as the function does: defaults included
    assert (ordered.ordered, unordered.ordered) == (True, False)
    assert ordered.settings.subscription.signing_secret == "callback-dispatcher/orders"
    assert ordered.parked_records_url == PARKED_QUEUE_URL


def test_a_subscription_the_function_would_refuse_is_refused_naming_the_field() -> None:
    # Given a subscription whose ordering is not one the function knows
    consumer = consumer_with({"name": "orders", "endpoint": "https://ledger.example.com/h", "ordering": "by-customer"})
    # When the runtime asks whether it is ordered, Then the error names the variable and the field
    with pytest.raises(ConfigurationError, match=rf"{SUBSCRIPTION_ENV}\.ordering"):
        _ = consumer.ordered
