"""Given records the real dispatcher parked (parked-records queue) or gave up on (on-failure object), when they are
redriven through the function port, then each is deleted only after its re-delivery and nothing is looped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher.record_fields import RFC3339_AS_WRITTEN
from dispatcher.records import REDRIVE_FIELD, parse_event
from redrive import Outcome, Redriver
from tests.events import kinesis_record, sequence_number, sqs_record
from tests.redrive.conftest import ParkedSubscription

FAST_RATE = 1_000.0  # records per second: no pacing to speak of
HOLD_SECONDS = 45  # outlasts every test; not the command's default, so a test shows the run's own hold is used


def webhook_ids(records: list[dict[str, Any]]) -> list[str]:
    return [parse_event({"Records": [record]}).records[0].webhook_id for record in records]


def redriver(parked: ParkedSubscription, **options: Any) -> Redriver:
    return Redriver(parked.target(), rate_per_second=FAST_RATE, hold_seconds=HOLD_SECONDS, **options)


def put_on_failure_object(parked: ParkedSubscription, key: str, records: list[dict[str, Any]]) -> None:
    """An object as Lambda's S3 on-failure destination writes it (local/esm/kinesis.py)."""
    document = {
        "requestContext": {"requestId": "r-1", "functionArn": "arn:fn", "condition": "RetryAttemptsExhausted"},
        "version": "1.0",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "KinesisBatchInfo": {"shardId": "shardId-000000000000", "batchSize": len(records)},
        "payload": {"Records": records},
    }
    parked.s3.put_object(Bucket=parked.bucket, Key=key, Body=json.dumps(document).encode())


def receive_counts(parked: ParkedSubscription) -> list[int]:
    """How many times each parked message has been received, counting the receive that reads it now (so a
    message no one received before reads 1); every message is made visible again."""
    counts: list[int] = []
    handles: list[str] = []
    while messages := parked.sqs.receive_message(
        QueueUrl=parked.parked_records_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=30,
        AttributeNames=["ApproximateReceiveCount"],
    ).get("Messages", []):
        counts.extend(int(message["Attributes"]["ApproximateReceiveCount"]) for message in messages)
        handles.extend(message["ReceiptHandle"] for message in messages)
    for handle in handles:
        parked.sqs.change_message_visibility(
            QueueUrl=parked.parked_records_url, ReceiptHandle=handle, VisibilityTimeout=0
        )
    return counts


def on_failure_objects(parked: ParkedSubscription) -> dict[str, list[dict[str, Any]]]:
    contents = parked.s3.list_objects_v2(Bucket=parked.bucket).get("Contents", [])
    return {
        item["Key"]: json.loads(parked.s3.get_object(Bucket=parked.bucket, Key=item["Key"])["Body"].read())["payload"][
            "Records"
        ]
        for item in contents
    }


async def park_one_of_each_kind(parked: ParkedSubscription) -> list[dict[str, Any]]:
    """A Kinesis, an SQS and a FIFO record, each parked after the endpoint refused it; the records as sent."""
    originals = [
        kinesis_record(1, {"type": "order.created"}),
        sqs_record("m-1", {"type": "invoice.paid"}),
        sqs_record("m-2", {"type": "refund"}, queue="refunds.fifo", group="g", position=1),
    ]
    for original in originals:
        await parked.park(original)
    return originals


async def test_parked_records_are_redelivered_with_their_webhook_ids_and_deleted(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given three records of three kinds parked after a 422
    originals = await park_one_of_each_kind(parked_subscription)

    # When the endpoint accepts them again and they are redriven
    summary = await redriver(parked_subscription).run()

    # Then each reached the endpoint once under its original webhook-id, and the queue is empty
    assert sorted(parked_subscription.endpoint.ids_posted()) == sorted(webhook_ids(originals))
    assert summary.counts == {Outcome.REDRIVEN: 3}
    assert summary.complete
    assert parked_subscription.parked_bodies() == []


async def test_a_failing_invocation_keeps_the_message(parked_subscription: ParkedSubscription) -> None:
    # Given a parked record and a function that fails (an exception, a timeout)
    await parked_subscription.park(sqs_record("m-1", {"type": "invoice.paid"}))
    parked_subscription.function_error = "RuntimeError: the function crashed"

    # When it is redriven
    summary = await redriver(parked_subscription).run()

    # Then the message is still there, visible for the next run, and the run reports it
    assert summary.counts == {Outcome.STILL_FAILING: 1}
    assert not summary.complete
    assert len(parked_subscription.parked_bodies()) == 1


async def test_a_record_still_failing_transiently_is_kept(parked_subscription: ParkedSubscription) -> None:
    # Given a parked record whose endpoint now answers 503 (the function reports it as a batch item failure)
    await parked_subscription.park(sqs_record("m-1", {"type": "invoice.paid"}))
    parked_subscription.endpoint.default = 503

    summary = await redriver(parked_subscription).run()

    assert summary.counts == {Outcome.STILL_FAILING: 1}
    assert len(parked_subscription.parked_bodies()) == 1


async def test_a_record_failing_again_joins_the_retry_lane_and_the_run_says_it_is_not_delivered_yet(
    parked_subscription_with_lane: ParkedSubscription,
) -> None:
    # Given a record of key "k" parked after a 422, and a function with a retry lane
    parked = parked_subscription_with_lane
    original = kinesis_record(1, {"type": "order.created"}, partition_key="k")
    await parked.park(original)

    # When the endpoint now fails transiently (503) and the record is redriven
    parked.endpoint.default = 503
    summary = await redriver(parked).run()

    # Then the record waits in the retry lane, marked as the redrive it is, its parked message is gone, and the
    # run does not call it redriven: it is not delivered yet
    assert summary.counts == {Outcome.IN_RETRY_LANE: 1}
    assert not summary.complete
    assert parked.parked_bodies() == []
    (in_lane,) = parked.retry_lane.messages
    lane_record = json.loads(in_lane.body)["record"]
    assert lane_record["kinesis"]["sequenceNumber"] == original["kinesis"]["sequenceNumber"]
    assert REDRIVE_FIELD in lane_record
    (problem,) = summary.problems
    assert "not delivered yet" in problem
    assert "retry lane" in problem


async def test_records_of_an_on_failure_object_failing_again_are_counted_in_the_retry_lane(
    parked_subscription_with_lane: ParkedSubscription,
) -> None:
    # Given an on-failure object of two records of key "k", a function with a retry lane, and an endpoint
    # failing transiently
    parked = parked_subscription_with_lane
    records = [kinesis_record(n, {"type": "order.created"}, partition_key="k") for n in range(2)]
    put_on_failure_object(parked, "object-1", records)
    parked.endpoint.default = 503

    # When the object is redriven
    summary = await redriver(parked).run()

    # Then both wait in the retry lane (the second behind the first), the object is gone, and none is "redriven"
    assert summary.counts == {Outcome.IN_RETRY_LANE: 2}
    assert on_failure_objects(parked) == {}
    assert len(parked.retry_lane.messages) == 2
    assert not summary.complete


async def test_a_record_refused_again_is_parked_again_once_and_not_looped(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given two parked records and an endpoint that still refuses them (4xx)
    await parked_subscription.park(sqs_record("m-1", {"type": "a"}), sqs_record("m-2", {"type": "b"}))
    (first_parked_at, _) = sorted(json.loads(body)["parked_at"] for body in parked_subscription.parked_bodies())
    parked_subscription.endpoint.default = 410

    # When they are redriven
    summary = await redriver(parked_subscription).run()

    # Then each was tried once, re-queued as a new message, and its old message deleted; the run is not complete
    assert summary.counts == {Outcome.PARKED_AGAIN: 2}
    assert not summary.complete
    assert len(parked_subscription.invocations) == 2
    bodies = [json.loads(body) for body in parked_subscription.parked_bodies()]
    assert sorted(body["webhook_id"] for body in bodies) == ["m-1", "m-2"]
    assert all(body["last_status"] == 410 and body["parked_at"] >= first_parked_at for body in bodies)


async def test_an_interrupted_redrive_deletes_only_what_was_redelivered(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given three parked records, and a run interrupted (Ctrl-C) during the second invocation
    await parked_subscription.park(*(sqs_record(f"m-{n}", {"type": "a"}) for n in range(3)))
    parked_subscription.interrupt_at_invocation = 2

    with pytest.raises(KeyboardInterrupt):
        await redriver(parked_subscription).run()

    # Then only the first, delivered, record left the queue; the other two are visible again at once
    delivered = parked_subscription.endpoint.ids_posted()
    remaining = [json.loads(body)["webhook_id"] for body in parked_subscription.parked_bodies()]
    assert len(delivered) == 1
    assert sorted(delivered + remaining) == ["m-0", "m-1", "m-2"]

    # And the next run finishes the job
    parked_subscription.interrupt_at_invocation = None
    summary = await redriver(parked_subscription).run()
    assert summary.counts == {Outcome.REDRIVEN: 2}
    assert parked_subscription.parked_bodies() == []


async def test_a_record_the_function_skips_as_finished_is_kept(parked_subscription: ParkedSubscription) -> None:
    # Given a parked Kinesis record that the function's delivered-ids store lists as finished
    original = kinesis_record(7, {"type": "order.created"})
    await parked_subscription.park(original)
    (record,) = parse_event({"Records": [original]}).records
    key = f"orders-to-ledger#kinesis#{record.source_name}#{record.shard_id}#{record.sequence_number}"
    parked_subscription.delivered_ids.entries[key] = frozenset({record.item_identifier})

    # When it is redriven, the function answers success without POSTing it
    summary = await redriver(parked_subscription).run()

    # Then it is not deleted: that would lose it
    assert parked_subscription.endpoint.ids_posted() == []
    assert summary.counts == {Outcome.SKIPPED: 1}
    assert len(parked_subscription.parked_bodies()) == 1


async def test_messages_that_cannot_be_rebuilt_are_skipped_and_kept(parked_subscription: ParkedSubscription) -> None:
    parked_subscription.sqs.send_message(QueueUrl=parked_subscription.parked_records_url, MessageBody="garbage")

    summary = await redriver(parked_subscription).run()

    assert summary.counts == {Outcome.SKIPPED: 1}
    assert parked_subscription.invocations == []
    assert parked_subscription.parked_bodies() == ["garbage"]


async def test_the_limit_bounds_the_records_redriven(parked_subscription: ParkedSubscription) -> None:
    await parked_subscription.park(*(sqs_record(f"m-{n}", {"type": "a"}) for n in range(5)))

    summary = await redriver(parked_subscription, limit=2).run()

    assert summary.counts == {Outcome.REDRIVEN: 2}
    assert len(parked_subscription.parked_bodies()) == 3


async def test_an_on_failure_object_is_rewritten_with_the_records_still_failing(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given an on-failure object of three records of one shard, the second of which still fails (503)
    records = [kinesis_record(n, {"type": "order.created"}, partition_key=f"k-{n}") for n in range(3)]
    key = "aws/lambda/mapping/shardId-000000000000/2026/01/01/object-1"
    put_on_failure_object(parked_subscription, key, records)
    still_failing = webhook_ids(records)[1]
    parked_subscription.endpoint.answers[still_failing] = [503]

    # When the object is redriven (one invocation: the batch it was)
    summary = await redriver(parked_subscription).run()

    # Then the object under the same key holds only the failing record, the others reached the endpoint
    assert len(parked_subscription.invocations) == 1
    assert on_failure_objects(parked_subscription) == {key: [records[1]]}
    assert summary.counts == {Outcome.REDRIVEN: 2, Outcome.STILL_FAILING: 1}
    document = json.loads(parked_subscription.s3.get_object(Bucket=parked_subscription.bucket, Key=key)["Body"].read())
    assert document["KinesisBatchInfo"]["startSequenceNumber"] == sequence_number(1)
    assert document["KinesisBatchInfo"]["batchSize"] == 1

    # And once the endpoint accepts it, the object is gone
    summary = await redriver(parked_subscription).run()
    assert summary.counts == {Outcome.REDRIVEN: 1}
    assert on_failure_objects(parked_subscription) == {}


async def test_a_failing_invocation_leaves_the_on_failure_object_as_it_was(
    parked_subscription: ParkedSubscription,
) -> None:
    records = [kinesis_record(n, {"type": "order.created"}) for n in range(2)]
    put_on_failure_object(parked_subscription, "object-1", records)
    parked_subscription.function_error = "Sandbox.Timedout: Task timed out"

    summary = await redriver(parked_subscription).run()

    assert summary.counts == {Outcome.STILL_FAILING: 2}
    assert on_failure_objects(parked_subscription) == {"object-1": records}


async def test_dry_run_counts_the_parked_queue_lists_the_on_failure_store_and_changes_nothing(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given two parked records and an on-failure object of two records
    await parked_subscription.park(sqs_record("m-1", {"type": "a"}), sqs_record("m-2", {"type": "b"}))
    records = [kinesis_record(n, {"type": "order.created"}) for n in range(2)]
    put_on_failure_object(parked_subscription, "object-1", records)

    # When the redrive is planned
    plan = await redriver(parked_subscription).plan()

    # Then the queue is counted, the on-failure records are listed with webhook-id, position and reason
    assert plan.parked == 2
    assert plan.held.count == 0
    assert [record.webhook_id for record in plan.on_failure] == webhook_ids(records)
    assert plan.on_failure[0].reason == "RetryAttemptsExhausted"
    assert all(record.problem is None for record in plan.on_failure)

    # And nothing was touched: no invocation, no message received (every one is still at its first receive)
    assert parked_subscription.invocations == []
    assert receive_counts(parked_subscription) == [1, 1]
    assert on_failure_objects(parked_subscription) == {"object-1": records}


# -- payloads stored in S3 (too large for their parked message) ---------------------------------------------

LARGEST_RECORD_BYTES = 1024 * 1024  # the largest record Kinesis and SQS accept (1 MiB)


def large_record(position: int) -> tuple[dict[str, Any], bytes]:
    payload = json.dumps({"type": "order.created", "blob": "x" * LARGEST_RECORD_BYTES})[:LARGEST_RECORD_BYTES]
    return kinesis_record(position, payload.encode()), payload.encode()


async def test_a_record_parked_in_s3_is_redelivered_exactly_and_its_payload_deleted_after_its_message(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given a 1 MiB record the function parked with its payload in S3
    original, payload = large_record(1)
    await parked_subscription.park(original)
    assert len(parked_subscription.stored_payloads()) == 1
    deletes: list[str] = []
    parked_subscription.s3.meta.events.register("before-call.s3.DeleteObject", lambda **_: deletes.append("object"))
    parked_subscription.sqs.meta.events.register("before-call.sqs.DeleteMessage", lambda **_: deletes.append("message"))

    # When the endpoint accepts it again and it is redriven
    summary = await redriver(parked_subscription).run()

    # Then the endpoint got the exact bytes under the original webhook-id
    (request,) = parked_subscription.endpoint.requests
    assert request.body == payload
    assert request.headers["webhook-id"] == webhook_ids([original])[0]
    assert summary.counts == {Outcome.REDRIVEN: 1}
    # and the message, then the payload it pointed at, are gone: never a message pointing at nothing
    assert deletes == ["message", "object"]
    assert parked_subscription.parked_bodies() == []
    assert parked_subscription.stored_payloads() == {}


async def test_a_record_parked_in_s3_and_refused_again_keeps_the_payload_its_new_message_points_at(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given a 1 MiB record parked with its payload in S3, which the endpoint still refuses
    original, payload = large_record(1)
    await parked_subscription.park(original)
    parked_subscription.endpoint.default = 413

    # When it is redriven
    summary = await redriver(parked_subscription).run()

    # Then it is parked again, and its new message points at the payload, which is still there
    assert summary.counts == {Outcome.PARKED_AGAIN: 1}
    (body,) = parked_subscription.parked_bodies()
    stored = json.loads(body)["payload_s3"]
    assert parked_subscription.stored_payloads() == {stored["key"]: payload}


async def test_a_record_parked_in_s3_that_still_fails_keeps_message_and_payload(
    parked_subscription: ParkedSubscription,
) -> None:
    original, payload = large_record(1)
    await parked_subscription.park(original)
    parked_subscription.function_error = "Sandbox.Timedout: Task timed out"

    summary = await redriver(parked_subscription).run()

    assert summary.counts == {Outcome.STILL_FAILING: 1}
    assert len(parked_subscription.parked_bodies()) == 1
    assert list(parked_subscription.stored_payloads().values()) == [payload]


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ({"bucket": "someone-elses-bucket", "key": "parked/orders-to-ledger/abc"}, "outside the subscription's"),
        ({"key": "parked/another-subscription/abc"}, "outside the subscription's"),
        ({"key": "parked/orders-to-ledger/missing"}, "it is gone"),
    ],
)
async def test_a_message_pointing_anywhere_but_at_its_own_stored_payload_is_skipped_and_kept(
    parked_subscription: ParkedSubscription, where: dict[str, str], problem: str
) -> None:
    # Given a parked message whose payload_s3 points outside the subscription's prefix, or at nothing
    original, _ = large_record(1)
    await parked_subscription.park(original)
    (body,) = parked_subscription.parked_bodies()
    document = json.loads(body)
    document["payload_s3"] |= where
    parked_subscription.sqs.purge_queue(QueueUrl=parked_subscription.parked_records_url)
    parked_subscription.sqs.send_message(
        QueueUrl=parked_subscription.parked_records_url, MessageBody=json.dumps(document)
    )

    # When it is redriven
    summary = await redriver(parked_subscription).run()

    # Then nothing reaches the function, the message stays, and the run says why
    assert summary.counts == {Outcome.SKIPPED: 1}
    assert parked_subscription.invocations == []
    assert len(parked_subscription.parked_bodies()) == 1
    (reported,) = summary.problems
    assert problem in reported


async def test_dry_run_counts_a_record_parked_in_s3_and_changes_nothing(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given a 1 MiB record parked with its payload in S3
    original, payload = large_record(1)
    await parked_subscription.park(original)
    (key,) = parked_subscription.stored_payloads()

    # When the redrive is planned
    plan = await redriver(parked_subscription).plan()

    # Then it is counted, and the message and object are untouched
    assert plan.parked == 1
    assert parked_subscription.invocations == []
    assert receive_counts(parked_subscription) == [1]
    assert parked_subscription.stored_payloads() == {key: payload}


async def test_a_record_parked_twice_is_redriven_once_and_its_second_message_kept_with_the_reason(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given a 1 MiB record parked twice (an invocation that parked it crashed before Lambda got its report):
    # two messages pointing at its one stored payload
    original, _ = large_record(1)
    await parked_subscription.park(original)
    parked_subscription.delivered_ids.entries.clear()
    await parked_subscription.park(original)
    assert len(parked_subscription.parked_bodies()) == 2
    assert len(parked_subscription.stored_payloads()) == 1

    # When it is redriven, twice
    first = await redriver(parked_subscription).run()
    second = await redriver(parked_subscription).run()

    # Then it reached the endpoint once; the copy left pointing at the deleted payload is kept, never
    # re-delivered, and the run says what it is
    assert len(parked_subscription.endpoint.requests) == 1
    assert first.counts == {Outcome.REDRIVEN: 1}
    assert second.counts == {Outcome.SKIPPED: 1}
    (problem,) = second.problems
    assert "it is gone" in problem
    assert len(parked_subscription.parked_bodies()) == 1


# --- Replays say what they are (issue 13) ------------------------------------------------------------


def redrive_times(parked: ParkedSubscription) -> list[datetime]:
    """The `dispatch-redrive` header of every POST the endpoint got, read as the time it says."""
    return [
        datetime.strptime(request.headers["dispatch-redrive"], RFC3339_AS_WRITTEN).replace(tzinfo=UTC)
        for request in parked.endpoint.requests
    ]


async def test_records_redriven_from_the_parked_queue_say_when_they_were_redriven(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given records of the three kinds parked after a 422
    originals = await park_one_of_each_kind(parked_subscription)

    # When they are redriven
    started = datetime.now(UTC).replace(microsecond=0)
    await redriver(parked_subscription).run()
    finished = datetime.now(UTC)

    # Then every record the function got is marked, and each POST carries the time of this redrive beside its
    # original webhook-id and dispatch-sequence
    assert all(REDRIVE_FIELD in record for event in parked_subscription.invocations for record in event["Records"])
    times = redrive_times(parked_subscription)
    assert len(times) == 3
    assert all(started <= moment <= finished for moment in times)
    posted = {request.headers["webhook-id"]: request.headers for request in parked_subscription.endpoint.requests}
    assert sorted(posted) == sorted(webhook_ids(originals))
    assert posted[webhook_ids(originals)[0]]["dispatch-sequence"] == sequence_number(1)


async def test_records_redriven_from_an_on_failure_object_say_so_and_what_is_written_back_is_unmarked(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given an on-failure object of two records, the second of which still fails (503)
    records = [kinesis_record(n, {"type": "order.created"}, partition_key=f"k-{n}") for n in range(2)]
    put_on_failure_object(parked_subscription, "object-1", records)
    parked_subscription.endpoint.answers[webhook_ids(records)[1]] = [503]

    # When the object is redriven
    await redriver(parked_subscription).run()

    # Then both POSTs carried dispatch-redrive, and the record written back is the source's, without the mark
    assert len(redrive_times(parked_subscription)) == 2
    (invocation,) = parked_subscription.invocations
    assert all(REDRIVE_FIELD in record for record in invocation["Records"])
    assert on_failure_objects(parked_subscription) == {"object-1": [records[1]]}
