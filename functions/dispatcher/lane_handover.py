"""The source path's side of the retry lane (docs/retry-lanes.md, "The source path"): which keys of a batch
are held, and the hand-over of the records still failing at the end of an invocation, so the source moves on.

A record is never dropped: one that cannot join the lane (and every later record of its key) is reported to
its source as without a lane, and its entry id is taken out of its key's set again."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dispatcher import retry_lane
from dispatcher.config import SubscriptionConfig
from dispatcher.outcomes import DeliveryStats, Outcome, RecordResult
from dispatcher.ports import LaneMessage
from dispatcher.records import Batch, SourceRecord

logger = logging.getLogger(__name__)

HELD_REASON = "key held in the retry lane: joins it behind the key's earlier records"


def is_ordered(config: SubscriptionConfig, batch: Batch) -> bool:
    """Whether records of one key go out one after another (and so a key can be held)."""
    return config.ordering == "partition-key" or batch.ordered_by_source


def held_key_attributes(ports: retry_lane.LanePorts, stats: DeliveryStats) -> frozenset[str]:
    """The attributes of the keys held now: one consistent read per batch."""
    held = ports.held_keys.read()
    stats.held_keys = len(held)
    return frozenset(held)


@dataclass(frozen=True, slots=True)
class _Candidate:
    index: int  # in the batch
    entry_id: str
    key: str | None  # None: the record retries on its own
    message: LaneMessage


def hand_over(
    ports: retry_lane.LanePorts,
    config: SubscriptionConfig,
    batch: Batch,
    raw_records: Sequence[Mapping[str, Any]],
    results: list[RecordResult],
    stats: DeliveryStats,
    now: float,
    held: frozenset[str],
) -> None:
    """Hand every record still FAILED in `results` to the lane, updating `results` in place: handed over, or
    still FAILED (reported to the source) with why it could not join. `held`: the key attributes held before."""
    ordered = is_ordered(config, batch)
    failing = [index for index, result in enumerate(results) if result.outcome is Outcome.FAILED]
    # FIFO order within a group is the order sent: per key, the source's sequence order.
    failing.sort(key=lambda index: batch.records[index].ordinal or 0)
    candidates = [
        _candidate(config, batch.records[index], raw_records[index], results[index], index, ordered, now)
        for index in failing
    ]
    if not candidates:
        return
    unsent = _too_large(candidates)
    _hold_back_later_records(candidates, unsent)
    sendable = [position for position in range(len(candidates)) if position not in unsent]
    not_sent = _send(ports, [candidates[position] for position in sendable])
    unsent |= {sendable[position]: why for position, why in not_sent.items()}
    _hold_back_later_records(candidates, unsent)
    _settle(candidates, unsent, results, stats)
    _release([candidates[position] for position in sendable if position in unsent], ports)
    if stats.held_keys is not None:
        handed = [candidate for position, candidate in enumerate(candidates) if position not in unsent]
        stats.held_keys = len(held | _entries_by_key(handed).keys())


def _send(ports: retry_lane.LanePorts, joining: Sequence[_Candidate]) -> dict[int, str]:
    """Hold the keys (one write), then send; the positions in `joining` not sent, each with why."""
    if not joining:
        return {}
    try:
        if any(candidate.key is not None for candidate in joining):
            ports.held_keys.hold(_entries_by_key(joining))
        return ports.lane.send([candidate.message for candidate in joining])
    except Exception as error:
        logger.exception("could not hand records to the retry lane; they are reported to the source")
        return dict.fromkeys(range(len(joining)), f"{type(error).__name__}: {error}")


def _settle(
    candidates: Sequence[_Candidate], unsent: Mapping[int, str], results: list[RecordResult], stats: DeliveryStats
) -> None:
    """Each candidate handed over, or still FAILED with why it could not join."""
    for position, candidate in enumerate(candidates):
        result = results[candidate.index]
        if position in unsent:
            results[candidate.index] = replace(result, reason=f"could not join the retry lane: {unsent[position]}")
        else:
            results[candidate.index] = replace(result, outcome=Outcome.HANDED_TO_LANE)
            stats.handed_to_lane += 1


def _candidate(
    config: SubscriptionConfig,
    record: SourceRecord,
    raw_record: Mapping[str, Any],
    result: RecordResult,
    index: int,
    ordered: bool,
    now: float,
) -> _Candidate:
    entry = retry_lane.entry_id(config.name, record)
    key = record.partition_key if ordered else None
    body = retry_lane.encode(
        config.name, entry, key, raw_record, result.attempts, now, result.last_status, result.reason
    )
    message = LaneMessage(retry_lane.group_id(key, entry), retry_lane.deduplication_id(entry, now), body)
    return _Candidate(index, entry, key, message)


def _too_large(candidates: Sequence[_Candidate]) -> dict[int, str]:
    """Messages SQS would refuse for their size: reported to the source, never dropped."""
    unsent: dict[int, str] = {}
    for position, candidate in enumerate(candidates):
        size = len(candidate.message.body.encode("utf-8", "surrogatepass"))
        if size > retry_lane.MAX_LANE_MESSAGE_BYTES:
            unsent[position] = f"lane message of {size} bytes exceeds SQS's {retry_lane.MAX_LANE_MESSAGE_BYTES}"
    return unsent


def _hold_back_later_records(candidates: Sequence[_Candidate], unsent: dict[int, str]) -> None:
    """A record of a group that could not join keeps every later record of the group out too (its key's
    order is kept by the source, which sends them again)."""
    stopped: dict[str, str] = {}
    for position, candidate in enumerate(candidates):
        group = candidate.message.group
        if group in stopped and position not in unsent:
            unsent[position] = f"held back: earlier record {stopped[group]} of its key could not join"
        elif position in unsent and group not in stopped:
            stopped[group] = candidate.entry_id


def _entries_by_key(candidates: Sequence[_Candidate]) -> dict[str, frozenset[str]]:
    """The entry ids of the ordered records, by their key's attribute of the held-keys item."""
    entries: dict[str, set[str]] = {}
    for candidate in candidates:
        if candidate.key is not None:
            entries.setdefault(retry_lane.key_attribute(candidate.key), set()).add(candidate.entry_id)
    return {attribute: frozenset(ids) for attribute, ids in entries.items()}


def _release(candidates: Sequence[_Candidate], ports: retry_lane.LanePorts) -> None:
    """Take the entry ids of records that did not join out of their keys' sets (best effort: if this fails,
    the key stays held until the re-sent record joins under the same entry id)."""
    entries = _entries_by_key(candidates)
    if not entries:
        return
    try:
        ports.held_keys.release(entries)
    except Exception:
        logger.exception("could not release the entry ids of records that did not join the retry lane")
