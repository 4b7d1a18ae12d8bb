from __future__ import annotations

import asyncio

import pytest

from dispatcher.throttle import AdaptiveLimiter, BreakerState, CircuitBreaker, CircuitOpenError, TokenBucket


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_one_second_burst_then_paces() -> None:
    clock = ManualClock()
    bucket = TokenBucket(4, now=clock)
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.25)
    assert bucket.reserve() == pytest.approx(0.5)
    clock.now += 10  # refills to the burst size, no more
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 0.0]
    assert bucket.reserve() > 0


def test_slow_rate_still_has_a_burst_of_one() -> None:
    bucket = TokenBucket(0.5, now=ManualClock())
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(2.0)


def test_throttling_halves_the_rate_and_success_recovers_it() -> None:
    bucket = TokenBucket(10, now=ManualClock())
    bucket.on_throttled()
    assert bucket.rate == 5
    for _ in range(100):
        bucket.on_success()
    assert bucket.rate == 10


def test_limiter_halves_on_throttling_and_creeps_back() -> None:
    limiter = AdaptiveLimiter(16)
    limiter.on_throttled()
    limiter.on_throttled()
    assert limiter.limit == 4
    for _ in range(200):
        limiter.on_success()
    assert limiter.limit == 16


async def test_limiter_admits_waiters_as_slots_free() -> None:
    limiter = AdaptiveLimiter(2)
    await limiter.acquire()
    await limiter.acquire()
    third = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    limiter.release()
    await asyncio.sleep(0)
    assert third.done()


async def test_limiter_try_acquire_takes_a_free_slot_but_never_jumps_the_queue() -> None:
    # Given a limiter of two slots, both taken without awaiting
    limiter = AdaptiveLimiter(2)
    assert limiter.try_acquire() is True
    assert limiter.try_acquire() is True
    assert limiter.try_acquire() is False
    # And an acquirer queued while a 429 halved the limit to one
    limiter.on_throttled()
    queued = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()
    assert not queued.done()
    # When a success raises the limit back to two, freeing a slot while the acquirer still queues
    limiter.on_success()
    # Then try_acquire leaves that slot to the queue
    assert limiter.try_acquire() is False
    assert not queued.done()
    queued.cancel()


async def test_breaker_is_closed_exactly_when_admit_lets_through_without_a_probe() -> None:
    # Given a closed breaker
    breaker = CircuitBreaker(threshold=1)
    breaker.begin_invocation()
    assert breaker.is_closed
    assert await breaker.admit() is False
    # When it opens, and a later invocation finds it half-open
    breaker.record_transient_failure("key:a", was_probe=False)
    assert not breaker.is_closed
    breaker.begin_invocation()
    # Then it is not closed until the probe succeeds
    assert not breaker.is_closed
    assert await breaker.admit() is True
    breaker.record_success()
    assert breaker.is_closed


async def test_breaker_half_open_admits_one_probe_and_others_wait_for_its_verdict() -> None:
    breaker = CircuitBreaker(threshold=2)
    breaker.begin_invocation()
    breaker.record_transient_failure("key:a", was_probe=False)
    breaker.record_transient_failure("key:b", was_probe=False)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await breaker.admit()
    # A later invocation probes first
    breaker.begin_invocation()
    assert await breaker.admit() is True
    waiter = asyncio.ensure_future(breaker.admit())
    await asyncio.sleep(0)
    assert not waiter.done()
    breaker.record_success()
    assert await waiter is False
    assert breaker.state.value == "closed"


async def test_failed_probe_reopens_the_circuit_for_everyone_waiting() -> None:
    breaker = CircuitBreaker(threshold=5)
    breaker.state = BreakerState.OPEN
    breaker.begin_invocation()
    assert await breaker.admit() is True
    waiter = asyncio.ensure_future(breaker.admit())
    await asyncio.sleep(0)
    breaker.record_transient_failure("key:a", was_probe=True)
    with pytest.raises(CircuitOpenError):
        await waiter


def test_breaker_judges_the_endpoint_not_one_key() -> None:
    # Given a breaker that opens at three failing keys
    breaker = CircuitBreaker(threshold=3)
    breaker.begin_invocation()
    # When one key keeps failing (its retries, its later records) while another key is delivered between
    for _ in range(10):
        breaker.record_transient_failure("key:stuck", was_probe=False)
    breaker.record_transient_failure("key:other", was_probe=False)
    breaker.record_success()
    breaker.record_transient_failure("key:stuck", was_probe=False)
    breaker.record_transient_failure("key:third", was_probe=False)
    # Then the circuit stays closed: failures of two keys since the last success
    assert breaker.state is BreakerState.CLOSED
    # When a third key fails with no success between
    breaker.record_transient_failure("key:fourth", was_probe=False)
    # Then the endpoint as a whole is judged down
    assert breaker.state.value == "open"
