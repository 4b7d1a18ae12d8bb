"""Lane rounds: a record's round is a function of the time; a due head gets one POST with the source path's
rules, one not due yet is deferred, and the messages behind a head left in the lane wait with it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from dispatcher import retry_lane
from dispatcher.lane_rounds import EXHAUSTED, LaneReport
from dispatcher.ports import LaneMessage
from tests.events import STREAM, event, kinesis_record, sequence_number
from tests.fakes import LANE_VISIBILITY_TIMEOUT_SECONDS, SECRET, transport_failure
from tests.unit.conftest import Harness, subscription

SCHEDULE = (60, 120, 180)
SOURCE_ATTEMPTS = 2


def webhook_id(position: int) -> str:
    return f"{STREAM}:{sequence_number(position)}"


async def stuck(*positions_and_keys: tuple[int, str], **overrides: Any) -> Harness:
    """A harness whose lane holds the given records: the first of each key after failing its attempts."""
    harness = Harness(
        subscription(retry_schedule_seconds=SCHEDULE, max_attempts=SOURCE_ATTEMPTS, **overrides), lane=True
    )
    harness.endpoint.default = 503
    batch = event(*(kinesis_record(position, {"n": position}, key) for position, key in positions_and_keys))
    await harness.dispatch(batch)
    assert len(harness.lane) == len(positions_and_keys)
    harness.endpoint.requests.clear()
    harness.endpoint.default = 200
    return harness


async def round_after(harness: Harness, seconds: float) -> LaneReport:
    harness.clock.advance(seconds)
    report = await harness.lane_round()
    assert report is not None
    return report


async def test_a_record_received_before_its_first_round_is_deferred_to_it_without_a_post() -> None:
    harness = await stuck((1, "k"))
    # The mapping may hand a message over at once; its first round is due 60 s after the hand-over
    report = await round_after(harness, 10)
    assert harness.endpoint.requests == []
    assert report.response() == {"batchItemFailures": [{"itemIdentifier": "lane-0"}]}
    assert harness.lane.deferrals == [{"lane-0-receipt-1": 50}]
    assert len(harness.lane) == 1


async def test_a_due_round_posts_once_signed_with_its_round_and_delivers() -> None:
    harness = await stuck((1, "k"))
    report = await round_after(harness, 60)
    # Then one POST, as the source path sends it, naming the round and counting the attempts on
    (request,) = harness.endpoint.requests
    assert request.headers["webhook-id"] == webhook_id(1)
    assert request.headers["dispatch-sequence"] == sequence_number(1)
    assert request.headers["dispatch-retry-round"] == "1"
    assert request.headers["dispatch-attempt"] == str(SOURCE_ATTEMPTS + 1)
    assert Webhook(SECRET).verify(request.body, request.headers) == {"n": 1}
    # and the record is delivered: deleted from the lane and its key no longer held
    assert report.response() == {"batchItemFailures": []}
    assert (report.stats.delivered, report.stats.retried) == (1, 1)
    assert len(harness.lane) == 0
    assert harness.held_keys.sets == {}
    assert report.stats.held_keys == 0


async def test_a_transient_failure_defers_to_the_next_round_or_a_later_retry_after() -> None:
    harness = await stuck((1, "k"), (2, "r"))
    harness.endpoint.answers[webhook_id(1)] = [503]
    harness.endpoint.answers[webhook_id(2)] = [(429, "600")]
    report = await round_after(harness, 61)
    assert sorted(report.left_in_lane) == ["lane-0", "lane-1"]
    # Round 2 is due 180 s after the hand-over (119 s from now); Retry-After asks for 600 s
    assert harness.lane.deferrals == [{"lane-0-receipt-1": 119, "lane-1-receipt-1": 600}]
    assert report.stats.failed == 2
    # When round 2 comes for the first, it is POSTed as round 2
    report = await round_after(harness, 119)
    assert harness.endpoint.requests[-1].headers["dispatch-retry-round"] == "2"
    assert harness.endpoint.requests[-1].headers["dispatch-attempt"] == str(SOURCE_ATTEMPTS + 2)
    assert report.stats.delivered == 1


async def test_after_the_last_round_the_record_is_parked_and_the_next_of_its_key_gets_its_turn() -> None:
    # Given two records of one key in the lane, the first failing for ever
    harness = await stuck((1, "k"), (2, "k"))
    entries = [body["entry_id"] for body in harness.lane.bodies()]
    harness.endpoint.answers[webhook_id(1)] = [503, 503, (503, "5")]
    for wait in SCHEDULE[:-1]:
        report = await round_after(harness, wait)
        # the second waits behind the first, deferred with it and never sent
        assert report.left_in_lane == ["lane-0", "lane-1"]
    # When the last round fails too
    report = await round_after(harness, SCHEDULE[-1])
    # Then the first is parked with the reason and its attempts, and the second, now the head, goes out
    (parked,) = harness.parked_records.messages
    assert parked["webhook_id"] == webhook_id(1)
    assert parked["reason"] == EXHAUSTED == "retry schedule exhausted"
    assert (parked["attempts"], parked["last_status"]) == (SOURCE_ATTEMPTS + len(SCHEDULE), 503)
    assert harness.endpoint.ids_posted()[-1] == webhook_id(2)
    assert report.response() == {"batchItemFailures": []}
    assert (report.stats.parked, report.stats.delivered) == (1, 1)
    # and the parked one left the held keys before the next of its key went out, then the second
    assert harness.held_keys.sets == {}
    assert [set().union(*release.values()) for release in harness.held_keys.releases] == [{entries[0]}, {entries[1]}]


async def test_a_record_parked_before_its_successor_went_out_is_never_sent_after_it() -> None:
    # Given two records of one key in the lane, the first failing until its schedule is exhausted
    harness = await stuck((1, "k"), (2, "k"))
    harness.endpoint.answers[webhook_id(1)] = [503, 503, 503]
    for wait in SCHEDULE[:-1]:
        await round_after(harness, wait)
    # and the held keys failing every release after the first (as if the invocation died once the second was sent)
    releases = 0
    release = harness.held_keys.release

    def release_once(entries: Mapping[str, frozenset[str]]) -> None:
        nonlocal releases
        releases += 1
        if releases > 1:
            raise RuntimeError("gone")
        release(entries)

    harness.held_keys.release = release_once  # type: ignore[method-assign]
    # When the last round parks the first and delivers the second, which stays in the lane unreleased
    await round_after(harness, SCHEDULE[-1])
    assert harness.endpoint.ids_posted()[-1] == webhook_id(2)
    assert len(harness.lane) == 1
    # Then once it comes back, only the second goes again (a duplicate the endpoint dedupes): the parked first,
    # released before the second went out, never arrives after it
    harness.held_keys.release = release  # type: ignore[method-assign]
    await round_after(harness, LANE_VISIBILITY_TIMEOUT_SECONDS)
    assert harness.endpoint.ids_posted()[-2:] == [webhook_id(2), webhook_id(2)]
    assert len(harness.lane) == 0
    assert len(harness.parked_records.messages) == 1


async def test_a_record_that_never_went_out_is_attempted_as_soon_as_it_is_the_head() -> None:
    # Given a key held by a record that was delivered meanwhile, and a later record that joined unsent
    harness = await stuck((1, "k"))
    harness.clock.advance(30)
    await harness.dispatch(event(kinesis_record(2, {"n": 2}, "k")))
    assert harness.endpoint.requests == []
    report = await round_after(harness, 30)
    # Then it goes out in the same lane batch, before its own first round: its first POST
    first, second = harness.endpoint.requests
    assert second.headers["webhook-id"] == webhook_id(2)
    assert second.headers["dispatch-attempt"] == "1"
    assert "dispatch-retry-round" not in second.headers
    assert first.headers["dispatch-retry-round"] == "1"
    assert report.stats.delivered == 2
    assert harness.held_keys.sets == {}


async def test_a_permanent_answer_parks_at_once_and_410_is_counted() -> None:
    harness = await stuck((1, "k"))
    harness.endpoint.answers[webhook_id(1)] = [410]
    report = await round_after(harness, 60)
    (parked,) = harness.parked_records.messages
    assert parked["reason"] == "HTTP 410 Gone"
    assert parked["source"]["sequence_number"] == sequence_number(1)
    assert report.stats.endpoint_gone == 1
    assert len(harness.lane) == 0
    assert harness.held_keys.sets == {}


async def test_a_record_not_attempted_is_deferred_briefly_without_using_up_its_round() -> None:
    # Given an endpoint the breaker judged down (five keys failing) when the lane comes round
    harness = await stuck(*((n, f"key-{n}") for n in range(6)))
    harness.endpoint.default = transport_failure()
    await round_after(harness, 60)
    harness.endpoint.requests.clear()
    # When the next lane batch finds the circuit open after its one probe
    report = await round_after(harness, 120)
    # Then what was not attempted is deferred by the short wait, and stays in its round
    assert len(harness.endpoint.requests) == 1
    not_attempted = [s for s in harness.lane.deferrals[-1].values() if s == retry_lane.LANE_NOT_ATTEMPTED_DEFER_SECONDS]
    assert len(not_attempted) == 5
    assert report.stats.failed == 6


async def test_an_unreadable_lane_message_is_parked_with_the_reason_and_releases_its_key() -> None:
    harness = await stuck((1, "k"))
    entry = harness.lane.bodies()[0]["entry_id"]
    harness.lane.messages[0].body = '{"v": 1, "subscription": "orders-to-ledger"}'
    report = await round_after(harness, 60)
    (parked,) = harness.parked_records.messages
    assert parked["reason"] == "unreadable retry-lane message: lane message field 'entry_id' is missing, not str"
    assert parked["source"]["type"] == "sqs-fifo"
    assert report.response() == {"batchItemFailures": []}
    assert harness.held_keys.releases == [{retry_lane.key_attribute("k"): frozenset({entry})}]
    assert harness.held_keys.sets == {}


async def test_a_lane_message_of_another_subscription_is_parked_not_retried() -> None:
    harness = await stuck((1, "k"))
    body = retry_lane.encode("orders-to-audit", "a" * 32, None, kinesis_record(9, {}), 1, harness.clock.now, 503, "")
    harness.lane.send([LaneMessage("record:" + "a" * 32, "a" * 32, body)])
    await round_after(harness, 60)
    reasons = [message["reason"] for message in harness.parked_records.messages]
    assert reasons == [
        "unreadable retry-lane message: lane message of subscription 'orders-to-audit', not 'orders-to-ledger'"
    ]
    assert len(harness.lane) == 0


async def test_a_record_that_cannot_be_parked_stays_in_the_lane_and_keeps_its_key_held() -> None:
    harness = await stuck((1, "k"))
    harness.endpoint.answers[webhook_id(1)] = [422]
    harness.parked_records.refuse = True
    report = await round_after(harness, 60)
    assert report.left_in_lane == ["lane-0"]
    assert len(harness.lane) == 1
    assert harness.held_keys.sets.keys() == {retry_lane.key_attribute("k")}


# --- hostile lane messages -----------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
lane_documents = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 2, "1"]) | json_scalars,
        "subscription": st.sampled_from(["orders-to-ledger", "other"]) | json_scalars,
        "entry_id": st.text() | json_scalars,
        "key": st.text() | json_scalars,
        "record": st.dictionaries(st.text(), json_scalars, max_size=4)
        | st.builds(kinesis_record, st.integers(0, 9), st.just({}))
        | json_scalars,
        "attempts": st.integers(-3, 30) | json_scalars,
        "lane_since": st.floats(allow_nan=True, allow_infinity=True) | json_scalars,
        "last_status": st.integers(-1, 999) | json_scalars,
        "reason": json_scalars,
    },
)
lane_bodies = st.text() | lane_documents.map(json.dumps) | st.recursive(json_scalars, st.lists).map(json.dumps)


@pytest.mark.adversarial
@given(bodies=st.lists(st.tuples(st.sampled_from(["key:" + "0" * 32, "record:x", "g"]), lane_bodies), max_size=10))
def test_any_lane_batch_ends_with_each_message_finished_or_left_in_the_lane(bodies: list[tuple[str, str]]) -> None:
    async def lane_round() -> tuple[Harness, LaneReport | None]:
        harness = Harness(subscription(retry_schedule_seconds=SCHEDULE), lane=True)
        for number, (group, body) in enumerate(bodies):
            harness.lane.send([LaneMessage(group, f"dedup-{number}", body)])
        return harness, await harness.lane_round()

    # Given any lane messages whatever their bodies hold
    harness, report = asyncio.run(lane_round())
    if report is None:
        assert bodies == []
        return
    # Then the round ends without raising, each message delivered, parked or left in the lane (never lost)
    still_in_lane = {message.message_id for message in harness.lane.messages}
    assert still_in_lane == set(report.left_in_lane)
    assert len(bodies) == report.stats.delivered + len(harness.parked_records) + len(still_in_lane)


async def test_every_round_publishes_how_long_its_oldest_head_has_waited_and_a_far_round_comes_back_early() -> None:
    # Given two keys stuck in the lane, one handed over 100 s after the other
    harness = await stuck((1, "old"))
    harness.clock.advance(100)
    harness.endpoint.default = 503
    await harness.dispatch(event(kinesis_record(2, {"n": 2}, "young")))
    harness.endpoint.default = 200
    # When a lane round looks at both heads before either round is due
    report = await round_after(harness, 10)
    # Then it publishes the age of the oldest (RetryLaneAge), and defers neither beyond LANE_LOOK_AGAIN_SECONDS
    assert report.stats.oldest_lane_age_seconds == pytest.approx(110)
    assert all(0 < seconds <= retry_lane.LANE_LOOK_AGAIN_SECONDS for seconds in harness.lane.deferrals[-1].values())


async def test_a_record_finished_by_an_invocation_that_crashed_is_never_sent_again_after_its_key_moved_on() -> None:
    # Given key "k" stuck in the lane; its round delivers it and releases the key, but the invocation crashes
    # before the mapping deletes the message (no settle: it comes back after the visibility timeout)
    harness = await stuck((1, "k"))
    harness.clock.advance(60)
    lane_event = harness.lane.receive_event()
    assert lane_event is not None
    await harness.dispatcher.run_lane_round(lane_event, 60.0)
    assert harness.held_keys.sets == {}
    # and the key's next record goes out on the source path, the key being no longer held
    await harness.dispatch(event(kinesis_record(2, {"n": 2}, "k")))
    harness.endpoint.requests.clear()
    # When the crashed batch's message comes back
    report = await round_after(harness, LANE_VISIBILITY_TIMEOUT_SECONDS)
    # Then it is not POSTed again behind the key's later record: it is finished, and leaves the lane
    assert harness.endpoint.requests == []
    assert report.stats.duplicates_skipped == 1
    assert report.response() == {"batchItemFailures": []}
    assert len(harness.lane) == 0


async def test_a_finished_record_whose_key_could_not_be_released_stays_in_the_lane_and_goes_again() -> None:
    # Given key "k" stuck in the lane, and the held keys refusing every release
    harness = await stuck((1, "k"))
    harness.held_keys.release_error = RuntimeError("DynamoDB unavailable")
    # When its round delivers it
    report = await round_after(harness, 60)
    # Then the message stays in the lane (deleted, its entry would hold the key for good)
    assert len(harness.endpoint.requests) == 1
    assert report.response() == {"batchItemFailures": [{"itemIdentifier": "lane-0"}]}
    assert len(harness.lane) == 1
    # and once releases work again, it comes back, goes out again under the same webhook-id, and frees its key
    harness.held_keys.release_error = None
    await round_after(harness, LANE_VISIBILITY_TIMEOUT_SECONDS)
    assert [request.headers["webhook-id"] for request in harness.endpoint.requests] == [webhook_id(1)] * 2
    assert len(harness.lane) == 0
    assert harness.held_keys.sets == {}


async def test_a_lane_batch_whose_held_keys_cannot_be_read_stays_in_the_lane_unsent() -> None:
    # Given a record due in the lane, and the held keys unreadable
    harness = await stuck((1, "k"))
    harness.held_keys.read_error = RuntimeError("DynamoDB unavailable")
    # When its round comes
    report = await round_after(harness, 60)
    # Then nothing is sent (a record finished by a crashed invocation could not be told apart) and it stays
    assert harness.endpoint.requests == []
    assert report.response() == {"batchItemFailures": [{"itemIdentifier": "lane-0"}]}
    assert len(harness.lane) == 1
