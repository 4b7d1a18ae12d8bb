"""The consumer a registry subscription describes, or the one the command-line flags alone describe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import annotated_types
from pydantic import BaseModel

from capacity.cost import SourceKind
from capacity.model import DEFAULT_INVOKE_OVERHEAD_SECONDS, DEFAULT_RECORD_LATENCY_SECONDS, Consumer, SettingBounds
from dispatcher.config import SubscriptionConfig
from infra.registry import RegisteredSubscription, SourcesFile, limits
from infra.registry.model import DEFAULT_STREAM_BATCH_SIZE
from infra.registry.timing import required_timeout_seconds

AD_HOC_CONSUMER_NAME = "(flags)"

_ValueT = TypeVar("_ValueT")


def _field_default(model: type[BaseModel], field: str) -> int:
    default = model.model_fields[field].default
    if not isinstance(default, int):
        raise TypeError(f"{model.__name__}.{field} has no integer default")
    return default


def _field_upper_bound(model: type[BaseModel], field: str) -> int:
    bounds = [item.le for item in model.model_fields[field].metadata if isinstance(item, annotated_types.Le)]
    if not bounds or not isinstance(bounds[0], int):
        raise TypeError(f"{model.__name__}.{field} declares no integer maximum")
    return bounds[0]


# One definition each: the registry's own defaults and ranges, so the planner cannot drift from them.
DEFAULT_CONCURRENCY = _field_default(RegisteredSubscription, "reserved_concurrency")
DEFAULT_MAX_IN_FLIGHT = _field_default(SubscriptionConfig, "max_in_flight")
MAX_IN_FLIGHT_MAX = _field_upper_bound(SubscriptionConfig, "max_in_flight")


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line values; None keeps the registry's (or, without a subscription, the default) value."""

    batch_size: int | None = None
    concurrency: int | None = None
    max_in_flight: int | None = None
    rate_limit_per_second: float | None = None
    invoke_overhead_seconds: float = DEFAULT_INVOKE_OVERHEAD_SECONDS
    record_latency_seconds: float = DEFAULT_RECORD_LATENCY_SECONDS


@dataclass(frozen=True, slots=True)
class PlannedConsumer:
    name: str
    consumer: Consumer
    bounds: SettingBounds
    batch_size_bound_reason: str  # why batch_size stops at bounds.batch_size
    source: SourceKind = SourceKind.KINESIS
    notes: tuple[str, ...] = ()  # what the reader should know about how the numbers were derived


def ad_hoc_consumer(overrides: Overrides) -> PlannedConsumer:
    """A consumer described by the flags alone; unset ones take the registry's defaults for a stream."""
    consumer = Consumer(
        batch_size=_pick(overrides.batch_size, DEFAULT_STREAM_BATCH_SIZE),
        concurrency=_pick(overrides.concurrency, DEFAULT_CONCURRENCY),
        max_in_flight=_pick(overrides.max_in_flight, DEFAULT_MAX_IN_FLIGHT),
        invoke_overhead_seconds=overrides.invoke_overhead_seconds,
        record_latency_seconds=overrides.record_latency_seconds,
        rate_limit_per_second=overrides.rate_limit_per_second,
    )
    bounds = SettingBounds(limits.KINESIS_BATCH_SIZE_MAX, limits.RESERVED_CONCURRENCY_MAX, MAX_IN_FLIGHT_MAX)
    return PlannedConsumer(AD_HOC_CONSUMER_NAME, consumer, bounds, "Kinesis's maximum batch size")


def subscription_consumer(
    subscription: RegisteredSubscription, sources: SourcesFile, overrides: Overrides
) -> PlannedConsumer:
    """The registry's values with the flags on top; a provisioned stream caps concurrency at its shards."""
    notes: list[str] = []
    max_in_flight = _pick(overrides.max_in_flight, subscription.max_in_flight)
    rate_limit = _pick(overrides.rate_limit_per_second, subscription.rate_limit_per_second)
    delivery = subscription.model_copy(update={"max_in_flight": max_in_flight, "rate_limit_per_second": rate_limit})
    concurrency = _pick(overrides.concurrency, subscription.reserved_concurrency)
    stream = sources.stream(subscription.source_name) if subscription.is_stream else None
    if stream is not None and stream.shards is not None:
        # Lambda runs at most one batch per shard per parallelization factor, whatever the reservation.
        shard_cap = stream.shards * subscription.parallelization_factor
        if shard_cap < concurrency:
            notes.append(
                f"concurrency {shard_cap}, not {concurrency}: stream {stream.name} has {stream.shards} shards "
                f"x parallelization_factor {subscription.parallelization_factor}"
            )
            concurrency = shard_cap
    consumer = Consumer(
        batch_size=_pick(overrides.batch_size, subscription.batch_size),
        concurrency=concurrency,
        max_in_flight=max_in_flight,
        invoke_overhead_seconds=overrides.invoke_overhead_seconds,
        record_latency_seconds=overrides.record_latency_seconds,
        rate_limit_per_second=rate_limit,
    )
    source_batch_max = _source_batch_size_max(subscription, sources)
    largest_batch = _largest_batch_within_timeout(source_batch_max, delivery)
    batch_size_bound_reason = (
        f"a larger worst-case batch needs a function timeout beyond Lambda's {limits.FUNCTION_MAX_TIMEOUT_SECONDS} s"
        if largest_batch < source_batch_max
        else "the event source mapping's maximum"
    )
    concurrency_max = limits.RESERVED_CONCURRENCY_MAX if subscription.is_stream else limits.SQS_MAXIMUM_CONCURRENCY_MAX
    if stream is not None and stream.shards is not None:
        concurrency_max = min(concurrency_max, stream.shards * limits.PARALLELIZATION_FACTOR_MAX)
    bounds = SettingBounds(largest_batch, concurrency_max, MAX_IN_FLIGHT_MAX)
    return PlannedConsumer(
        subscription.name, consumer, bounds, batch_size_bound_reason, _source_kind(subscription, sources), tuple(notes)
    )


def _pick(override: _ValueT | None, value: _ValueT) -> _ValueT:
    return value if override is None else override


def _source_kind(subscription: RegisteredSubscription, sources: SourcesFile) -> SourceKind:
    if subscription.is_stream:
        return SourceKind.KINESIS
    queue = sources.queue(subscription.source_name)
    return SourceKind.SQS_FIFO if queue is not None and queue.is_fifo else SourceKind.SQS_STANDARD


def _source_batch_size_max(subscription: RegisteredSubscription, sources: SourcesFile) -> int:
    if subscription.is_stream:
        return limits.KINESIS_BATCH_SIZE_MAX
    queue = sources.queue(subscription.source_name)
    return limits.SQS_FIFO_BATCH_SIZE_MAX if queue is not None and queue.is_fifo else limits.SQS_BATCH_SIZE_MAX


def _largest_batch_within_timeout(source_max: int, delivery: SubscriptionConfig) -> int:
    """The largest batch whose worst case (infra.registry.timing) still fits Lambda's longest timeout."""
    fitting = [
        batch_size
        for batch_size in range(1, source_max + 1)
        if required_timeout_seconds(batch_size, delivery) <= limits.FUNCTION_MAX_TIMEOUT_SECONDS
    ]
    return max(fitting, default=1)
