"""The retry lane's rules: entry ids, held-key attributes, FIFO groups, the lane message body and the rounds."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher import retry_lane
from dispatcher.records import REDRIVE_FIELD, parse_event
from tests.events import event, kinesis_record, sqs_record

SCHEDULE = (300, 1800, 7200)
SINCE = 1_795_000_000.25


def only_record(raw: dict[str, Any]) -> Any:
    (record,) = parse_event(event(raw)).records
    return record


# --- names ---------------------------------------------------------------------------------------------


def test_entry_id_is_the_same_for_the_same_record_and_differs_for_another() -> None:
    # Given one Kinesis record, the same record re-sent, its neighbour, and a redrive of it
    first = only_record(kinesis_record(1, {"id": "evt-1"}))
    resent = only_record(kinesis_record(1, {"id": "evt-1"}))
    neighbour = only_record(kinesis_record(2, {"id": "evt-1"}))
    redriven = only_record(kinesis_record(1, {"id": "evt-1"}) | {REDRIVE_FIELD: "2026-11-27T10:00:00.000Z"})
    # Then a re-sent record is the same entry, and 32 hex digits name it
    entry = retry_lane.entry_id("orders-to-ledger", first)
    assert entry == retry_lane.entry_id("orders-to-ledger", resent)
    assert len(entry) == 32
    assert set(entry) <= set("0123456789abcdef")
    # and another position, another subscription or a redrive is another entry
    assert entry != retry_lane.entry_id("orders-to-ledger", neighbour)
    assert entry != retry_lane.entry_id("orders-to-audit", first)
    assert entry != retry_lane.entry_id("orders-to-ledger", redriven)


def test_key_attribute_is_k_and_32_hex_digits_of_the_keys_sha256() -> None:
    key = "customer-42 ✓\r\n"
    expected = "k" + hashlib.sha256(key.encode()).hexdigest()[:32]
    assert retry_lane.key_attribute(key) == expected


def test_ordered_records_share_their_keys_group_and_unordered_ones_have_their_own() -> None:
    entry = "0" * 32
    ordered = retry_lane.group_id("customer-42", entry)
    assert ordered == "key:" + retry_lane.key_attribute("customer-42")[1:]
    assert retry_lane.key_attribute_of_group(ordered) == retry_lane.key_attribute("customer-42")
    unordered = retry_lane.group_id(None, entry)
    assert unordered == "record:" + entry
    assert retry_lane.key_attribute_of_group(unordered) is None


# --- the body ------------------------------------------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)


@given(
    key=st.none() | st.text(),
    record=st.dictionaries(st.text(), json_values, max_size=5),
    attempts=st.integers(0, 20),
    since=st.floats(0, 4e9),
    last_status=st.none() | st.integers(100, 599),
    reason=st.text(),
)
def test_a_body_reads_back_as_written(
    key: str | None, record: dict[str, Any], attempts: int, since: float, last_status: int | None, reason: str
) -> None:
    body = retry_lane.encode("orders-to-ledger", "e" * 32, key, record, attempts, since, last_status, reason)
    # Then it is ASCII (whatever the key or record holds, SQS takes it) and reads back unchanged
    assert body.isascii()
    expected = retry_lane.LaneEntry("orders-to-ledger", "e" * 32, key, record, attempts, since, last_status, reason)
    assert retry_lane.decode(body, "orders-to-ledger") == expected


def valid_body(**changes: Any) -> str:
    body = json.loads(
        retry_lane.encode("orders-to-ledger", "e" * 32, "c-1", sqs_record("m-1", {}), 3, SINCE, 503, "HTTP 503")
    )
    for name, value in changes.items():
        if value is ...:
            del body[name]
        else:
            body[name] = value
    return json.dumps(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "lane message body is NoneType, not a string"),
        ("{", "lane message body is not JSON"),
        ("[1]", "lane message body is a JSON list, not an object"),
        (valid_body(v=2), "lane message version 2 is not 1"),
        (valid_body(subscription="other"), "lane message of subscription 'other', not 'orders-to-ledger'"),
        (valid_body(entry_id=...), "lane message field 'entry_id' is missing, not str"),
        (valid_body(key=7), "lane message field 'key' is int, not str or null"),
        (valid_body(record="x"), "lane message field 'record' is str, not dict"),
        (valid_body(attempts=-1), "lane message field 'attempts' is -1, not a count"),
        (valid_body(attempts=True), "lane message field 'attempts' is bool, not int"),
        (valid_body(lane_since="yesterday"), "lane message field 'lane_since' is 'yesterday', not epoch seconds"),
        (valid_body(last_status="503"), "lane message field 'last_status' is str, not int or null"),
        (valid_body(reason=...), "lane message field 'reason' is missing, not str"),
    ],
)
def test_an_unreadable_body_is_refused_naming_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(retry_lane.UnreadableLaneMessageError) as refused:
        retry_lane.decode(body, "orders-to-ledger")
    assert str(refused.value).startswith(message)


@pytest.mark.adversarial
@given(st.text() | st.binary().map(lambda data: data.decode("latin-1")))
def test_any_body_is_read_or_refused_with_a_reason_never_crashes(body: str) -> None:
    try:
        entry = retry_lane.decode(body, "orders-to-ledger")
    except retry_lane.UnreadableLaneMessageError as refused:
        reason = str(refused)
    else:
        reason = entry.subscription
    assert reason


# --- rounds --------------------------------------------------------------------------------------------


def test_rounds_are_due_at_the_cumulative_waits_after_the_hand_over() -> None:
    assert retry_lane.due_times(SINCE, SCHEDULE) == [SINCE + 300, SINCE + 2100, SINCE + 9300]
    assert retry_lane.round_at(SINCE + 299.9, SINCE, SCHEDULE) == 0
    assert retry_lane.round_at(SINCE + 300, SINCE, SCHEDULE) == 1
    assert retry_lane.round_at(SINCE + 9300, SINCE, SCHEDULE) == 3
    # A record that waited long (behind its key's head) does not burst through the rounds it missed
    assert retry_lane.round_at(SINCE + 86_400, SINCE, SCHEDULE) == 3
    assert retry_lane.next_due(SINCE + 300, SINCE, SCHEDULE) == SINCE + 2100
    assert retry_lane.next_due(SINCE + 9300, SINCE, SCHEDULE) is None


@given(
    schedule=st.lists(st.integers(1, 50_000), min_size=1, max_size=20),
    elapsed=st.floats(-100, 1_000_000, allow_nan=False),
)
def test_the_next_due_time_is_the_next_round(schedule: list[int], elapsed: float) -> None:
    now = SINCE + elapsed
    current = retry_lane.round_at(now, SINCE, schedule)
    due = retry_lane.next_due(now, SINCE, schedule)
    if due is None:
        assert current == len(schedule)
    else:
        assert due > now
        assert retry_lane.round_at(due, SINCE, schedule) == current + 1


def test_dispatch_attempt_counts_on_across_rounds() -> None:
    assert retry_lane.dispatch_attempt(5, 1) == 6  # five attempts in the invocation, then round 1
    assert retry_lane.dispatch_attempt(0, 0) == 1  # joined without being sent: its first POST
    assert retry_lane.dispatch_attempt(0, 2) == 3


def test_a_deferral_is_whole_seconds_and_comes_back_to_be_looked_at_again() -> None:
    # Given a lane round deciding how long a record stays out of sight
    now = datetime(2026, 11, 27, tzinfo=UTC).timestamp()
    # Then part seconds round up, a time already past waits one second, and a far round comes back early (so its
    # age is published while it waits), well within what SQS allows
    assert retry_lane.defer_seconds(now + 299.2, now) == 300
    assert retry_lane.defer_seconds(now - 5, now) == 1
    assert retry_lane.defer_seconds(now + 86_400, now) == retry_lane.LANE_LOOK_AGAIN_SECONDS
    assert retry_lane.LANE_LOOK_AGAIN_SECONDS < retry_lane.MAX_DEFER_SECONDS < 12 * 3600
