"""The delivered ids on real DynamoDB (moto): what Lambda re-sends after a partial failure
does not reach the endpoint twice, and the price in DynamoDB requests stays within the issue's bounds."""

from __future__ import annotations

import json

import pytest

from dispatcher.records import parse_event
from tests.events import event, kinesis_record, sequence_number, sqs_record
from tests.integration.conftest import AwsResources, DispatcherFactory
from tests.integration.support import LoopbackEndpoint

pytestmark = pytest.mark.integration

WRITES = {"PutItem", "BatchWriteItem", "UpdateItem", "TransactWriteItems"}


def payload(position: int) -> bytes:
    return json.dumps({"id": f"evt-{position}", "position": position}).encode()


def kinesis_batch(positions: range) -> dict[str, object]:
    """Records on distinct partition keys, so one failure does not hold back the others."""
    return event(*(kinesis_record(position, payload(position), f"pk-{position}") for position in positions))


def failures(*positions: int) -> dict[str, list[dict[str, str]]]:
    return {"batchItemFailures": [{"itemIdentifier": sequence_number(position)} for position in positions]}


async def test_kinesis_resend_after_partial_failure_skips_what_was_already_delivered_or_parked(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an endpoint that fails records 1 and 3 on every attempt and will never take record 4
    for position in (1, 3):
        endpoint.always(f"evt-{position}", 500)
    endpoint.always("evt-4", 404)
    dispatcher = make_dispatcher(max_attempts=2)

    # When a batch of records 0..5 is dispatched
    first = await dispatcher.dispatch(parse_event(kinesis_batch(range(6))), 30)

    # Then exactly the undelivered records are reported; record 4 is parked
    assert first.response() == failures(1, 3)
    assert endpoint.hits() == {"evt-0": 1, "evt-1": 2, "evt-2": 1, "evt-3": 2, "evt-4": 1, "evt-5": 1}
    assert len(aws.parked_messages()) == 1

    # When Lambda re-sends from the lowest reported sequence number on, to an endpoint now healthy
    endpoint.heal()
    second = await dispatcher.dispatch(parse_event(kinesis_batch(range(1, 6))), 30)

    # Then only the records that were not delivered are POSTed again; the others are counted as skipped
    assert second.response() == {"batchItemFailures": []}
    assert endpoint.hits() == {"evt-0": 1, "evt-1": 3, "evt-2": 1, "evt-3": 3, "evt-4": 1, "evt-5": 1}
    assert second.stats.duplicates_skipped == 3  # 2 and 5 delivered, 4 parked
    assert second.stats.delivered == 2
    # and the parked record was not parked a second time
    assert aws.parked_messages() == []


async def test_100_records_all_delivered_cost_at_most_2_dynamodb_requests_and_1_item(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a 100-record Kinesis batch and a healthy endpoint
    dispatcher = make_dispatcher(ordering="none", max_in_flight=32)
    batch = parse_event(kinesis_batch(range(100)))
    aws.requests.clear()

    # When it is dispatched
    report = await dispatcher.dispatch(batch, 30)

    # Then all are delivered for at most 2 DynamoDB requests and at most 1 item written
    operations = aws.requests.of("dynamodb")
    assert report.response() == {"batchItemFailures": []}
    assert len(endpoint.received) == 100
    assert len(operations) <= 2, operations
    assert sum(operation in WRITES for operation in operations) <= 1, operations
    assert len(aws.table_items()) <= 1


async def test_100_records_with_10_failing_cost_at_most_5_dynamodb_requests_and_the_resend_skips_90(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a 100-record Kinesis batch where every tenth record fails (500)
    failing = list(range(9, 100, 10))
    for position in failing:
        endpoint.always(f"evt-{position}", 500)
    dispatcher = make_dispatcher(ordering="none", max_in_flight=32, max_attempts=1)
    aws.requests.clear()

    # When it is dispatched
    first = await dispatcher.dispatch(parse_event(kinesis_batch(range(100))), 30)

    # Then exactly the 10 are reported, for at most 5 DynamoDB requests (the entries among them)
    operations = aws.requests.of("dynamodb")
    assert first.response() == failures(*failing)
    assert len(operations) <= 5, operations
    assert any(operation in WRITES for operation in operations), operations

    # When Lambda re-sends from the lowest failure (9) on, to a healthy endpoint
    endpoint.heal()
    aws.requests.clear()
    second = await dispatcher.dispatch(parse_event(kinesis_batch(range(9, 100))), 30)

    # Then only the 10 failed records are POSTed again, the 81 delivered after the checkpoint are skipped
    assert second.response() == {"batchItemFailures": []}
    hits = endpoint.hits()
    assert all(hits[f"evt-{position}"] == 2 for position in failing)
    assert all(hits[f"evt-{position}"] == 1 for position in range(100) if position not in failing)
    assert second.stats.duplicates_skipped == 81
    assert len(aws.requests.of("dynamodb")) <= 2, aws.requests.of("dynamodb")


async def test_sqs_partial_failure_needs_no_dynamodb_write_and_the_retry_is_delivered(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a standard-queue batch where one message fails on every attempt
    endpoint.always("msg-2", 503)
    dispatcher = make_dispatcher(ordering="none", max_attempts=1)
    aws.requests.clear()

    # When it is dispatched
    first = await dispatcher.dispatch(parse_event(event(*(sqs_record(f"msg-{n}", b"x") for n in range(1, 4)))), 30)

    # Then only that message is reported (Lambda re-sends only it), with no DynamoDB request at all
    assert first.response() == {"batchItemFailures": [{"itemIdentifier": "msg-2"}]}
    assert aws.requests.of("dynamodb") == []

    # When SQS redelivers it (receive count 2) to a healthy endpoint
    endpoint.heal()
    second = await dispatcher.dispatch(parse_event(event(sqs_record("msg-2", b"x", receive_count=2))), 30)

    # Then it is delivered (nothing marked it as delivered before)
    assert second.response() == {"batchItemFailures": []}
    assert endpoint.hits() == {"msg-1": 1, "msg-2": 2, "msg-3": 1}
    assert second.stats.duplicates_skipped == 0


def small_sequence_record(sequence: int) -> dict[str, object]:
    """A record numbered as moto numbers them ("8", "9", "10"...): string order differs from number order."""
    record = kinesis_record(0, payload(sequence), f"pk-{sequence}")
    record["kinesis"]["sequenceNumber"] = str(sequence)
    record["eventID"] = f"{record['eventID'].split(':')[0]}:{sequence}"
    return record


async def test_failures_over_several_resends_never_post_a_delivered_record_twice(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given records 8..12 with short sequence numbers, and records 9 and 11 failing
    endpoint.always("evt-9", 500)
    endpoint.always("evt-11", 500)
    dispatcher = make_dispatcher(max_attempts=1)

    def batch(*sequences: int) -> dict[str, object]:
        return event(*(small_sequence_record(sequence) for sequence in sequences))

    # When the batch is dispatched, then re-sent from 9 with only record 11 still failing,
    # then re-sent from 11 with the endpoint healthy
    first = await dispatcher.dispatch(parse_event(batch(8, 9, 10, 11, 12)), 30)
    endpoint.heal()
    endpoint.always("evt-11", 500)
    second = await dispatcher.dispatch(parse_event(batch(9, 10, 11, 12)), 30)
    endpoint.heal()
    third = await dispatcher.dispatch(parse_event(batch(11, 12)), 30)

    # Then each invocation reports exactly what is still undelivered, compared as numbers ("9" < "10")
    assert first.response() == {"batchItemFailures": [{"itemIdentifier": "9"}, {"itemIdentifier": "11"}]}
    assert second.response() == {"batchItemFailures": [{"itemIdentifier": "11"}]}
    assert third.response() == {"batchItemFailures": []}
    # and every record was delivered exactly once (failed attempts aside)
    assert endpoint.hits() == {"evt-8": 1, "evt-9": 2, "evt-10": 1, "evt-11": 3, "evt-12": 1}
    assert (second.stats.duplicates_skipped, third.stats.duplicates_skipped) == (2, 1)
