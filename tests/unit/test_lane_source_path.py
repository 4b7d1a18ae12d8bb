"""The source path with a retry lane: records of held keys join the lane without being sent, records still
failing at the end of the invocation (with every later record of their key) are handed over instead of being
reported, and what cannot join the lane is reported to its source as without a lane."""

from __future__ import annotations

from typing import Any

from dispatcher import retry_lane
from dispatcher.outcomes import Outcome
from dispatcher.records import REDRIVE_FIELD, parse_event
from tests.events import STREAM, event, kinesis_record, sequence_number, sqs_record
from tests.unit.conftest import Harness, failed_ids, subscription


def webhook_id(position: int) -> str:
    return f"{STREAM}:{sequence_number(position)}"


def lane_harness(**overrides: Any) -> Harness:
    return Harness(subscription(**overrides), lane=True)


def keyed_batch(*positions_and_keys: tuple[int, str]) -> dict[str, Any]:
    return event(*(kinesis_record(position, {"n": position}, key) for position, key in positions_and_keys))


async def test_a_failing_key_goes_to_the_lane_and_the_source_moves_on() -> None:
    # Given an endpoint that keeps failing key "stuck" and takes the other keys
    harness = lane_harness()
    harness.endpoint.answers[webhook_id(1)] = [503, 503, 503]
    batch = keyed_batch((0, "ok-a"), (1, "stuck"), (2, "ok-b"), (3, "stuck"), (4, "ok-a"))
    # When the batch is dispatched
    report = await harness.dispatch(batch)
    # Then nothing is reported: the stuck key's records are in the lane, the others were POSTed once each
    assert failed_ids(report) == []
    assert sorted(harness.endpoint.ids_posted()) == sorted(
        [webhook_id(0), *[webhook_id(1)] * 3, webhook_id(2), webhook_id(4)]
    )
    assert [result.outcome for result in report.results] == [
        Outcome.DELIVERED,
        Outcome.HANDED_TO_LANE,
        Outcome.DELIVERED,
        Outcome.HANDED_TO_LANE,
        Outcome.DELIVERED,
    ]
    assert report.stats.handed_to_lane == 2
    # and the lane holds them in sequence order, the first with its attempts, the later one never sent
    first, later = harness.lane.bodies()
    assert first["record"] == batch["Records"][1]
    assert (first["key"], first["attempts"], first["last_status"]) == ("stuck", 3, 503)
    assert first["reason"] == "HTTP 503 Service Unavailable"
    assert first["lane_since"] == harness.clock.now
    assert later["record"] == batch["Records"][3]
    assert later["attempts"] == 0
    # and the key is held by both entries, in one write
    (hold,) = harness.held_keys.holds
    assert hold == {retry_lane.key_attribute("stuck"): frozenset({first["entry_id"], later["entry_id"]})}
    groups = {message.group for message in harness.lane.messages}
    assert groups == {retry_lane.group_id("stuck", first["entry_id"])}


async def test_records_of_a_held_key_join_the_lane_without_being_sent() -> None:
    # Given key "stuck" held in the lane by an earlier batch
    harness = lane_harness()
    harness.endpoint.answers[webhook_id(1)] = [503, 503, 503]
    await harness.dispatch(keyed_batch((1, "stuck")))
    harness.endpoint.requests.clear()
    # When the next batch has records of that key and of another (the endpoint would take them all now)
    report = await harness.dispatch(keyed_batch((2, "stuck"), (3, "fine"), (4, "stuck")))
    # Then the held key's records join the lane behind it unsent, and the other key is delivered
    assert failed_ids(report) == []
    assert harness.endpoint.ids_posted() == [webhook_id(3)]
    assert [body["record"]["kinesis"]["sequenceNumber"] for body in harness.lane.bodies()] == [
        sequence_number(1),
        sequence_number(2),
        sequence_number(4),
    ]
    # and the batch read the held keys once, in one read, which also counts them
    assert harness.held_keys.reads == 2
    assert report.stats.held_keys == 1


async def test_unordered_records_retry_on_their_own_and_never_read_the_held_keys() -> None:
    harness = lane_harness(ordering="none")
    harness.endpoint.answers[webhook_id(1)] = [503, 503, 503]
    report = await harness.dispatch(keyed_batch((1, "same"), (2, "same")))
    assert failed_ids(report) == []
    assert harness.held_keys.reads == 0
    assert harness.held_keys.holds == []
    (body,) = harness.lane.bodies()
    assert body["key"] is None
    assert harness.lane.messages[0].group == "record:" + body["entry_id"]
    assert report.results[1].outcome is Outcome.DELIVERED


async def test_an_empty_schedule_keeps_todays_behaviour_even_with_a_lane() -> None:
    harness = lane_harness(retry_schedule_seconds=[])
    harness.endpoint.answers[webhook_id(1)] = [503, 503, 503]
    report = await harness.dispatch(keyed_batch((1, "stuck"), (2, "stuck")))
    assert failed_ids(report) == [sequence_number(1), sequence_number(2)]
    assert len(harness.lane) == 0
    assert harness.held_keys.reads == 0


async def test_a_fifo_group_is_held_whatever_the_ordering_setting() -> None:
    harness = lane_harness(ordering="none")
    harness.endpoint.answers["jobs.fifo:dedup-m-1"] = [503, 503, 503]
    fifo = event(*(sqs_record(f"m-{n}", {}, queue="jobs.fifo", group="g", position=n) for n in (1, 2)))
    report = await harness.dispatch(fifo)
    assert failed_ids(report) == []
    assert [body["key"] for body in harness.lane.bodies()] == ["g", "g"]
    assert harness.held_keys.sets.keys() == {retry_lane.key_attribute("g")}


async def test_what_the_lane_refuses_is_reported_with_every_later_record_of_its_key_and_released() -> None:
    # Given a lane that refuses the messages of key "refused" and takes those of key "taken"
    harness = lane_harness()
    harness.endpoint.default = 503
    harness.lane.refuse_groups.add(retry_lane.group_id("refused", ""))
    # When both keys fail in one batch
    report = await harness.dispatch(keyed_batch((1, "refused"), (2, "taken"), (3, "refused")))
    # Then the refused key's records are reported to the source (Kinesis re-sends from the first), saying why
    assert failed_ids(report) == [sequence_number(1), sequence_number(3)]
    assert report.results[0].reason.startswith("could not join the retry lane: AWS.SimpleQueueService")
    assert report.results[1].outcome is Outcome.HANDED_TO_LANE
    # and their entry ids leave the held keys again, so only the key in the lane is held
    assert harness.held_keys.sets.keys() == {retry_lane.key_attribute("taken")}
    # and the handed-over record is among the delivered ids, so the re-sent batch skips it
    (saved,) = harness.delivered_ids.saves
    assert saved == {
        f"orders-to-ledger#kinesis#{STREAM}#shardId-000000000000#{sequence_number(1)}": frozenset({sequence_number(2)})
    }


async def test_when_the_keys_cannot_be_held_nothing_joins_and_everything_failing_is_reported() -> None:
    harness = lane_harness()
    harness.endpoint.default = 503
    harness.held_keys.hold_error = RuntimeError("ProvisionedThroughputExceededException")
    report = await harness.dispatch(keyed_batch((1, "a"), (2, "b")))
    assert failed_ids(report) == [sequence_number(1), sequence_number(2)]
    assert "ProvisionedThroughputExceededException" in report.results[0].reason
    assert harness.lane.sends == []


async def test_a_record_too_large_for_the_lane_is_reported_and_its_key_stays_behind_it() -> None:
    harness = lane_harness()
    harness.endpoint.default = 503
    huge = kinesis_record(1, {"blob": "x" * retry_lane.MAX_LANE_MESSAGE_BYTES}, "big")
    report = await harness.dispatch(event(huge, kinesis_record(2, {}, "big"), kinesis_record(3, {}, "small")))
    assert failed_ids(report) == [sequence_number(1), sequence_number(2)]
    assert "exceeds SQS's 262144" in report.results[0].reason
    assert "held back" in report.results[1].reason
    assert [body["key"] for body in harness.lane.bodies()] == ["small"]
    assert harness.held_keys.sets.keys() == {retry_lane.key_attribute("small")}


async def test_a_re_sent_record_is_the_same_lane_entry() -> None:
    # Given a record handed over, whose batch Lambda sends again (a crash before the response)
    harness = lane_harness()
    harness.endpoint.default = 503
    batch = keyed_batch((1, "a"))
    await harness.dispatch(batch)
    harness.clock.advance(1)
    await harness.dispatch(batch)
    # Then its key holds it once, under one entry id, though the lane has a copy of each hand-over (SQS must not
    # drop the second: had the lane released the entry in between, nothing would release it again)
    assert len(harness.held_keys.sets[retry_lane.key_attribute("a")]) == 1
    assert len({body["entry_id"] for body in harness.lane.bodies()}) == 1
    assert len(harness.lane) == 2
    # and once the endpoint is back, the lane delivers it once: the second copy finds its entry released
    harness.endpoint.default = 200
    harness.endpoint.requests.clear()
    harness.clock.advance(harness.dispatcher.subscription.retry_schedule_seconds[0])
    while await harness.lane_round() is not None:
        pass
    assert harness.endpoint.ids_posted() == [webhook_id(1)]
    assert len(harness.lane) == 0
    assert harness.held_keys.sets == {}


async def test_a_record_redriven_while_its_key_is_held_joins_the_lane_as_a_new_entry() -> None:
    # Given key "k" held in the lane, and a record of it parked earlier that the redrive engine re-sends
    harness = lane_harness()
    harness.endpoint.default = 503
    await harness.dispatch(keyed_batch((5, "k")))
    redriven = kinesis_record(1, {"n": 1}, "k") | {REDRIVE_FIELD: "2026-11-27T10:00:00.000Z"}
    # When it reaches the function (while its first hand-over may still be in SQS's deduplication window)
    first_entry = retry_lane.entry_id("orders-to-ledger", parse_event(keyed_batch((1, "k"))).records[0])
    report = await harness.dispatch(event(redriven))
    # Then it joins the key's lane without being sent, marked as the redrive it is, under an entry of its own
    assert failed_ids(report) == []
    assert len(harness.endpoint.requests) == harness.dispatcher.subscription.max_attempts
    behind = harness.lane.bodies()[-1]
    assert behind["record"][REDRIVE_FIELD] == "2026-11-27T10:00:00.000Z"
    assert behind["attempts"] == 0
    assert behind["entry_id"] != first_entry
