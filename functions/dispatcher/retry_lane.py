"""The retry lane's rules (docs/retry-lanes.md): entry ids, held-key attribute names, FIFO groups, the lane
message's body, and the rounds as a function of the time. Pure functions: the source path's hand-over
(lane_handover.py) and the lane rounds (lane_rounds.py) share them."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from dispatcher.ports import HeldKeys, RetryLane
from dispatcher.records import SourceRecord
from dispatcher.timestamps import rfc3339

LANE_MESSAGE_VERSION = 1
HASH_HEX_DIGITS = 32  # of a SHA-256: 128 bits, no collision among any number of keys or records held at once
KEY_ATTRIBUTE_PREFIX = "k"
ORDERED_GROUP_PREFIX = "key:"
UNORDERED_GROUP_PREFIX = "record:"
DEDUPLICATION_ID_SEPARATOR = "."
MAX_LANE_MESSAGE_BYTES = 256 * 1024  # SQS's message size limit
# SQS keeps a received message invisible for at most 12 hours counted from its receipt; a Lambda invocation
# (at most 15 minutes) has already used some of that when it defers.
MAX_DEFER_SECONDS = 12 * 3600 - 15 * 60
# A deferred record is looked at again at least this often, so each lane round can publish RetryLaneAge for every
# key still waiting (SQS's own ApproximateAgeOfOldestMessage leaves out a message received three times or more:
# it would miss exactly the stuck keys). Costs a stuck key about 100 receives a day.
LANE_LOOK_AGAIN_SECONDS = 15 * 60
# A due record that was not attempted (circuit open, invocation deadline) is tried again this much later,
# without using up its round.
LANE_NOT_ATTEMPTED_DEFER_SECONDS = 30


class UnreadableLaneMessageError(ValueError):
    """A lane message this function cannot read; names what is wrong (it is parked with this reason)."""


@dataclass(frozen=True, slots=True)
class LanePorts:
    """The retry lane of a subscription with a retry schedule, and the held keys beside it."""

    queue_name: str  # the lane queue's name: an event from it is a lane round
    lane: RetryLane
    held_keys: HeldKeys


@dataclass(frozen=True, slots=True)
class LaneEntry:
    """A lane message's body, read back."""

    subscription: str
    entry_id: str
    key: str | None  # the ordering key; None for a record that retries on its own
    record: Mapping[str, Any]  # the Lambda event record exactly as the source path received it
    attempts: int  # POSTs the source path made (0: it joined behind a held key without being sent)
    lane_since: float  # epoch seconds of the hand-over: the anchor of its schedule
    last_status: int | None
    reason: str


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX_DIGITS]


def entry_id(subscription: str, record: SourceRecord) -> str:
    """The same record handed over twice (a re-sent batch) is the same entry. A redrive of the record is
    another entry: it is a replay an operator chose, not a copy of the first."""
    redrive = rfc3339(record.redriven_at) if record.redriven_at is not None else ""
    position = (record.source_arn, record.shard_id or "", record.item_identifier)
    # A JSON array keeps the parts apart: ("a", "b:c") and ("a:b", "c") hash differently.
    return _digest(json.dumps([subscription, record.webhook_id, *position, redrive], ensure_ascii=False))


def deduplication_id(entry: str, handed_over_at: float) -> str:
    """The lane message's MessageDeduplicationId: its entry id and the hand-over's time, so SQS never drops a
    second hand-over of an entry. Dropping it would be wrong when the lane released the entry in between: the
    hand-over holds the entry again, and with no message left to release it, its key would stay held for good.
    A second copy while the entry is still held is harmless: whichever comes second finds the entry released
    and is deleted unsent."""
    return f"{entry}{DEDUPLICATION_ID_SEPARATOR}{round(handed_over_at * 1000)}"


def entry_of_deduplication_id(deduplication: str) -> str:
    return deduplication.split(DEDUPLICATION_ID_SEPARATOR, 1)[0]


def key_attribute(key: str) -> str:
    """The held-keys item's attribute of `key`: a valid DynamoDB name whatever the key holds."""
    return KEY_ATTRIBUTE_PREFIX + _digest(key)


def group_id(key: str | None, entry: str) -> str:
    """FIFO group: per ordered key (FIFO order is the key's order), per record otherwise."""
    return ORDERED_GROUP_PREFIX + _digest(key) if key is not None else UNORDERED_GROUP_PREFIX + entry


def key_attribute_of_group(group: str) -> str | None:
    """The held-keys attribute an ordered group's messages hold (None for an unordered record's group)."""
    digest = group.removeprefix(ORDERED_GROUP_PREFIX)
    return KEY_ATTRIBUTE_PREFIX + digest if digest != group else None


def encode(
    subscription: str,
    entry: str,
    key: str | None,
    raw_record: Mapping[str, Any],
    attempts: int,
    lane_since: float,
    last_status: int | None,
    reason: str,
) -> str:
    """The lane message's body (JSON, docs/retry-lanes.md)."""
    body = {
        "v": LANE_MESSAGE_VERSION,
        "subscription": subscription,
        "entry_id": entry,
        "key": key,
        "record": raw_record,
        "attempts": attempts,
        "lane_since": lane_since,
        "last_status": last_status,
        "reason": reason,
    }
    # ASCII only: every character SQS refuses in a body (control characters, lone surrogates) is escaped.
    return json.dumps(body, separators=(",", ":"))


def decode(body: object, subscription: str) -> LaneEntry:
    """Read a lane message's body; raises UnreadableLaneMessageError naming the first field at fault."""
    if not isinstance(body, str):
        raise UnreadableLaneMessageError(f"lane message body is {type(body).__name__}, not a string")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise UnreadableLaneMessageError(f"lane message body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise UnreadableLaneMessageError(f"lane message body is a JSON {type(document).__name__}, not an object")
    if document.get("v") != LANE_MESSAGE_VERSION:
        raise UnreadableLaneMessageError(f"lane message version {document.get('v')!r} is not {LANE_MESSAGE_VERSION}")
    if document.get("subscription") != subscription:
        raise UnreadableLaneMessageError(
            f"lane message of subscription {document.get('subscription')!r}, not {subscription!r}"
        )
    return LaneEntry(
        subscription=subscription,
        entry_id=_field(document, "entry_id", str),
        key=_field(document, "key", str, optional=True),
        record=_field(document, "record", dict),
        attempts=_count(document, "attempts"),
        lane_since=_time(document, "lane_since"),
        last_status=_field(document, "last_status", int, optional=True),
        reason=_field(document, "reason", str),
    )


def _field(document: Mapping[str, Any], name: str, kind: type, *, optional: bool = False) -> Any:
    value = document.get(name)
    if (value is None and optional) or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    expected = f"{kind.__name__}{' or null' if optional else ''}"
    got = "missing" if name not in document else type(value).__name__
    raise UnreadableLaneMessageError(f"lane message field {name!r} is {got}, not {expected}")


def _count(document: Mapping[str, Any], name: str) -> int:
    value: int = _field(document, name, int)
    if value < 0:
        raise UnreadableLaneMessageError(f"lane message field {name!r} is {value}, not a count")
    return value


def _time(document: Mapping[str, Any], name: str) -> float:
    value = document.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    raise UnreadableLaneMessageError(f"lane message field {name!r} is {value!r}, not epoch seconds")


def due_times(lane_since: float, schedule: Sequence[int]) -> list[float]:
    """When each round r = 1 .. n is due: lane_since + sum(schedule[:r])."""
    return [lane_since + waited for waited in accumulate(schedule)]


def round_at(t: float, lane_since: float, schedule: Sequence[int]) -> int:
    """The round of a record received at `t`: how many of its due times are at or before `t`."""
    return sum(1 for due in due_times(lane_since, schedule) if due <= t)


def next_due(t: float, lane_since: float, schedule: Sequence[int]) -> float | None:
    """The first due time after `t`; None once the last round is due."""
    return next((due for due in due_times(lane_since, schedule) if due > t), None)


def dispatch_attempt(source_attempts: int, retry_round: int) -> int:
    """`dispatch-attempt` counts on across rounds: the source path's attempts (at least 1) plus the round."""
    return max(source_attempts, 1) + retry_round


def defer_seconds(until: float, now: float) -> int:
    """Whole seconds from `now` to `until` (at least 1), but no more than LANE_LOOK_AGAIN_SECONDS: a record due
    later is deferred again when it comes back early."""
    return max(1, min(LANE_LOOK_AGAIN_SECONDS, math.ceil(until - now)))
