"""The consumer a registry subscription describes, flags on top, and the chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from capacity import Overrides, ad_hoc_consumer, subscription_consumer
from capacity.chart import draw_throughput_chart
from infra.registry import RegisteredSubscription, Registry, load_registry

SHIPPED_REGISTRY = Path(__file__).resolve().parents[2] / "registry"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(SHIPPED_REGISTRY, "prod").registry


def named(registry: Registry, name: str) -> RegisteredSubscription:
    return next(subscription for _, subscription in registry.registrations() if subscription.name == name)


def test_a_subscription_brings_its_batch_concurrency_in_flight_and_rate_limit(registry: Registry) -> None:
    subscription = named(registry, "order-created-to-ledger")

    planned = subscription_consumer(subscription, registry.sources, Overrides())

    assert (planned.consumer.batch_size, planned.consumer.concurrency, planned.consumer.max_in_flight) == (100, 5, 16)
    assert planned.consumer.rate_limit_per_second == 50
    assert planned.name == "order-created-to-ledger"


def test_flags_override_the_registry(registry: Registry) -> None:
    subscription = named(registry, "order-created-to-ledger")
    overrides = Overrides(batch_size=10, concurrency=2, max_in_flight=1, rate_limit_per_second=500)

    consumer = subscription_consumer(subscription, registry.sources, overrides).consumer

    assert (consumer.batch_size, consumer.concurrency, consumer.max_in_flight) == (10, 2, 1)
    assert consumer.rate_limit_per_second == 500


def test_a_provisioned_stream_caps_concurrency_at_its_shards(registry: Registry) -> None:
    # Given stock-to-storefront on the 2-shard inventory stream (parallelization factor 1), asked for 8
    subscription = named(registry, "stock-to-storefront")

    planned = subscription_consumer(subscription, registry.sources, Overrides(concurrency=8))

    # Then Lambda would run two batches at once, and the plan says why
    assert planned.consumer.concurrency == 2
    assert planned.notes == ("concurrency 2, not 8: stream inventory has 2 shards x parallelization_factor 1",)


def test_batch_size_proposals_stop_where_the_function_timeout_would_pass_lambdas_maximum(
    registry: Registry,
) -> None:
    # Given orders-to-warehouse: 32 in flight, 5 attempts of 8 s; a worst-case round takes 40 s
    subscription = named(registry, "orders-to-warehouse")

    planned = subscription_consumer(subscription, registry.sources, Overrides())

    # Then at most 22 rounds (880 s + 3 s reserve <= 900 s) of 32 records fit
    assert planned.bounds.batch_size == 22 * 32
    assert "beyond Lambda's 900 s" in planned.batch_size_bound_reason


def test_a_fifo_queue_caps_the_batch_at_ten(registry: Registry) -> None:
    subscription = named(registry, "refunds-to-psp")

    assert subscription_consumer(subscription, registry.sources, Overrides()).bounds.batch_size == 10


def test_without_a_subscription_the_flags_alone_describe_the_consumer() -> None:
    consumer = ad_hoc_consumer(Overrides(batch_size=10, concurrency=5, max_in_flight=1)).consumer

    assert f"{consumer.records_per_second:.2f}" == "21.74"


def test_unset_flags_take_the_registry_defaults() -> None:
    consumer = ad_hoc_consumer(Overrides()).consumer

    assert (consumer.batch_size, consumer.concurrency, consumer.max_in_flight) == (100, 5, 16)


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    consumer = ad_hoc_consumer(Overrides(batch_size=10, concurrency=5, max_in_flight=1)).consumer

    path = draw_throughput_chart(consumer, tmp_path / "throughput.png", max_batch_size=10_000, incoming_per_second=40)

    assert path.read_bytes().startswith(PNG_SIGNATURE)
