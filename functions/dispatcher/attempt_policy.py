"""When a record is attempted again after a transient failure: full-jitter exponential backoff, or the
endpoint's Retry-After, within the subscription's max_attempts and never past the invocation's deadline."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from datetime import UTC


@dataclass(frozen=True, slots=True)
class AttemptPolicy:
    max_attempts: int
    backoff_base_seconds: float  # full jitter: wait uniform(0, base * 2**(attempts_made - 1))
    backoff_cap_seconds: float
    min_attempt_seconds: float  # an attempt with less time left than this is not started

    def wait_before_next(self, attempts_made: int, retry_after: float | None, seconds_left: float) -> float | None:
        """The wait before attempt `attempts_made + 1`, or None when there is none: the attempts are used up,
        or the wait (Retry-After included) would end too close to the deadline to attempt at all."""
        if retry_after is not None:
            wait = retry_after
        else:
            ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempts_made - 1))
            wait = random.uniform(0, ceiling)
        if attempts_made >= self.max_attempts or wait + self.min_attempt_seconds > seconds_left:
            return None
        return wait


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
