"""Delivering one batch: concurrency, ordering, retries, parking, delivered ids and the partial-failure report.

Plain Python behind small ports (ports.py), callable without Lambda. The rules:
- 2xx delivered; 429, 5xx, timeouts and connection errors are transient (retried with full-jitter
  backoff and Retry-After, never past the deadline, then reported as batch item failures); every
  other status, and an endpoint the SSRF guard refuses, is permanent: the record is parked in the
  parked-records queue and not reported, so one bad record never blocks a shard or a queue.
- With ordering by partition key (always for FIFO groups), records of one key go out one after
  another in sequence order; once one is not delivered, the later ones of that key are held back.
- With a retry lane (docs/retry-lanes.md), records of keys held in the lane join it without being sent, and
  a record still failing at the end (with every later record of its key) is handed to the lane instead of
  being reported. Reported failures are exactly the records not delivered, not parked and not handed over.

One POST and what its answer means is posting.py; when to attempt again, attempt_policy.py; the parked
message's document, parked_message.py; the hand-over, lane_handover.py; a lane round, lane_rounds.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher import delivered_ids, lane_rounds, retry_lane
from dispatcher.attempt_policy import AttemptPolicy
from dispatcher.config import SubscriptionConfig
from dispatcher.lane_handover import HELD_REASON, hand_over, held_key_attributes, is_ordered
from dispatcher.outcomes import BatchReport, DeliveryStats, Outcome, RecordResult
from dispatcher.parked_message import park
from dispatcher.ports import DeliveredIds, HttpSender, ParkedRecords, SecretSource
from dispatcher.posting import DeadlineReachedError, PermanentFailureError, RecordPoster, TransientFailureError
from dispatcher.records import Batch, SourceRecord
from dispatcher.signing import SigningKeys
from dispatcher.throttle import CircuitBreaker, CircuitOpenError
from dispatcher.timestamps import rfc3339_from_epoch_seconds

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryTuning:
    finish_reserve_seconds: float = 3.0  # kept back at the end to park records and write delivered ids
    min_attempt_seconds: float = 0.2  # an attempt with less time left than this is not started
    backoff_base_seconds: float = 0.2  # full jitter: sleep uniform(0, base * 2**(attempt-1))
    backoff_cap_seconds: float = 10.0
    breaker_threshold: int = 5  # keys failing transiently in a row (no success between) that open the circuit
    checkpoint_interval_seconds: float = 10.0  # progress entries during long invocations


# The result of nearly every record: delivered (2xx) by its first attempt.
_DELIVERED_AT_ONCE = RecordResult(Outcome.DELIVERED, 1, 200)


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
        lane: retry_lane.LanePorts | None = None,
    ) -> None:
        self.subscription = subscription
        self.sender = sender
        self.delivered_ids = delivered_ids
        self.parked_records = parked_records
        self._secret = secret
        self.tuning = tuning
        self.wall_clock = wall_clock
        self.sleep = sleep
        # The lane is used only with a retry schedule: [] keeps the source re-sending failures.
        self.lane = lane if subscription.retry_schedule_seconds else None
        self.breaker = CircuitBreaker(tuning.breaker_threshold)
        self._keys: tuple[str, SigningKeys] | None = None

    def signing_keys(self) -> SigningKeys:
        """Parsed once per secret value; the source caches the value itself with a TTL."""
        secret_string = self._secret.get()
        if self._keys is None or self._keys[0] != secret_string:
            self._keys = (secret_string, SigningKeys.parse(secret_string))
        return self._keys[1]

    def deadline(self, remaining_seconds: float) -> float:
        """The time.monotonic() after which no attempt starts, the finishing work's reserve kept back."""
        return time.monotonic() + remaining_seconds - self.tuning.finish_reserve_seconds

    def poster(self, stats: DeliveryStats, deadline: float) -> RecordPoster:
        """The POSTs of one invocation: its in-flight limit and rate, shared across its records."""
        return RecordPoster(
            self.subscription,
            self.sender,
            self.breaker,
            self.signing_keys(),
            stats,
            deadline=deadline,
            min_attempt_seconds=self.tuning.min_attempt_seconds,
            wall_clock=self.wall_clock,
            sleep=self.sleep,
        )

    def is_lane_event(self, event: Mapping[str, Any]) -> bool:
        """Whether `event` comes from this subscription's retry lane (and is a lane round)."""
        return self.lane is not None and lane_rounds.comes_from(event, self.lane.queue_name)

    async def dispatch(
        self, batch: Batch, remaining_seconds: float, raw_records: Sequence[Mapping[str, Any]] = ()
    ) -> BatchReport:
        """Deliver `batch` within `remaining_seconds` (the invocation's time left). With a retry lane, the
        event's records as Lambda gave them (`raw_records`, aligned with the batch) are what joins the lane."""
        if self.lane is not None and len(raw_records) != len(batch.records):
            raise ValueError("a retry lane needs the event's records, one per record of the batch")
        return await _BatchRun(self, batch, raw_records, self.deadline(remaining_seconds)).execute()

    async def run_lane_round(self, event: Mapping[str, Any], remaining_seconds: float) -> lane_rounds.LaneReport:
        """Deliver what is due of a batch of the retry lane (an event for which `is_lane_event`)."""
        assert self.lane is not None
        return await lane_rounds.LaneRound(self, self.lane, self.deadline(remaining_seconds)).execute(event)


class _BatchRun:
    """The state of one invocation, with the references to the dispatcher's parts it needs."""

    def __init__(
        self, dispatcher: Dispatcher, batch: Batch, raw_records: Sequence[Mapping[str, Any]], deadline: float
    ) -> None:
        self.config = dispatcher.subscription
        self.lane = dispatcher.lane
        self.raw_records = raw_records
        self.delivered_ids = dispatcher.delivered_ids
        self.parked_records = dispatcher.parked_records
        self.breaker = dispatcher.breaker
        self.wall_clock = dispatcher.wall_clock
        self.sleep = dispatcher.sleep
        self.checkpoint_interval_seconds = dispatcher.tuning.checkpoint_interval_seconds
        self.batch = batch
        self.stats = DeliveryStats()
        self.results: list[RecordResult | None] = [None] * len(batch.records)
        tuning = dispatcher.tuning
        self.policy = AttemptPolicy(
            self.config.max_attempts,
            tuning.backoff_base_seconds,
            tuning.backoff_cap_seconds,
            tuning.min_attempt_seconds,
        )
        self.poster = dispatcher.poster(self.stats, deadline)
        self.held: frozenset[str] = frozenset()  # attributes of the keys held in the retry lane
        self.leader_of: dict[str, int] = {}  # webhook-id: the first pending record with it
        # Webhook-ids of more than one pending record: only their leaders' results are awaited by others.
        self.shared_ids: frozenset[str] = frozenset()
        self.leader_results: dict[str, asyncio.Future[RecordResult]] = {}

    async def execute(self) -> BatchReport:
        records = self.batch.records
        recalled = self.delivered_ids.fetch(delivered_ids.lookup_keys(self.config.name, self.batch))
        already_finished = frozenset().union(*recalled.values())
        pending = []
        shared_ids = set()
        for index, record in enumerate(records):
            if record.item_identifier in already_finished:
                self.results[index] = RecordResult(Outcome.SKIPPED, reason="finished by an earlier invocation")
                self.stats.duplicates_skipped += 1
            else:
                pending.append(index)
                if self.leader_of.setdefault(record.webhook_id, index) != index:
                    shared_ids.add(record.webhook_id)
        self.shared_ids = frozenset(shared_ids)
        if self.lane is not None and is_ordered(self.config, self.batch):
            self.held = held_key_attributes(self.lane, self.stats)
        self.breaker.begin_invocation()
        checkpointer = asyncio.create_task(
            delivered_ids.checkpoint_periodically(
                self.delivered_ids,
                self.config.name,
                self.batch,
                self._delivered_so_far,
                self.checkpoint_interval_seconds,
            )
        )
        try:
            async with asyncio.TaskGroup() as sequences:
                for sequence in self._key_sequences(pending):
                    sequences.create_task(self._run_key_sequence(sequence))
        finally:
            checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpointer
        self._park()
        results = [self._result(index) for index in range(len(records))]
        if self.lane is not None:
            now = self.wall_clock()
            hand_over(self.lane, self.config, self.batch, self.raw_records, results, self.stats, now, self.held)
        report = BatchReport(self.batch, tuple(results), self.stats)
        delivered_ids.save_after_partial_failure(self.delivered_ids, self.config.name, report)
        report.count()
        return report

    def _key_sequences(self, pending: list[int]) -> list[list[int]]:
        """Records that must go out one after another share a key sequence; sequences run concurrently."""
        ordered = is_ordered(self.config, self.batch)
        sequences: dict[object, list[int]] = {}
        for index in pending:
            key = self.batch.records[index].partition_key
            sequences.setdefault(key if ordered and key is not None else index, []).append(index)
        for sequence in sequences.values():
            if len(sequence) > 1:  # most sequences are one record (every record, without ordering)
                # Records without a readable sequence number are parked before anything is sent: any place will do.
                sequence.sort(key=lambda index: self.batch.records[index].ordinal or 0)
        return list(sequences.values())

    async def _run_key_sequence(self, sequence: list[int]) -> None:
        key = self.batch.records[sequence[0]].partition_key
        # The key's attribute (a SHA-256) only when some key is held: most invocations hold none.
        held = bool(self.held) and key is not None and retry_lane.key_attribute(key) in self.held
        held_back_because = HELD_REASON if held else None
        for index in sequence:
            record = self.batch.records[index]
            if held_back_because is not None:
                result = RecordResult(Outcome.FAILED, reason=held_back_because)
            else:
                result = await self._deliver(index)
            self._settle(index, result)
            if result.outcome is Outcome.FAILED and held_back_because is None:
                held_back_because = (
                    f"held back: earlier record {record.item_identifier} of key {record.partition_key!r} "
                    "was not delivered"
                )

    def _settle(self, index: int, result: RecordResult) -> None:
        """Record the result; a record that is the first with its webhook-id also settles the records of
        other lanes that share the id (they wait for it, whether it was sent or held back). Ids no other
        record shares (almost all) get no future: nobody would wait for it."""
        self.results[index] = result
        webhook_id = self.batch.records[index].webhook_id
        if webhook_id in self.shared_ids and self.leader_of[webhook_id] == index:
            future = self._leader_result(webhook_id)
            if not future.done():
                future.set_result(result)

    async def _deliver(self, index: int) -> RecordResult:
        """One record's result. Its unforeseen error must not fail the other records of the batch: it is
        reported for retry (and logged with its trace) while the rest of the batch goes out."""
        record = self.batch.records[index]
        try:
            if record.unreadable_reason is not None:
                return RecordResult(Outcome.PARKED, reason=record.unreadable_reason)
            leader = self.leader_of[record.webhook_id]
            if leader != index:
                return self._follow(await self._leader_result(record.webhook_id), self.batch.records[leader])
            return await self._attempt(record)
        except Exception as error:
            logger.exception(
                "unexpected error delivering a record; reported for retry",
                extra={"webhook_id": record.webhook_id, "source_position": record.source_fields_for_logs()},
            )
            return RecordResult(Outcome.FAILED, reason=f"unexpected {type(error).__name__}")

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
        """Attempts until delivered, parked or out of attempts or time; the first attempt follows the same
        rules as every retry."""
        attempt = self.poster.attempt(record)
        while True:
            attempt.made += 1
            try:
                await self.poster.post(attempt)
            except TransientFailureError as failure:
                wait = self.policy.wait_before_next(attempt.made, failure.retry_after, self.poster.seconds_left())
                if wait is None:
                    return self._attempted(attempt.made, Outcome.FAILED, failure.status, failure.reason)
                await self.sleep(wait)
            except PermanentFailureError as failure:
                return self._attempted(attempt.made, Outcome.PARKED, failure.status, failure.reason)
            except CircuitOpenError as error:
                return RecordResult(Outcome.FAILED, attempt.made - 1, reason=str(error))
            except DeadlineReachedError:
                return RecordResult(Outcome.FAILED, attempt.made - 1, reason="invocation deadline reached; not sent")
            else:
                return self._attempted(attempt.made, Outcome.DELIVERED, 200)

    def _attempted(self, attempts: int, outcome: Outcome, status: int | None, reason: str = "") -> RecordResult:
        """The result of a record that was sent at least once: every attempt after its first was a retry."""
        self.stats.retried += attempts - 1
        if attempts == 1 and outcome is Outcome.DELIVERED:
            return _DELIVERED_AT_ONCE  # a result is immutable: almost every record shares this one
        return RecordResult(outcome, attempts, status, reason)

    def _park(self) -> None:
        """Set the parked records aside in one go; one that cannot be parked is reported failed."""
        to_park = [i for i, result in enumerate(self.results) if result and result.outcome is Outcome.PARKED]
        if not to_park:
            return
        parked_at = rfc3339_from_epoch_seconds(self.wall_clock())
        records = [(self.batch.records[index], self._result(index)) for index in to_park]
        unparked = park(self.parked_records, self.config, records, parked_at)
        for position, result in unparked.items():
            self.results[to_park[position]] = result

    def _result(self, index: int) -> RecordResult:
        result = self.results[index]
        assert result is not None
        return result

    def _delivered_so_far(self) -> list[SourceRecord]:
        """Delivered, or delivered earlier: parked records are in the parked-records queue only once _park() ran."""
        return [
            record
            for record, result in zip(self.batch.records, self.results, strict=True)
            if result is not None and result.outcome in (Outcome.DELIVERED, Outcome.SKIPPED)
        ]
