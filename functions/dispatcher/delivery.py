"""Delivering one batch: concurrency, ordering, retries, parking, delivered ids and the partial-failure report.

Plain Python behind small ports (ports.py), callable without Lambda. The rules:
- 2xx delivered; 429, 5xx, timeouts and connection errors are transient (retried with full-jitter
  backoff and Retry-After, never past the deadline, then reported as batch item failures); every
  other status, and an endpoint the SSRF guard refuses, is permanent: the record is parked in the
  parked-records queue and not reported, so one bad record never blocks a shard or a queue.
- With ordering by partition key (always for FIFO groups), records of one key go out one after
  another in sequence order; once one is not delivered, the later ones of that key are held back.
- Reported failures are exactly the records not delivered and not parked.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import enum
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from http import HTTPStatus
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from dispatcher import delivered_ids
from dispatcher.config import SubscriptionConfig
from dispatcher.guard import EndpointRefusedError
from dispatcher.ports import DeliveredIds, HttpSender, ParkedMessage, ParkedRecords, SecretSource, TransportError
from dispatcher.records import Batch, SourceRecord, header_safe
from dispatcher.signing import SigningKeys
from dispatcher.throttle import AdaptiveLimiter, CircuitBreaker, CircuitOpenError, TokenBucket
from dispatcher.timestamps import rfc3339, rfc3339_from_epoch_seconds

logger = logging.getLogger(__name__)

USER_AGENT = "callback-dispatcher/0.1"
MAX_FAILURES_LOGGED = 20  # per invocation; a down endpoint must not flood the logs


@dataclass(frozen=True, slots=True)
class DeliveryTuning:
    finish_reserve_seconds: float = 3.0  # kept back at the end to park records and write delivered ids
    min_attempt_seconds: float = 0.2  # an attempt with less time left than this is not started
    backoff_base_seconds: float = 0.2  # full jitter: sleep uniform(0, base * 2**(attempt-1))
    backoff_cap_seconds: float = 10.0
    breaker_threshold: int = 5  # consecutive transient failures that open the circuit
    checkpoint_interval_seconds: float = 10.0  # progress entries during long invocations


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    PARKED = "parked"
    FAILED = "failed"  # reported as a batch item failure: Lambda sends it again
    SKIPPED = "skipped"  # delivered or parked by an earlier invocation


@dataclass(frozen=True, slots=True)
class RecordResult:
    outcome: Outcome
    attempts: int = 0
    last_status: int | None = None
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.outcome is not Outcome.FAILED


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    duplicates_skipped: int = 0
    parked: int = 0
    status_classes: Counter[str] = field(default_factory=Counter)  # "2xx" .. "5xx", "network"
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class BatchReport:
    batch: Batch
    results: tuple[RecordResult, ...]  # aligned with batch.records
    stats: DeliveryStats

    @property
    def failed_records(self) -> list[SourceRecord]:
        return [r for r, result in zip(self.batch.records, self.results, strict=True) if not result.finished]

    def response(self) -> dict[str, list[dict[str, str]]]:
        """The ReportBatchItemFailures response: identifiers of this batch only, each once, never empty."""
        identifiers = dict.fromkeys(record.item_identifier for record in self.failed_records)
        return {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in identifiers]}


class _TransientError(Exception):
    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after = reason, status, retry_after


class _PermanentError(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class _DeadlineReachedError(Exception):
    pass


class Dispatcher:
    """Delivers batches for one subscription. One instance lives across warm invocations, so its
    circuit breaker, HTTP connection pool and signing keys are reused."""

    def __init__(
        self,
        subscription: SubscriptionConfig,
        sender: HttpSender,
        delivered_ids: DeliveredIds,
        parked_records: ParkedRecords,
        secret: SecretSource,
        tuning: DeliveryTuning = DeliveryTuning(),
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.subscription = subscription
        self.sender = sender
        self.delivered_ids = delivered_ids
        self.parked_records = parked_records
        self._secret = secret
        self.tuning = tuning
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.breaker = CircuitBreaker(tuning.breaker_threshold)
        self._keys: tuple[str, SigningKeys] | None = None

    def signing_keys(self) -> SigningKeys:
        """Parsed once per secret value; the source caches the value itself with a TTL."""
        secret_string = self._secret.get()
        if self._keys is None or self._keys[0] != secret_string:
            self._keys = (secret_string, SigningKeys.parse(secret_string))
        return self._keys[1]

    async def dispatch(self, batch: Batch, remaining_seconds: float) -> BatchReport:
        """Deliver `batch` within `remaining_seconds` (the invocation's time left)."""
        deadline = time.monotonic() + remaining_seconds - self.tuning.finish_reserve_seconds
        return await _BatchRun(self, batch, deadline, self.signing_keys()).execute()


class _BatchRun:
    """The state of one invocation."""

    def __init__(self, dispatcher: Dispatcher, batch: Batch, deadline: float, keys: SigningKeys) -> None:
        self.d = dispatcher
        self.config = dispatcher.subscription
        self.batch = batch
        self.deadline = deadline
        self.keys = keys
        self.stats = DeliveryStats()
        self.results: list[RecordResult | None] = [None] * len(batch.records)
        self.limiter = AdaptiveLimiter(self.config.max_in_flight)
        rate = self.config.rate_limit_per_second
        self.bucket = TokenBucket(rate) if rate else None
        self.leader_of: dict[str, int] = {}
        self.leader_results: dict[str, asyncio.Future[RecordResult]] = {}

    async def execute(self) -> BatchReport:
        records = self.batch.records
        recalled = self.d.delivered_ids.fetch(delivered_ids.lookup_keys(self.config.name, self.batch))
        already_finished = frozenset().union(*recalled.values())
        pending = []
        for index, record in enumerate(records):
            if record.item_identifier in already_finished:
                self.results[index] = RecordResult(Outcome.SKIPPED, reason="finished by an earlier invocation")
                self.stats.duplicates_skipped += 1
            else:
                pending.append(index)
                self.leader_of.setdefault(record.webhook_id, index)
        self.d.breaker.begin_invocation()
        checkpointer = asyncio.create_task(self._checkpoint_periodically())
        try:
            async with asyncio.TaskGroup() as lanes:
                for lane in self._lanes(pending):
                    lanes.create_task(self._run_lane(lane))
        finally:
            checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpointer
        self._park()
        results = tuple(result for result in self.results if result is not None)
        report = BatchReport(self.batch, results, self.stats)
        self._remember(report)
        self._count(report)
        return report

    def _lanes(self, pending: list[int]) -> list[list[int]]:
        """Records that must go out one after another share a lane; lanes run concurrently."""
        ordered = self.config.ordering == "partition-key" or self.batch.ordered_by_source
        lanes: dict[object, list[int]] = {}
        for index in pending:
            key = self.batch.records[index].partition_key
            lanes.setdefault(key if ordered and key is not None else index, []).append(index)
        for lane in lanes.values():
            # Records without a readable sequence number are parked before anything is sent: any place will do.
            lane.sort(key=lambda index: self.batch.records[index].ordinal or 0)
        return list(lanes.values())

    async def _run_lane(self, lane: list[int]) -> None:
        held_back_by: SourceRecord | None = None
        for index in lane:
            record = self.batch.records[index]
            if held_back_by is not None:
                result = RecordResult(
                    Outcome.FAILED,
                    reason=f"held back: earlier record {held_back_by.item_identifier} of key "
                    f"{record.partition_key!r} was not delivered",
                )
            else:
                result = await self._deliver_contained(index)
            self._settle(index, result)
            if result.outcome is Outcome.FAILED and held_back_by is None:
                held_back_by = record

    def _settle(self, index: int, result: RecordResult) -> None:
        """Record the result; a record that is the first with its webhook-id also settles the records of
        other lanes that share the id (they wait for it, whether it was sent or held back)."""
        self.results[index] = result
        webhook_id = self.batch.records[index].webhook_id
        if self.leader_of.get(webhook_id) == index:
            future = self._leader_result(webhook_id)
            if not future.done():
                future.set_result(result)

    async def _deliver_contained(self, index: int) -> RecordResult:
        """One record's unforeseen error must not fail the other records of the batch: it is reported
        for retry (and logged with its trace) while the rest of the batch goes out."""
        try:
            return await self._deliver(index)
        except Exception as error:
            record = self.batch.records[index]
            logger.exception(
                "unexpected error delivering a record; reported for retry",
                extra={"webhook_id": record.webhook_id, "source_position": record.source_fields_for_logs()},
            )
            return RecordResult(Outcome.FAILED, reason=f"unexpected {type(error).__name__}")

    async def _deliver(self, index: int) -> RecordResult:
        record = self.batch.records[index]
        if record.unreadable_reason is not None:
            return RecordResult(Outcome.PARKED, reason=record.unreadable_reason)
        leader = self.leader_of[record.webhook_id]
        if leader != index:
            return self._follow(await self._leader_result(record.webhook_id), self.batch.records[leader])
        return await self._attempt(record)

    def _leader_result(self, webhook_id: str) -> asyncio.Future[RecordResult]:
        if webhook_id not in self.leader_results:
            self.leader_results[webhook_id] = asyncio.get_running_loop().create_future()
        return self.leader_results[webhook_id]

    def _follow(self, leader_result: RecordResult, leader: SourceRecord) -> RecordResult:
        """A record sharing its webhook-id with an earlier record of the batch is not POSTed again: it is a
        duplicate of a delivered one, or fails or is parked (with its own payload) along with it."""
        note = f"same webhook-id as record {leader.item_identifier}"
        if leader_result.outcome is Outcome.DELIVERED:
            self.stats.duplicates_skipped += 1
            return RecordResult(Outcome.SKIPPED, 0, leader_result.last_status, f"{note}, delivered")
        return RecordResult(leader_result.outcome, 0, leader_result.last_status, f"{note}: {leader_result.reason}")

    async def _attempt(self, record: SourceRecord) -> RecordResult:
        attempts = 0
        record_headers = self._record_headers(record)

        async def send() -> None:
            nonlocal attempts
            attempts += 1
            await self._send_once(record, attempts, record_headers)

        try:
            try:
                # Most records are delivered at once: they skip the retry machinery's cost entirely.
                await send()
            except _TransientError as failure:
                wait = self._backoff_seconds(failure, attempts)
                if self._out_of_attempts(attempts, wait):
                    raise
                await self.d.sleep(wait)
                # tenacity numbers its own attempts from 1; the first one was made above.
                async for attempt in AsyncRetrying(
                    stop=lambda state: self._out_of_attempts(state.attempt_number + 1, state.upcoming_sleep),
                    wait=lambda state: self._backoff_seconds(_failure_of(state), state.attempt_number + 1),
                    retry=retry_if_exception_type(_TransientError),
                    sleep=self.d.sleep,
                    reraise=True,
                ):
                    with attempt:
                        await send()
        except _TransientError as failure:
            self.stats.retried += attempts - 1
            return RecordResult(Outcome.FAILED, attempts, failure.status, failure.reason)
        except _PermanentError as failure:
            self.stats.retried += attempts - 1
            return RecordResult(Outcome.PARKED, attempts, failure.status, failure.reason)
        except CircuitOpenError as error:
            return RecordResult(Outcome.FAILED, attempts - 1, reason=str(error))
        except _DeadlineReachedError:
            return RecordResult(Outcome.FAILED, attempts - 1, reason="invocation deadline reached; not sent")
        self.stats.retried += attempts - 1
        return RecordResult(Outcome.DELIVERED, attempts, 200)

    def _backoff_seconds(self, failure: BaseException | None, attempts_made: int) -> float:
        """Retry-After when the endpoint said so, else full jitter over an exponential ceiling."""
        if isinstance(failure, _TransientError) and failure.retry_after is not None:
            return failure.retry_after
        tuning = self.d.tuning
        ceiling = min(tuning.backoff_cap_seconds, tuning.backoff_base_seconds * 2 ** (attempts_made - 1))
        return random.uniform(0, ceiling)

    def _out_of_attempts(self, attempts_made: int, upcoming_sleep: float) -> bool:
        if attempts_made >= self.config.max_attempts:
            return True
        # A wait (Retry-After included) that would end past the deadline is not waited for.
        return upcoming_sleep + self.d.tuning.min_attempt_seconds > self.deadline - time.monotonic()

    def _time_left(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining < self.d.tuning.min_attempt_seconds:
            raise _DeadlineReachedError
        return remaining

    async def _send_once(self, record: SourceRecord, attempt: int, record_headers: dict[str, str]) -> None:
        self._time_left()
        await self.limiter.acquire()
        try:
            # Asked only once a slot is free: requests queued behind the limiter must not go out
            # after the circuit opened.
            is_probe = await self.d.breaker.admit()
            try:
                await self._take_token()
                await self._post(record, attempt, record_headers, is_probe)
            finally:
                if is_probe:
                    self.d.breaker.end_probe()
        finally:
            self.limiter.release()

    async def _take_token(self) -> None:
        if self.bucket is None:
            return
        wait = self.bucket.reserve()
        if wait > self._time_left() - self.d.tuning.min_attempt_seconds:
            self.bucket.give_back()
            raise _DeadlineReachedError
        if wait > 0:
            await self.d.sleep(wait)

    async def _post(self, record: SourceRecord, attempt: int, record_headers: dict[str, str], is_probe: bool) -> None:
        timeout = min(self.config.request_timeout_seconds, self._time_left())
        headers = self._attempt_headers(record, attempt, record_headers)
        started = time.monotonic()
        try:
            response = await self.d.sender.post(self.config.endpoint, record.payload, headers, timeout)
        except EndpointRefusedError as refused:
            raise _PermanentError(f"endpoint refused by the SSRF guard: {refused}") from None
        except TransportError as error:
            self.stats.status_classes["network"] += 1
            self.d.breaker.record_transient_failure(is_probe)
            raise _TransientError(f"no response: {error}") from None
        self.stats.latencies_ms.append((time.monotonic() - started) * 1000)
        status = response.status
        self.stats.status_classes[f"{status // 100}xx"] += 1
        if 200 <= status < 300:
            self.d.breaker.record_success()
            self.limiter.on_success()
            if self.bucket is not None:
                self.bucket.on_success()
            return
        if status == HTTPStatus.TOO_MANY_REQUESTS or status >= 500:
            self.d.breaker.record_transient_failure(is_probe)
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                self.limiter.on_throttled()
                if self.bucket is not None:
                    self.bucket.on_throttled()
            retry_after = parse_retry_after(response.retry_after, self.d.wall_clock())
            raise _TransientError(f"HTTP {status} {_phrase(status)}".rstrip(), status, retry_after)
        # The endpoint answered: it is up, even if it will never take this record.
        self.d.breaker.record_success()
        raise _PermanentError(f"HTTP {status} {_phrase(status)}".rstrip(), status)

    def _record_headers(self, record: SourceRecord) -> dict[str, str]:
        """The headers that are the same on every attempt of a record."""
        headers = {
            "Content-Type": "application/json" if record.is_json else "application/octet-stream",
            "User-Agent": USER_AGENT,
            "webhook-id": record.webhook_id,
            "Idempotency-Key": record.webhook_id,
            "dispatch-source": header_safe(record.source_name),
            "dispatch-produced-at": rfc3339(record.produced_at),
        }
        if record.partition_key is not None:
            headers["dispatch-partition-key"] = header_safe(record.partition_key)
        if record.sequence_number is not None:
            headers["dispatch-sequence"] = header_safe(record.sequence_number)
        return headers

    def _attempt_headers(self, record: SourceRecord, attempt: int, record_headers: dict[str, str]) -> dict[str, str]:
        timestamp = int(self.d.wall_clock())  # each attempt is signed with its own timestamp
        headers = dict(record_headers)
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = self.keys.signature_header(record.webhook_id, timestamp, record.payload)
        headers["dispatch-attempt"] = str(attempt)
        return headers

    def _park(self) -> None:
        """Send parked records to the parked-records queue in one go; one that cannot be parked is reported failed."""
        to_park = [i for i, result in enumerate(self.results) if result and result.outcome is Outcome.PARKED]
        if not to_park:
            return
        parked_at = rfc3339_from_epoch_seconds(self.d.wall_clock())
        messages = [self._parked_message(self.batch.records[i], self._result(i), parked_at) for i in to_park]
        try:
            unparked = self.d.parked_records.park(messages)
        except Exception as error:
            logger.exception("parking failed; the records are reported as failures")
            unparked = dict.fromkeys(range(len(to_park)), f"{type(error).__name__}: {error}")
        for position, index in enumerate(to_park):
            record, result = self.batch.records[index], self._result(index)
            if position in unparked:
                cause = unparked[position]
                self.results[index] = RecordResult(
                    Outcome.FAILED, result.attempts, result.last_status, f"could not park ({result.reason}): {cause}"
                )
                logger.error(
                    "record could not be parked; reported for retry",
                    extra={
                        "webhook_id": record.webhook_id,
                        "source_position": record.source_fields_for_logs(),
                        "cause": cause,
                    },
                )
            else:
                logger.warning(
                    "record parked in the parked-records queue",
                    extra={
                        "webhook_id": record.webhook_id,
                        "source_position": record.source_fields_for_logs(),
                        "reason": result.reason,
                    },
                )

    def _result(self, index: int) -> RecordResult:
        result = self.results[index]
        assert result is not None
        return result

    def _parked_message(self, record: SourceRecord, result: RecordResult, parked_at: str) -> ParkedMessage:
        """The message's fields; the parked records add the payload, inline or as a reference to where it stored it."""
        fields: dict[str, Any] = {
            "subscription": self.config.name,
            "endpoint": self.config.endpoint,
            "webhook_id": record.webhook_id,
            "item_identifier": record.item_identifier,
            "source": record.source_fields(),
            "content_type": "application/json" if record.is_json else "application/octet-stream",
            "produced_at": rfc3339(record.produced_at),
            "reason": result.reason,
            "last_status": result.last_status,
            "attempts": result.attempts,
            "parked_at": parked_at,
        }
        return ParkedMessage(fields, record.payload)

    def _finished_records(self, *outcomes: Outcome) -> list[SourceRecord]:
        return [
            record
            for record, result in zip(self.batch.records, self.results, strict=True)
            if result is not None and result.outcome in outcomes
        ]

    async def _checkpoint_periodically(self) -> None:
        """During long invocations, record progress so a crash or timeout re-sends little.
        Parked records are left out: they are in the parked-records queue only once _park() has run."""
        while True:
            await asyncio.sleep(self.d.tuning.checkpoint_interval_seconds)
            delivered = self._finished_records(Outcome.DELIVERED, Outcome.SKIPPED)
            entries = delivered_ids.progress_entries(self.config.name, self.batch, delivered)
            try:
                await asyncio.to_thread(self.d.delivered_ids.save, entries)
            except Exception:
                logger.exception("progress checkpoint failed; a crash now would re-send more")

    def _remember(self, report: BatchReport) -> None:
        finished = [
            record for record, result in zip(self.batch.records, report.results, strict=True) if result.finished
        ]
        entries = delivered_ids.entries_after_partial_failure(
            self.config.name, self.batch, finished, report.failed_records
        )
        if not entries:
            return
        try:
            self.d.delivered_ids.save(entries)
        except Exception:
            # Cannot undo the deliveries: the re-sent records reach the endpoint again, which dedupes
            # on webhook-id. Reporting them failed instead would re-send even more.
            logger.exception("could not record delivered records; their re-sends will reach the endpoint")

    def _count(self, report: BatchReport) -> None:
        for record, result in zip(self.batch.records, report.results, strict=True):
            if result.outcome is Outcome.DELIVERED:
                self.stats.delivered += 1
            elif result.outcome is Outcome.PARKED:
                self.stats.parked += 1
            elif result.outcome is Outcome.FAILED:
                self.stats.failed += 1
                if self.stats.failed <= MAX_FAILURES_LOGGED:
                    logger.warning(
                        "record not delivered; reported for retry",
                        extra={
                            "webhook_id": record.webhook_id,
                            "source_position": record.source_fields_for_logs(),
                            "reason": result.reason,
                        },
                    )
        if self.stats.failed > MAX_FAILURES_LOGGED:
            logger.warning("%d records not delivered in all; reported for retry", self.stats.failed)


def _failure_of(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


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


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
