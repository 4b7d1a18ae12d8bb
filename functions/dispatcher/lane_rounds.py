"""One invocation of the retry lane (docs/retry-lanes.md, "A lane round"): each lane message is the head of its
FIFO group or follows it in the batch; a head whose round is due gets one POST with the source path's rules,
one not yet due is deferred to its due time, and the messages after a deferred or unfinished head wait with it.

What is deferred or not finished is reported to the lane's mapping (batchItemFailures), which leaves it in the
queue; what is delivered or parked is deleted by the mapping, and its entry id leaves its key's set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dispatcher import retry_lane
from dispatcher.outcomes import DeliveryStats, Outcome, RecordResult
from dispatcher.parked_message import park
from dispatcher.posting import DeadlineReachedError, PermanentFailureError, RecordPoster, TransientFailureError
from dispatcher.records import SourceRecord, UnsupportedEventError, parse_event
from dispatcher.throttle import CircuitOpenError
from dispatcher.timestamps import rfc3339_from_epoch_seconds

if TYPE_CHECKING:
    from dispatcher.delivery import Dispatcher

logger = logging.getLogger(__name__)

EXHAUSTED = "retry schedule exhausted"  # the parking reason after the last round


def comes_from(event: Mapping[str, Any], queue_name: str) -> bool:
    """Whether the event's records come from the queue `queue_name` (Lambda never mixes sources in one event)."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    first = records[0] if isinstance(records, list) and records else None
    arn = first.get("eventSourceARN") if isinstance(first, Mapping) else None
    return isinstance(arn, str) and arn.rsplit(":", 1)[-1] == queue_name


@dataclass
class LaneReport:
    """What became of a lane batch: its counts, and the lane messages left in the queue."""

    stats: DeliveryStats
    left_in_lane: list[str] = field(default_factory=list)  # message ids: deferred or not finished

    def response(self) -> dict[str, list[dict[str, str]]]:
        identifiers = dict.fromkeys(self.left_in_lane)
        return {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in identifiers]}


@dataclass(frozen=True, slots=True)
class _Wait:
    """A lane message left in the queue: for `seconds` (deferred), or None for the mapping's visibility timeout."""

    seconds: int | None


@dataclass(frozen=True, slots=True)
class _Finishing:
    """A lane message whose record is delivered or to be parked; `held` names its entry in the held keys."""

    held: tuple[str, str] | None  # (key attribute, entry id) of an ordered key
    to_park: tuple[SourceRecord, RecordResult] | None = None


@dataclass
class _Settled:
    """What parking and releasing finished messages came to."""

    parked: int = 0
    released: dict[str, frozenset[str]] = field(default_factory=dict)  # key attribute -> entry ids released
    left_in_lane: list[str] = field(default_factory=list)  # message ids: not parked, or not released


class LaneRound:
    def __init__(self, dispatcher: Dispatcher, ports: retry_lane.LanePorts, deadline: float) -> None:
        self.config = dispatcher.subscription
        self.schedule = self.config.retry_schedule_seconds
        self.ports = ports
        self.parked_records = dispatcher.parked_records
        self.wall_clock = dispatcher.wall_clock
        self.breaker = dispatcher.breaker
        self.report = LaneReport(DeliveryStats())
        self.poster: RecordPoster = dispatcher.poster(self.report.stats, deadline)
        self.deferrals: dict[str, int] = {}  # receipt handle -> seconds
        self.finishing: dict[str, _Finishing] = {}  # lane message id -> how it finishes
        self.held: dict[str, frozenset[str]] = {}  # the held keys as this round began: attribute -> entry ids
        self.released: dict[str, frozenset[str]] = {}  # the entry ids this round released

    async def execute(self, event: Mapping[str, Any]) -> LaneReport:
        lane_batch = parse_event(event)  # the lane's own FIFO messages: their group, id and deduplication id
        raw_records: list[Mapping[str, Any]] = event["Records"]
        groups: dict[str | None, list[int]] = {}
        for index, message in enumerate(lane_batch.records):
            groups.setdefault(message.partition_key, []).append(index)
        try:
            self.held = self.ports.held_keys.read()
        except Exception:
            # Without the held keys a message finished by an invocation that then crashed cannot be told apart: all
            # stay in the lane and come back after the mapping's visibility timeout.
            logger.exception("could not read the held keys; the lane batch stays in the lane")
            self.report.left_in_lane.extend(message.item_identifier for message in lane_batch.records)
            return self.report
        self.breaker.begin_invocation()
        async with asyncio.TaskGroup() as running:
            for indexes in groups.values():
                running.create_task(self._run_group([(lane_batch.records[i], raw_records[i]) for i in indexes]))
        settled = self._settle(self.finishing)
        self._count(settled)
        if self.deferrals:
            self._defer()
        still_held = {
            attribute: ids - self.released.get(attribute, frozenset()) for attribute, ids in self.held.items()
        }
        self.report.stats.held_keys = sum(1 for ids in still_held.values() if ids)
        return self.report

    async def _run_group(self, messages: Sequence[tuple[SourceRecord, Mapping[str, Any]]]) -> None:
        """A group's messages in FIFO order: each after the one before it finished; the rest wait with a
        head that is left in the lane."""
        waiting: _Wait | None = None
        for position, (message, raw) in enumerate(messages):
            outcome = waiting or await self._round_contained(message, raw)
            if isinstance(outcome, _Finishing) and position < len(messages) - 1:
                # Parked and released before the key's next record goes out: were the invocation to crash after
                # that, this message would come back, and a record parked (or delivered) but still held would be
                # sent again behind its successor.
                settled = await asyncio.to_thread(self._settle, {message.item_identifier: outcome})
                self._count(settled)
                if settled.left_in_lane:
                    outcome = _Wait(None)
                else:
                    continue
            if isinstance(outcome, _Wait):
                waiting = outcome
                self.report.left_in_lane.append(message.item_identifier)
                if outcome.seconds is not None:
                    self.deferrals[str(raw.get("receiptHandle"))] = outcome.seconds
            else:
                self.finishing[message.item_identifier] = outcome

    async def _round_contained(self, message: SourceRecord, raw: Mapping[str, Any]) -> _Wait | _Finishing:
        """One message's unforeseen error must not fail the others: it is left in the lane (and logged)."""
        try:
            return await self._round(message, raw)
        except Exception:
            logger.exception(
                "unexpected error in a lane round; left in the lane", extra={"lane_message_id": message.item_identifier}
            )
            return _Wait(None)

    async def _round(self, message: SourceRecord, raw: Mapping[str, Any]) -> _Wait | _Finishing:
        try:
            entry = retry_lane.decode(raw.get("body"), self.config.name)
            (record,) = parse_event({"Records": [entry.record]}).records
        except (retry_lane.UnreadableLaneMessageError, UnsupportedEventError) as unreadable:
            # Parked as the lane message it is, never retried for ever; its key is released by its group.
            attribute = retry_lane.key_attribute_of_group(message.partition_key or "")
            dedup_id = message.extra_source_fields.get("message_deduplication_id")
            unread_entry = retry_lane.entry_of_deduplication_id(str(dedup_id))
            unread_held = (attribute, unread_entry) if attribute is not None else None
            result = RecordResult(Outcome.PARKED, reason=f"unreadable retry-lane message: {unreadable}")
            return _Finishing(unread_held, (message, result))
        held = (retry_lane.key_attribute(entry.key), entry.entry_id) if entry.key is not None else None
        if held is not None and not self._still_held(*held):
            # Its entry left the key's set: an invocation delivered or parked it, released it and then crashed
            # before the mapping deleted the message. Sending it now would overtake nothing but follow later
            # records of its key that went out since: it is finished, never sent again.
            self.report.stats.duplicates_skipped += 1
            return _Finishing(None)
        if record.unreadable_reason is not None:
            return _Finishing(held, (record, RecordResult(Outcome.PARKED, reason=record.unreadable_reason)))
        now = self.wall_clock()
        # A group's head is its oldest record (the ones behind it joined later): the heads give the lane's age.
        stats = self.report.stats
        stats.oldest_lane_age_seconds = max(stats.oldest_lane_age_seconds or 0.0, max(0.0, now - entry.lane_since))
        retry_round = retry_lane.round_at(now, entry.lane_since, self.schedule)
        if retry_round == 0 and entry.attempts > 0:
            first_due = entry.lane_since + self.schedule[0]
            return _Wait(retry_lane.defer_seconds(first_due, now))
        attempts = retry_lane.dispatch_attempt(entry.attempts, retry_round)
        attempt = self.poster.attempt(record, retry_round or None, made_before=attempts - 1)
        attempt.made = 1
        try:
            await self.poster.post(attempt)
        except (CircuitOpenError, DeadlineReachedError):
            self.report.stats.failed += 1
            return _Wait(retry_lane.LANE_NOT_ATTEMPTED_DEFER_SECONDS)
        except TransientFailureError as failure:
            self.report.stats.retried += int(attempts > 1)
            due = retry_lane.next_due(now, entry.lane_since, self.schedule)
            if due is None:
                return _Finishing(held, (record, RecordResult(Outcome.PARKED, attempts, failure.status, EXHAUSTED)))
            self.report.stats.failed += 1
            return _Wait(retry_lane.defer_seconds(max(due, now + (failure.retry_after or 0.0)), now))
        except PermanentFailureError as failure:
            self.report.stats.retried += int(attempts > 1)
            return _Finishing(held, (record, RecordResult(Outcome.PARKED, attempts, failure.status, failure.reason)))
        self.report.stats.retried += int(attempts > 1)
        self.report.stats.delivered += 1
        return _Finishing(held)

    def _still_held(self, attribute: str, entry: str) -> bool:
        """Whether the entry is held: it was when this round began, and the round has not released it (a second
        copy of an entry behind the first)."""
        return entry in self.held.get(attribute, frozenset()) and entry not in self.released.get(attribute, frozenset())

    def _settle(self, finishing: Mapping[str, _Finishing]) -> _Settled:
        """Park what is to be parked in one go, then release the entry ids of what finished (one write). A record
        that could not be parked stays in the lane; so does every held one when the release fails (deleted, their
        entries would hold their keys for good; left in the lane they come back ahead of everything later of their
        key, go out again under the same webhook-id or are parked again, and are released then)."""
        settled = _Settled()
        to_park = [(message_id, how.to_park) for message_id, how in finishing.items() if how.to_park]
        unparked: set[str] = set()
        if to_park:
            parked_at = rfc3339_from_epoch_seconds(self.wall_clock())
            failed = park(self.parked_records, self.config, [record for _, record in to_park], parked_at)
            unparked = {to_park[position][0] for position in failed}
            settled.parked = len(to_park) - len(unparked)
            settled.left_in_lane.extend(unparked)
        held = {
            message_id: how.held for message_id, how in finishing.items() if how.held and message_id not in unparked
        }
        released: dict[str, set[str]] = {}
        for attribute, entry in held.values():
            released.setdefault(attribute, set()).add(entry)
        if not released:
            return settled
        entries = {attribute: frozenset(ids) for attribute, ids in released.items()}
        try:
            self.ports.held_keys.release(entries)
        except Exception:
            logger.exception("could not release finished entries from the held keys; they stay in the lane")
            settled.left_in_lane.extend(held)
            return settled
        settled.released = entries
        return settled

    def _count(self, settled: _Settled) -> None:
        self.report.stats.parked += settled.parked
        self.report.left_in_lane.extend(settled.left_in_lane)
        for attribute, ids in settled.released.items():
            self.released[attribute] = self.released.get(attribute, frozenset()) | ids

    def _defer(self) -> None:
        try:
            not_deferred = self.ports.lane.defer(self.deferrals)
        except Exception as error:
            not_deferred = dict.fromkeys(self.deferrals, f"{type(error).__name__}: {error}")
        if not_deferred:
            # Still reported: they come back after the mapping's visibility timeout and are deferred again.
            logger.warning("could not defer lane messages", extra={"count": len(not_deferred)})
