"""Time limits for many concurrent requests, without a timer for each.

aiohttp's `ClientTimeout` (like `asyncio.timeout`) starts an event-loop timer per request and cancels it when
the answer comes, and with answers coming at once that bookkeeping was about a tenth of a request's cost on
the target machine (`make bench` (b)). Here one sweep every SWEEP_INTERVAL_SECONDS, scheduled only while
requests are in flight, cancels the tasks whose limit has passed; a request learns that it was cut off by
its limit (not cancelled from outside) as `asyncio.timeout` tells it, from the task's cancellation count.
The price is precision: a request is cut off at most one sweep interval after its limit.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

SWEEP_INTERVAL_SECONDS = 0.05


class RequestTimedOutError(Exception):
    """The request was still unanswered when its time limit passed."""


class RequestTimeouts:
    """The limits of the requests in flight on one event loop; `with limit(seconds):` guards one request."""

    def __init__(self, sweep_interval_seconds: float = SWEEP_INTERVAL_SECONDS) -> None:
        self._sweep_interval_seconds = sweep_interval_seconds
        self._expiry: dict[asyncio.Task[Any], float] = {}  # loop.time() after which the task is cut off
        self._cut_off: set[asyncio.Task[Any]] = set()
        self._sweeping_loop: asyncio.AbstractEventLoop | None = None  # the loop a sweep is scheduled on, if any

    def limit(self, seconds: float) -> _Limit:
        return _Limit(self, seconds)

    def _watch(self, task: asyncio.Task[Any], seconds: float) -> None:
        loop = task.get_loop()
        self._expiry[task] = loop.time() + seconds
        # A sweep left pending on a loop that stopped (or closed) would never run: each loop gets its own.
        if self._sweeping_loop is not loop:
            self._sweeping_loop = loop
            loop.call_later(self._sweep_interval_seconds, self._sweep, loop)

    def _release(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching `task`; whether it was cut off by its limit."""
        del self._expiry[task]
        if task not in self._cut_off:
            return False
        self._cut_off.discard(task)
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeping_loop is not loop:
            return  # superseded by the sweep of another loop
        now = loop.time()
        for task, expiry in self._expiry.items():
            if expiry <= now and task not in self._cut_off and task.get_loop() is loop:
                self._cut_off.add(task)
                task.cancel()
        # Rescheduled only while requests are in flight: an idle (or frozen) environment has no timer pending.
        if self._expiry:
            loop.call_later(self._sweep_interval_seconds, self._sweep, loop)
        else:
            self._sweeping_loop = None


class _Limit:
    """`with timeouts.limit(seconds):` (inside a task) raises RequestTimedOutError when the limit cut the block
    off. A plain context manager: entering and leaving need no await, so they cost no coroutines."""

    __slots__ = ("_cancelling", "_seconds", "_task", "_timeouts")

    def __init__(self, timeouts: RequestTimeouts, seconds: float) -> None:
        self._timeouts = timeouts
        self._seconds = seconds
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a request time limit needs to run inside a task")
        self._task, self._cancelling = task, task.cancelling()
        self._timeouts._watch(task, self._seconds)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._task is not None
        if not self._timeouts._release(self._task):
            return
        # As asyncio.timeout does: the limit's cancellation is taken back, and a CancelledError with no other
        # cancellation pending (from outside, before or during the request) is the limit's.
        cancellations_left = self._task.uncancel()
        if cancellations_left <= self._cancelling and exc_type is asyncio.CancelledError:
            raise RequestTimedOutError from exc
