"""How many records per second a consumer delivers: the model of CreditorWatch's article on Lambda at scale
("5 lessons I've learned after 2 billion lambda executions", the lesson "Control your executions").

    records/s = concurrency x batch_size / (invoke_overhead + batch_delivery_time)
    batch_delivery_time = ceil(batch_size / max_in_flight) x record_latency

Records go out `max_in_flight` at a time, so a batch takes ceil(batch_size / max_in_flight) rounds of
one request each. That is the shape of `infra.registry.timing`'s worst case too, which puts
max_attempts x request_timeout_seconds where this model has the typical per-record latency.

The model assumes a batch's records spread over partition keys; records sharing a key (ordered
delivery) go out one after another, which a batch of a single hot key turns into max_in_flight 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

# The article's example figures, and sensible starting points until you measure your own: a warm Lambda
# invocation through an event source mapping, and one webhook round trip.
DEFAULT_INVOKE_OVERHEAD_SECONDS = 0.3  # s per invocation
DEFAULT_RECORD_LATENCY_SECONDS = 0.2  # s per record delivered
SECONDS_PER_MINUTE = 60
# Rates computed through floating point division are compared with this relative slack, so a consumer
# that delivers exactly the incoming rate counts as keeping up.
RATE_TOLERANCE = 1e-9

Setting = Literal["batch_size", "concurrency", "max_in_flight"]


def batch_delivery_seconds(batch_size: int, max_in_flight: int, record_latency_seconds: float) -> float:
    """Time to deliver one batch when records go out `max_in_flight` at a time."""
    return math.ceil(batch_size / max_in_flight) * record_latency_seconds


@dataclass(frozen=True, slots=True)
class Consumer:
    """One subscription's consumer as the model sees it."""

    batch_size: int  # records per invocation
    concurrency: int  # invocations at once
    max_in_flight: int  # requests at once within one invocation
    invoke_overhead_seconds: float = DEFAULT_INVOKE_OVERHEAD_SECONDS
    record_latency_seconds: float = DEFAULT_RECORD_LATENCY_SECONDS
    # Enforced inside each invocation (a token bucket per invocation), so the endpoint sees up to
    # concurrency times this. None: no limit.
    rate_limit_per_second: float | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "concurrency", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.invoke_overhead_seconds < 0:
            raise ValueError(f"invoke overhead must not be negative, got {self.invoke_overhead_seconds}")
        if self.record_latency_seconds <= 0:
            raise ValueError(f"record latency must be above 0 s, got {self.record_latency_seconds}")
        if self.rate_limit_per_second is not None and self.rate_limit_per_second <= 0:
            raise ValueError(f"rate limit must be above 0 per second, got {self.rate_limit_per_second}")

    @property
    def batch_delivery_seconds(self) -> float:
        return batch_delivery_seconds(self.batch_size, self.max_in_flight, self.record_latency_seconds)

    @property
    def invocation_seconds(self) -> float:
        """One invocation from start to finish: the overhead, then the batch."""
        return self.invoke_overhead_seconds + self.batch_delivery_seconds

    @property
    def records_per_second(self) -> float:
        """The article's formula, before any rate limit."""
        return self.concurrency * self.batch_size / self.invocation_seconds

    @property
    def rate_ceiling_per_second(self) -> float | None:
        """The most the rate limit lets through: every concurrent invocation at its own limit."""
        if self.rate_limit_per_second is None:
            return None
        return self.concurrency * self.rate_limit_per_second

    @property
    def sustained_records_per_second(self) -> float:
        """What the consumer delivers over time: the formula, capped by the rate limit's ceiling."""
        ceiling = self.rate_ceiling_per_second
        return self.records_per_second if ceiling is None else min(self.records_per_second, ceiling)

    @property
    def rate_limited(self) -> bool:
        ceiling = self.rate_ceiling_per_second
        return ceiling is not None and ceiling < self.records_per_second

    def with_setting(self, setting: Setting, value: int) -> Consumer:
        return dataclasses.replace(self, **{setting: value})


@dataclass(frozen=True, slots=True)
class SettingBounds:
    """The largest value each setting may take for this consumer (AWS limits, the function's timeout)."""

    batch_size: int
    concurrency: int
    max_in_flight: int

    def upper(self, setting: Setting, consumer: Consumer) -> int:
        if setting == "max_in_flight":
            # More request slots than records in the batch are never used.
            return min(self.max_in_flight, consumer.batch_size)
        bound: int = getattr(self, setting)
        return bound


@dataclass(frozen=True, slots=True)
class Adjustment:
    """The smallest value of one setting, the others unchanged, that keeps up; None when none within bounds."""

    setting: Setting
    current: int
    needed: int | None
    bound: int
    records_per_second: float | None  # sustained throughput with `needed`


@dataclass(frozen=True, slots=True)
class Forecast:
    """What an incoming rate does to the backlog, and so to IteratorAge (or the age of the oldest message)."""

    consumer: Consumer
    incoming_per_second: float
    adjustments: tuple[Adjustment, ...]  # empty when the consumer keeps up

    @property
    def throughput_per_second(self) -> float:
        return self.consumer.sustained_records_per_second

    @property
    def keeps_up(self) -> bool:
        return _at_least(self.throughput_per_second, self.incoming_per_second)

    @property
    def backlog_growth_per_second(self) -> float:
        """Records added to the backlog each second (0 when the consumer keeps up)."""
        return 0.0 if self.keeps_up else self.incoming_per_second - self.throughput_per_second

    @property
    def backlog_seconds_added_per_minute(self) -> float:
        """How much older the oldest waiting record gets each minute: a minute's extra records, in the
        seconds the consumer needs to deliver them."""
        return self.backlog_growth_per_second * SECONDS_PER_MINUTE / self.throughput_per_second

    @property
    def utilisation(self) -> float:
        """Incoming rate as a fraction of what the consumer sustains."""
        return self.incoming_per_second / self.throughput_per_second

    @property
    def rate_limit_too_low(self) -> bool:
        """The rate limit's ceiling is below the incoming rate: batch size and max_in_flight cannot help,
        only more concurrency or a higher limit."""
        ceiling = self.consumer.rate_ceiling_per_second
        return ceiling is not None and not _at_least(ceiling, self.incoming_per_second)


def forecast(consumer: Consumer, incoming_per_second: float, bounds: SettingBounds) -> Forecast:
    """Whether `consumer` keeps up with `incoming_per_second` and, if not, which single change would."""
    if incoming_per_second < 0:
        raise ValueError(f"incoming rate must not be negative, got {incoming_per_second}")
    plain = Forecast(consumer, incoming_per_second, ())
    if plain.keeps_up:
        return plain
    settings: tuple[Setting, ...] = ("batch_size", "concurrency", "max_in_flight")
    adjustments = tuple(_smallest_that_keeps_up(consumer, setting, incoming_per_second, bounds) for setting in settings)
    return Forecast(consumer, incoming_per_second, adjustments)


def _smallest_that_keeps_up(
    consumer: Consumer, setting: Setting, incoming_per_second: float, bounds: SettingBounds
) -> Adjustment:
    current: int = getattr(consumer, setting)
    bound = bounds.upper(setting, consumer)
    # A scan, not a formula: throughput is not monotonic in batch_size (one record past a multiple of
    # max_in_flight costs a whole extra round), and a few thousand evaluations are instant.
    # Smaller values are scanned too: a batch of 16 with max_in_flight 16 beats a batch of 17.
    for value in range(1, bound + 1):
        adjusted = consumer.with_setting(setting, value)
        if _at_least(adjusted.sustained_records_per_second, incoming_per_second):
            return Adjustment(setting, current, value, bound, adjusted.sustained_records_per_second)
    return Adjustment(setting, current, None, bound, None)


def _at_least(rate: float, target: float) -> bool:
    return rate >= target * (1 - RATE_TOLERANCE)
