"""How long one batch can take, and the function timeout that follows from it."""

from __future__ import annotations

import math

from dispatcher.config import SubscriptionConfig
from infra.registry import limits

CONCURRENCY_BOUND_FORMULA = "ceil(batch_size / max_in_flight) x max_attempts x request_timeout_seconds"
RATE_BOUND_FORMULA = "batch_size x max_attempts / rate_limit_per_second"


def batch_time_estimate(batch_size: int, delivery: SubscriptionConfig) -> tuple[float, str]:
    """Worst case for one batch whose records spread over partition keys, in seconds, and its formula.

    Every attempt times out: records go out `max_in_flight` at a time, so a batch takes
    ceil(batch_size / max_in_flight) rounds of up to `max_attempts` attempts of `request_timeout_seconds`.
    A rate limit can make it slower still.
    """
    rounds = math.ceil(batch_size / delivery.max_in_flight)
    concurrency_bound = rounds * delivery.max_attempts * delivery.request_timeout_seconds
    if delivery.rate_limit_per_second is not None:
        rate_bound = batch_size * delivery.max_attempts / delivery.rate_limit_per_second
        if rate_bound > concurrency_bound:
            return rate_bound, RATE_BOUND_FORMULA
    return concurrency_bound, CONCURRENCY_BOUND_FORMULA


def required_timeout_seconds(batch_size: int, delivery: SubscriptionConfig) -> int:
    """The shortest function timeout that lets a worst-case batch finish and still park what failed."""
    estimate, _ = batch_time_estimate(batch_size, delivery)
    return math.ceil(estimate) + limits.FUNCTION_SHUTDOWN_RESERVE_SECONDS
