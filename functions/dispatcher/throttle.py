"""How hard one invocation may push the endpoint: an adaptive in-flight limit, a token bucket for
`rate_limit_per_second`, and a circuit breaker that outlives the invocation (the third lesson of
CreditorWatch's article on Lambda at scale: uncontrolled concurrency takes down what you call)."""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable

# Additive increase after a success, multiplicative decrease after a 429 (AIMD, as TCP does).
THROTTLE_DECREASE_FACTOR = 0.5
RATE_RECOVERY_PER_SUCCESS = 0.02  # fraction of the configured rate regained per delivered request
MIN_RATE_PER_SECOND = 0.5  # requests/s: the slowest a throttled endpoint is ever approached


class CircuitOpenError(Exception):
    """The endpoint failed too often in a row; the remaining records are reported without a request."""


class AdaptiveLimiter:
    """At most `limit` requests in flight; the limit halves on 429 and creeps back on success."""

    def __init__(self, max_in_flight: int) -> None:
        self._max = float(max_in_flight)
        self._limit = float(max_in_flight)
        self.limit = max_in_flight  # whole slots of _limit, kept beside it: asked several times per request
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def _set_limit(self, limit: float) -> None:
        self._limit = limit
        self.limit = max(1, int(limit))

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody queues for it, without awaiting anything."""
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is handed over by release()
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()
            raise

    def release(self) -> None:
        self._in_flight -= 1
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)

    def on_throttled(self) -> None:
        self._set_limit(max(1.0, self._limit * THROTTLE_DECREASE_FACTOR))

    def on_success(self) -> None:
        if self._limit < self._max:
            self._set_limit(min(self._max, self._limit + 1.0 / self._limit))


class TokenBucket:
    """`rate` requests per second with a burst of at most one second's worth."""

    def __init__(self, rate_per_second: float, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._configured = rate_per_second
        self._rate = rate_per_second
        self._capacity = max(1.0, rate_per_second)
        self._tokens = self._capacity
        self._updated = now()

    @property
    def rate(self) -> float:
        return self._rate

    def reserve(self) -> float:
        """Take a token; returns how many seconds to wait before using it (0 when one was ready)."""
        now = self._now()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def give_back(self) -> None:
        """Return a reserved token that will not be used (the deadline came first)."""
        self._tokens += 1.0

    def on_throttled(self) -> None:
        self._rate = max(MIN_RATE_PER_SECOND, self._rate * THROTTLE_DECREASE_FACTOR)

    def on_success(self) -> None:
        self._rate = min(self._configured, self._rate + self._configured * RATE_RECOVERY_PER_SUCCESS)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Judges the endpoint, not a key: opens once transient failures came from `threshold` different keys
    with no success in between (a key's own retries, and its later records, count once), so one key the
    receiver cannot take never holds back the others. Kept across warm invocations: a later invocation
    starts half-open and lets exactly one probe request through before sending more."""

    def __init__(self, threshold: int) -> None:
        self._threshold = threshold
        self._failing_keys: set[str] = set()  # since the last success
        self.state = BreakerState.CLOSED
        self._probe_in_flight = False
        self._probe_done: asyncio.Event | None = None

    def begin_invocation(self) -> None:
        if self.state is BreakerState.OPEN:
            self.state = BreakerState.HALF_OPEN
        self._probe_in_flight = False
        self._probe_done = None

    @property
    def is_closed(self) -> bool:
        """Closed: `admit()` would return False at once (asking first spares awaiting it per request)."""
        return self.state is BreakerState.CLOSED

    async def admit(self) -> bool:
        """Wait for permission to send; returns True when this request is the half-open probe.
        Raises CircuitOpenError when the breaker is (or becomes) open."""
        while True:
            if self.state is BreakerState.CLOSED:
                return False
            if self.state is BreakerState.OPEN:
                raise CircuitOpenError("circuit open: the endpoint failed repeatedly; not sent")
            if not self._probe_in_flight:
                self._probe_in_flight = True
                self._probe_done = asyncio.Event()  # the ones that wait for this probe's verdict
                return True
            assert self._probe_done is not None
            await self._probe_done.wait()

    def record_success(self) -> None:
        """The endpoint answered (any non-transient status): it is up."""
        self._failing_keys.clear()
        if self.state is not BreakerState.CLOSED:
            self.state = BreakerState.CLOSED
            self._release_probe_waiters()

    def record_transient_failure(self, key: str, was_probe: bool) -> None:
        """A transient failure of a record of `key` (its partition key, or its own id when it has none)."""
        self._failing_keys.add(key)
        if was_probe or len(self._failing_keys) >= self._threshold:
            self.state = BreakerState.OPEN
            self._release_probe_waiters()

    def end_probe(self) -> None:
        """The probe ended without a verdict (refused by the guard, out of time): let another probe."""
        self._release_probe_waiters()

    def _release_probe_waiters(self) -> None:
        self._probe_in_flight = False
        if self._probe_done is not None:
            self._probe_done.set()
