"""One POST of a record to the endpoint: the headers and signature it carries, the throttles and circuit
breaker it passes first, and what the answer means (delivered, or a transient or permanent failure)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

from dispatcher.attempt_policy import parse_retry_after
from dispatcher.config import SubscriptionConfig
from dispatcher.guard import EndpointRefusedError
from dispatcher.outcomes import DeliveryStats
from dispatcher.ports import HttpSender, TransportError
from dispatcher.records import SourceRecord, header_safe
from dispatcher.signing import SigningKeys
from dispatcher.throttle import AdaptiveLimiter, CircuitBreaker, TokenBucket
from dispatcher.timestamps import rfc3339

USER_AGENT = "callback-dispatcher/0.1"
STATUS_CLASSES = tuple(f"{hundreds}xx" for hundreds in range(10))  # the HTTP client reads 3-digit statuses only


class TransientFailureError(Exception):
    """429, 5xx or no response: worth another attempt."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after = reason, status, retry_after


class PermanentFailureError(Exception):
    """Any other answer, or an endpoint the SSRF guard refuses: the record can never succeed."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class DeadlineReachedError(Exception):
    """Too little of the invocation is left to start an attempt."""


@dataclass(slots=True)
class Attempt:
    """A record's attempts so far: the headers of the attempt in flight (each attempt re-signs them and sets
    its number: one dict per record, not one per attempt), how many were made (`made_before` of them before
    this invocation), and whether the one in flight is the circuit breaker's probe."""

    record: SourceRecord
    headers: dict[str, str]
    made: int = 0
    made_before: int = 0
    is_probe: bool = False

    @property
    def breaker_key(self) -> str:
        """What the circuit breaker counts a failure against: the record's key, or the record itself."""
        key = self.record.partition_key
        return f"key:{key}" if key is not None else f"record:{self.record.webhook_id}"


class RecordPoster:
    """POSTs records for one invocation, sharing its in-flight limit and rate across the batch."""

    def __init__(
        self,
        config: SubscriptionConfig,
        sender: HttpSender,
        breaker: CircuitBreaker,
        keys: SigningKeys,
        stats: DeliveryStats,
        *,
        deadline: float,
        min_attempt_seconds: float,
        wall_clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.config = config
        self.sender = sender
        self.breaker = breaker
        self.keys = keys
        self.stats = stats
        self.deadline = deadline
        self.min_attempt_seconds = min_attempt_seconds
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.limiter = AdaptiveLimiter(config.max_in_flight)
        rate = config.rate_limit_per_second
        self.bucket = TokenBucket(rate) if rate else None
        self._source = ("", "")  # the last source name and its dispatch-source value

    def _source_header(self, source_name: str) -> str:
        """`dispatch-source`, the same for every record of a batch: made header-safe once."""
        if source_name != self._source[0]:
            self._source = (source_name, header_safe(source_name))
        return self._source[1]

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def _time_left(self) -> float:
        remaining = self.seconds_left()
        if remaining < self.min_attempt_seconds:
            raise DeadlineReachedError
        return remaining

    def attempt(self, record: SourceRecord, retry_round: int | None = None, made_before: int = 0) -> Attempt:
        """A record's attempts, none made yet by this invocation, with the headers that are the same on every
        attempt; a retry-lane round names itself in `dispatch-retry-round`."""
        headers = {
            "Content-Type": record.content_type,
            "User-Agent": USER_AGENT,
            "webhook-id": record.webhook_id,
            "Idempotency-Key": record.webhook_id,
            "dispatch-source": self._source_header(record.source_name),
            "dispatch-produced-at": rfc3339(record.produced_at),
        }
        if record.partition_key is not None:
            headers["dispatch-partition-key"] = header_safe(record.partition_key)
        if record.sequence_number is not None:  # one that reads as an ordinal is ASCII digits: its own header value
            sequence = record.sequence_number
            headers["dispatch-sequence"] = sequence if record.ordinal is not None else header_safe(sequence)
        if record.redriven_at is not None:  # a replay: receivers take it although older than what they saw
            headers["dispatch-redrive"] = rfc3339(record.redriven_at)
        if retry_round is not None:
            headers["dispatch-retry-round"] = str(retry_round)
        return Attempt(record, headers, made_before=made_before)

    async def post(self, attempt: Attempt) -> None:
        """Attempt number `attempt.made` once; returns when the endpoint accepted the record. Raises
        TransientFailureError, PermanentFailureError, DeadlineReachedError or throttle.CircuitOpenError."""
        self._time_left()
        # Each throttle is awaited only when it may make the request wait (a coroutine per request adds up):
        # a free slot, a closed breaker and no rate limit let the request through as the awaits would.
        if not self.limiter.try_acquire():
            await self.limiter.acquire()
        try:
            # Asked only once a slot is free: requests queued behind the limiter must not go out
            # after the circuit opened.
            attempt.is_probe = False if self.breaker.is_closed else await self.breaker.admit()
            try:
                if self.bucket is not None:
                    await self._take_token(self.bucket)
                await self._send(attempt)
            finally:
                if attempt.is_probe:
                    self.breaker.end_probe()
        finally:
            self.limiter.release()

    async def _take_token(self, bucket: TokenBucket) -> None:
        wait = bucket.reserve()
        if wait > self._time_left() - self.min_attempt_seconds:
            bucket.give_back()
            raise DeadlineReachedError
        if wait > 0:
            await self.sleep(wait)

    async def _send(self, attempt: Attempt) -> None:
        record = attempt.record
        timeout = min(self.config.request_timeout_seconds, self._time_left())
        headers = self.signed_headers(attempt)
        started = time.monotonic()
        try:
            response = await self.sender.post(self.config.endpoint, record.payload, headers, timeout)
        except EndpointRefusedError as refused:
            raise PermanentFailureError(f"endpoint refused by the SSRF guard: {refused}") from None
        except TransportError as error:
            self.stats.status_classes["network"] += 1
            self.breaker.record_transient_failure(attempt.breaker_key, attempt.is_probe)
            raise TransientFailureError(f"no response: {error}") from None
        self.stats.latencies_ms.append((time.monotonic() - started) * 1000)
        status = response.status
        self.stats.status_classes[STATUS_CLASSES[status // 100]] += 1
        if 200 <= status < 300:
            self.breaker.record_success()
            self.limiter.on_success()
            if self.bucket is not None:
                self.bucket.on_success()
            return
        if status == HTTPStatus.TOO_MANY_REQUESTS or status >= 500:
            self.breaker.record_transient_failure(attempt.breaker_key, attempt.is_probe)
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                self.limiter.on_throttled()
                if self.bucket is not None:
                    self.bucket.on_throttled()
            retry_after = parse_retry_after(response.retry_after, self.wall_clock())
            raise TransientFailureError(f"HTTP {status} {_phrase(status)}".rstrip(), status, retry_after)
        # The endpoint answered: it is up, even if it will never take this record.
        self.breaker.record_success()
        if status == HTTPStatus.GONE:  # the endpoint says it is gone: the team must know (EndpointGone)
            self.stats.endpoint_gone += 1
        raise PermanentFailureError(f"HTTP {status} {_phrase(status)}".rstrip(), status)

    def signed_headers(self, attempt: Attempt) -> dict[str, str]:
        """The headers of the attempt about to be made (`attempt.made` counted), signed now."""
        timestamp = int(self.wall_clock())  # each attempt is signed with its own timestamp
        headers = attempt.headers
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = self.keys.signature_header(
            attempt.record.webhook_id, timestamp, attempt.record.payload
        )
        headers["dispatch-attempt"] = str(attempt.made_before + attempt.made)
        return headers


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
