"""The Kinesis event source mapping, rule by rule, against moto with a scripted function."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from typing import Any

import pytest

from local.esm.kinesis import (
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    RETRY_BACKOFF_BASE_SECONDS,
    RETRY_BACKOFF_CAP_SECONDS,
    KinesisPoller,
    retry_backoff_seconds,
)
from tests.local.conftest import (
    REGION,
    TIMED_OUT,
    FunctionError,
    LocalAws,
    ScriptedFunction,
    eventually,
    item_failures,
    kinesis_poller,
    raising,
    running,
)

pytestmark = pytest.mark.integration


class VirtualTime:
    """The mapping's clock and its backoff sleep: a sleep returns at once and moves the clock on by its length,
    so retries are counted against record ages without a test waiting out the backoff."""

    def __init__(self) -> None:
        self.skipped_seconds = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.time() + self.skipped_seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.skipped_seconds += seconds
        await asyncio.sleep(0)


def poller_in_virtual_time(
    aws: LocalAws, stream: tuple[str, str], function: Any, virtual_time: VirtualTime, **mapping: Any
) -> KinesisPoller:
    return kinesis_poller(aws, stream, function, clock=virtual_time.now, sleep=virtual_time.sleep, **mapping)


def data_of(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["kinesis"]["data"])


def fail_records_with(marker: bytes) -> Any:
    """A function that raises whenever its batch holds a record whose data contains `marker`."""

    def script(records: list[dict[str, Any]], invocation: int) -> object:
        if any(marker in data_of(record) for record in records):
            raise FunctionError("poison record")
        return None

    return script


async def test_event_has_the_lambda_kinesis_record_shape(aws: LocalAws) -> None:
    # Given a stream holding one record
    stream = aws.create_stream()
    (sequence_number,) = aws.put_records(stream[0], [("customer-7", b'{"type": "order.created"}')])
    function = ScriptedFunction()
    # When the mapping delivers it
    async with running(kinesis_poller(aws, stream, function)):
        await eventually(lambda: len(function.events) == 1)
    # Then the function receives exactly the record Lambda would send
    (record,) = function.events[0]["Records"]
    arrival = record["kinesis"].pop("approximateArrivalTimestamp")
    assert isinstance(arrival, float)
    assert abs(arrival - time.time()) < 60
    assert record == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "customer-7",
            "sequenceNumber": sequence_number,
            "data": base64.b64encode(b'{"type": "order.created"}').decode(),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000000:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/consumer-fn-role",
        "awsRegion": REGION,
        "eventSourceARN": stream[1],
    }


async def test_batches_hold_at_most_batch_size_records_in_shard_order(aws: LocalAws) -> None:
    # Given five records on one shard and BatchSize 2
    stream = aws.create_stream()
    sequence_numbers = aws.put_records(stream[0], [("key", f"r{index}".encode()) for index in range(5)])
    function = ScriptedFunction()
    # When the mapping delivers them
    async with running(kinesis_poller(aws, stream, function, batch_size=2)):
        await eventually(lambda: sum(map(len, function.batches)) == 5)
    # Then the batches are consecutive runs of the shard, two records at most
    assert function.batches == [sequence_numbers[0:2], sequence_numbers[2:4], sequence_numbers[4:5]]


async def test_batching_window_gathers_records_that_arrive_apart(aws: LocalAws) -> None:
    # Given a 2 s batching window and BatchSize 10
    stream = aws.create_stream()
    function = ScriptedFunction()
    async with running(kinesis_poller(aws, stream, function, batch_size=10, batching_window_seconds=2.0)):
        # When two records arrive, then three more a little later, within the window
        first = aws.put_records(stream[0], [("key", b"1"), ("key", b"2")])
        await asyncio.sleep(0.5)
        second = aws.put_records(stream[0], [("key", b"3"), ("key", b"4"), ("key", b"5")])
        await eventually(lambda: sum(map(len, function.batches)) == 5)
    # Then they reach the function in one batch
    assert function.batches == [first + second]


async def test_starting_position_latest_skips_records_already_in_the_stream(aws: LocalAws) -> None:
    # Given a record put before the mapping starts at LATEST
    stream = aws.create_stream()
    aws.put_records(stream[0], [("key", b"old")])
    function = ScriptedFunction()
    async with running(kinesis_poller(aws, stream, function, starting_position="LATEST")):
        # When another record arrives after it started
        (new,) = aws.put_records(stream[0], [("key", b"new")])
        await eventually(lambda: bool(function.events))
    # Then only the new record is delivered
    assert function.batches == [[new]]


async def test_one_batch_per_shard_is_in_flight(aws: LocalAws) -> None:
    # Given two shards with several records each and a slow function
    stream = aws.create_stream(shards=2)
    aws.put_records(stream[0], [(f"key-{index}", b"x") for index in range(8)])
    function = ScriptedFunction(delay_seconds=0.2)
    shards_in_flight: list[list[str]] = []

    def script(records: list[dict[str, Any]], invocation: int) -> object:
        shards_in_flight.append([batch[0]["eventID"].split(":")[0] for batch in function.in_flight])
        return None

    function.script = script
    # When the mapping delivers them with BatchSize 1
    async with running(kinesis_poller(aws, stream, function, batch_size=1)):
        await eventually(lambda: len(function.events) == 8)
    # Then no shard ever has two batches in flight
    assert all(len(shards) == len(set(shards)) for shards in shards_in_flight)
    assert function.peak_concurrency <= 2


async def test_parallelization_factor_runs_batches_concurrently_keeping_each_key_in_order(aws: LocalAws) -> None:
    # Given one shard with two records for each of twelve partition keys, and ParallelizationFactor 3
    stream = aws.create_stream()
    keys = [f"customer-{index}" for index in range(12)]
    aws.put_records(stream[0], [(key, f"{key}/{step}".encode()) for step in range(2) for key in keys])
    function = ScriptedFunction(delay_seconds=0.2)
    keys_in_flight: list[list[str]] = []

    def script(records: list[dict[str, Any]], invocation: int) -> object:
        keys_in_flight.append([record["kinesis"]["partitionKey"] for batch in function.in_flight for record in batch])
        return None

    function.script = script
    # When the mapping delivers them, one record per batch
    async with running(kinesis_poller(aws, stream, function, batch_size=1, parallelization_factor=3)):
        await eventually(lambda: len(function.events) == 24)
    # Then several batches of the shard were in flight at once, never more than the factor
    assert 1 < function.peak_concurrency <= 3
    # And a partition key never had two batches in flight, and its records arrived in order
    assert all(len(keys) == len(set(keys)) for keys in keys_in_flight)
    delivered = [data_of(event["Records"][0]).decode() for event in function.events]
    for key in keys:
        assert [item for item in delivered if item.startswith(f"{key}/")] == [f"{key}/0", f"{key}/1"]


async def test_partial_failure_checkpoints_at_the_lowest_sequence_number_compared_as_integers(aws: LocalAws) -> None:
    # Given twelve records: moto numbers them "1".."12", where "10" < "9" as strings
    stream = aws.create_stream()
    sequence_numbers = aws.put_records(stream[0], [("key", f"r{index}".encode()) for index in range(12)])
    assert [int(number) for number in sequence_numbers] == sorted(int(number) for number in sequence_numbers)

    # When the function reports the 10th and the 9th records failed, then succeeds
    def script(records: list[dict[str, Any]], invocation: int) -> object:
        return item_failures(sequence_numbers[9], sequence_numbers[8]) if invocation == 1 else None

    function = ScriptedFunction(script)
    async with running(kinesis_poller(aws, stream, function, batch_size=12)):
        await eventually(lambda: len(function.events) == 2)
    # Then the mapping re-sends from the 9th record (the lowest as an integer), including the 10th onwards
    assert function.batches == [sequence_numbers, sequence_numbers[8:]]


@pytest.mark.parametrize(
    "response",
    [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}],
    ids=["null-response", "empty-response", "empty-list", "null-list"],
)
async def test_empty_or_null_responses_are_full_success(aws: LocalAws, response: object) -> None:
    # Given two records, one per batch
    stream = aws.create_stream()
    sequence_numbers = aws.put_records(stream[0], [("key", b"1"), ("key", b"2")])
    function = ScriptedFunction(lambda records, invocation: response)
    # When the function answers each batch with an empty or null response
    async with running(kinesis_poller(aws, stream, function, batch_size=1)):
        await eventually(lambda: len(function.events) == 2)
    # Then each batch is done: the second follows the first, nothing is re-sent
    assert function.batches == [[sequence_numbers[0]], [sequence_numbers[1]]]


@pytest.mark.parametrize(
    "bad_response",
    [
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemId": "1"}]},
        {"batchItemFailures": [{"itemIdentifier": "999999"}]},
        {"batchItemFailures": "1"},
        ["not", "an", "object"],
    ],
    ids=["empty-identifier", "null-identifier", "wrong-key", "unknown-identifier", "not-a-list", "not-an-object"],
)
async def test_invalid_partial_responses_fail_the_whole_batch(aws: LocalAws, bad_response: object) -> None:
    # Given a batch of three records
    stream = aws.create_stream()
    sequence_numbers = aws.put_records(stream[0], [("key", b"1"), ("key", b"2"), ("key", b"3")])
    function = ScriptedFunction(lambda records, invocation: bad_response if invocation == 1 else None)
    # When the function's first answer is not a valid partial response
    async with running(kinesis_poller(aws, stream, function, batch_size=3)):
        await eventually(lambda: len(function.events) == 2)
    # Then the whole batch is sent again
    assert function.batches == [sequence_numbers, sequence_numbers]


@pytest.mark.parametrize("failure", ["exception", "timeout"])
async def test_a_function_error_fails_the_whole_batch(aws: LocalAws, failure: str) -> None:
    # Given a batch of two records
    stream = aws.create_stream()
    sequence_numbers = aws.put_records(stream[0], [("key", b"1"), ("key", b"2")])

    def script(records: list[dict[str, Any]], invocation: int) -> object:
        if invocation == 1 and failure == "exception":
            raise FunctionError("boom")
        return TIMED_OUT if invocation == 1 else None

    function = ScriptedFunction(script)
    poller = kinesis_poller(aws, stream, function, batch_size=2)
    # When the first invocation raises or times out
    async with running(poller):
        await eventually(lambda: len(function.events) == 2)
    # Then the whole batch is retried, and the error is counted
    assert function.batches == [sequence_numbers, sequence_numbers]
    assert (poller.stats.function_errors, poller.stats.timeouts) == (1, 1 if failure == "timeout" else 0)


async def test_without_report_batch_item_failures_the_response_is_ignored(aws: LocalAws) -> None:
    # Given a mapping without ReportBatchItemFailures
    stream = aws.create_stream()
    sequence_numbers = aws.put_records(stream[0], [("key", b"1"), ("key", b"2")])
    function = ScriptedFunction(lambda records, invocation: item_failures(records[0]["kinesis"]["sequenceNumber"]))
    poller = kinesis_poller(aws, stream, function, batch_size=1, report_batch_item_failures=False)
    # When the function returns item failures (without raising)
    async with running(poller):
        await eventually(lambda: len(function.events) == 2)
    # Then every batch counts as a success
    assert function.batches == [[sequence_numbers[0]], [sequence_numbers[1]]]
    assert poller.stats.records_reported_failed == 0


async def test_exhausted_retries_send_the_batch_with_its_records_to_the_on_failure_bucket(aws: LocalAws) -> None:
    # Given a poison record followed by a good one, MaximumRetryAttempts 2 and an S3 on-failure destination
    stream = aws.create_stream()
    bucket = aws.create_bucket()
    poison, good = aws.put_records(stream[0], [("key", b"poison"), ("key", b"good")])
    function = ScriptedFunction(fail_records_with(b"poison"))
    poller = poller_in_virtual_time(
        aws, stream, function, VirtualTime(), batch_size=1, maximum_retry_attempts=2, on_failure_bucket=bucket
    )
    # When the function keeps failing on the poison record
    async with running(poller):
        await eventually(lambda: [good] in function.batches, "the shard to move on")
        await eventually(lambda: bool(aws.objects(bucket)), "the on-failure record")
    # Then it was invoked once and retried twice, then the shard moved on
    assert function.batches == [[poison], [poison], [poison], [good]]
    # And the on-failure object holds the metadata and the record itself
    (document,) = aws.objects(bucket)
    assert document["requestContext"]["condition"] == RETRY_ATTEMPTS_EXHAUSTED
    assert document["requestContext"]["approximateInvokeCount"] == 3
    assert document["requestContext"]["functionArn"] == "arn:aws:lambda:eu-west-1:123456789012:function:consumer-fn"
    assert document["KinesisBatchInfo"] | {"approximateArrivalOfFirstRecord": None} == {
        "shardId": "shardId-000000000000",
        "startSequenceNumber": poison,
        "endSequenceNumber": poison,
        "approximateArrivalOfFirstRecord": None,
        "approximateArrivalOfLastRecord": document["KinesisBatchInfo"]["approximateArrivalOfLastRecord"],
        "batchSize": 1,
        "streamArn": stream[1],
    }
    assert [data_of(record) for record in document["payload"]["Records"]] == [b"poison"]
    assert poller.stats.sent_to_on_failure_store == 1
    assert poller.stats.function_errors == 3
    # And the function raised, so the response context says so (as in the LocalStack snapshot
    # test_kinesis_event_source_mapping_with_on_failure_destination_config, key sqs_payload)
    assert document["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }


async def test_records_older_than_maximum_record_age_go_to_on_failure_without_an_invocation(aws: LocalAws) -> None:
    # Given MaximumRecordAgeInSeconds 60 and a record that is already two minutes old by the mapping's clock
    stream = aws.create_stream()
    bucket = aws.create_bucket()
    (old,) = aws.put_records(stream[0], [("key", b"stale")])
    function = ScriptedFunction()

    def two_minutes_later() -> float:
        return time.time() + 120

    poller = kinesis_poller(
        aws, stream, function, maximum_record_age_seconds=60, on_failure_bucket=bucket, clock=two_minutes_later
    )
    # When the mapping reads it
    async with running(poller):
        await eventually(lambda: bool(aws.objects(bucket)), "the on-failure record")
    # Then it goes to the on-failure destination unsent, with no response context
    (document,) = aws.objects(bucket)
    assert document["requestContext"]["condition"] == RECORD_AGE_EXCEEDED
    assert document["KinesisBatchInfo"]["startSequenceNumber"] == old
    assert "responseContext" not in document
    assert function.events == []
    # And, as AWS writes it for a record that expired before it was ever sent, approximateInvokeCount is 1
    # (LocalStack test_kinesis_maximum_record_age_exceeded[expire-before-ingestion], key record_age_exceeded_payload)
    assert document["requestContext"]["approximateInvokeCount"] == 1


async def test_bisect_splits_a_failing_batch_until_the_poison_record_is_alone(aws: LocalAws) -> None:
    # Given four records, the third one poison, BisectBatchOnFunctionError and MaximumRetryAttempts 1
    stream = aws.create_stream()
    bucket = aws.create_bucket()
    one, two, three, four = aws.put_records(stream[0], [("k", b"1"), ("k", b"2"), ("k", b"poison"), ("k", b"4")])
    function = ScriptedFunction(fail_records_with(b"poison"))
    poller = poller_in_virtual_time(
        aws,
        stream,
        function,
        VirtualTime(),
        batch_size=4,
        bisect_on_error=True,
        maximum_retry_attempts=1,
        on_failure_bucket=bucket,
    )
    # When the function raises on every batch holding the poison record
    async with running(poller):
        await eventually(lambda: [four] in function.batches, "the last record")
    # Then the batch is halved (the splits are not retries) until the poison record alone uses up its retries
    assert function.batches == [[one, two, three, four], [one, two], [three, four], [three], [three], [four]]
    (document,) = aws.objects(bucket)
    assert [data_of(record) for record in document["payload"]["Records"]] == [b"poison"]


async def test_bisect_with_a_partial_response_splits_at_the_reported_record_without_counting_a_retry(
    aws: LocalAws,
) -> None:
    # Given four records, bisect on and no retries allowed
    stream = aws.create_stream()
    bucket = aws.create_bucket()
    sequence_numbers = aws.put_records(stream[0], [("k", b"1"), ("k", b"2"), ("k", b"3"), ("k", b"4")])
    function = ScriptedFunction(
        lambda records, invocation: item_failures(sequence_numbers[2]) if invocation == 1 else None
    )
    poller = kinesis_poller(
        aws, stream, function, batch_size=4, bisect_on_error=True, maximum_retry_attempts=0, on_failure_bucket=bucket
    )
    # When the function reports the third record failed, then succeeds
    async with running(poller):
        await eventually(lambda: len(function.events) == 2)
    # Then only the rest of the batch from the reported record is sent again, and nothing is given up
    assert function.batches == [sequence_numbers, sequence_numbers[2:]]
    assert aws.objects(bucket) == []


async def test_a_partial_failure_that_moves_the_checkpoint_gives_the_rest_a_fresh_retry_budget(
    aws: LocalAws,
) -> None:
    # Given six records, the last one failing, BatchSize 3 and MaximumRetryAttempts 3: the setting of LocalStack's
    # test_kinesis_report_batch_item_failures, recorded on AWS (snapshot keys kinesis_records and sqs_payload)
    stream = aws.create_stream()
    bucket = aws.create_bucket()
    sequence_numbers = aws.put_records(stream[0], [("k", f"r{index}".encode()) for index in range(6)])
    last = sequence_numbers[-1]

    def report_the_last_record(records: list[dict[str, Any]], invocation: int) -> object:
        in_batch = [record["kinesis"]["sequenceNumber"] for record in records]
        return item_failures(last) if last in in_batch else None

    function = ScriptedFunction(report_the_last_record)
    poller = poller_in_virtual_time(
        aws, stream, function, VirtualTime(), batch_size=3, maximum_retry_attempts=3, on_failure_bucket=bucket
    )
    # When the function reports the last record failed every time it sees it
    async with running(poller):
        await eventually(lambda: bool(aws.objects(bucket)), "the on-failure record")
    # Then, as on AWS, the record is delivered 5 times: once in its batch (which moved the checkpoint to it), then
    # as a new batch of its own with a fresh budget, invoked once and retried 3 times
    assert function.batches == [sequence_numbers[:3], sequence_numbers[3:], [last], [last], [last], [last]]
    (document,) = aws.objects(bucket)
    assert document["requestContext"]["condition"] == RETRY_ATTEMPTS_EXHAUSTED
    assert document["requestContext"]["approximateInvokeCount"] == 4
    assert (document["KinesisBatchInfo"]["startSequenceNumber"], document["KinesisBatchInfo"]["batchSize"]) == (last, 1)
    # And the function answered (a partial response), so functionError is null
    assert document["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": None}


@pytest.mark.parametrize(
    "invalid_response",
    [{"batchItemFailures": [{"itemIdentifier": ""}]}, {"batchItemFailures": [{"itemIdentifier": None}]}],
    ids=["empty_string_item_identifier_failure", "null_item_identifier_failure"],
)
async def test_an_invalid_partial_response_given_up_on_has_a_null_function_error(
    aws: LocalAws, invalid_response: object
) -> None:
    # Given one record, BatchSize 1 and MaximumRetryAttempts 2: LocalStack's
    # test_kinesis_report_batch_item_failure_scenarios[<id>], recorded on AWS (snapshot key sqs_payload)
    stream = aws.create_stream()
    bucket = aws.create_bucket()
    (sequence_number,) = aws.put_records(stream[0], [("test", b"hello")])
    function = ScriptedFunction(lambda records, invocation: invalid_response)
    poller = poller_in_virtual_time(
        aws, stream, function, VirtualTime(), batch_size=1, maximum_retry_attempts=2, on_failure_bucket=bucket
    )
    # When the function answers every invocation with an invalid partial response
    async with running(poller):
        await eventually(lambda: bool(aws.objects(bucket)), "the on-failure record")
    # Then the whole batch failed 3 times and was given up, and the function answered: functionError null
    assert function.batches == [[sequence_number]] * 3
    (document,) = aws.objects(bucket)
    assert document["requestContext"]["approximateInvokeCount"] == 3
    assert document["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": None}


async def test_an_empty_batch_item_failures_list_is_success_after_one_invocation(aws: LocalAws) -> None:
    # Given one record, BatchSize 1, MaximumRetryAttempts 2 and an on-failure destination: LocalStack's
    # test_kinesis_report_batch_item_success_scenarios[empty_batch_item_failure_success], recorded on AWS
    # (snapshot key kinesis_events: one invocation)
    stream = aws.create_stream()
    bucket = aws.create_bucket()
    (sequence_number,) = aws.put_records(stream[0], [("test", b"hello")])
    function = ScriptedFunction(lambda records, invocation: {"batchItemFailures": []})
    poller = kinesis_poller(aws, stream, function, batch_size=1, maximum_retry_attempts=2, on_failure_bucket=bucket)
    # When the function answers {"batchItemFailures": []} and a later record follows
    async with running(poller):
        await eventually(lambda: len(function.events) == 1)
        (later,) = aws.put_records(stream[0], [("test", b"later")])
        await eventually(lambda: len(function.events) == 2)
    # Then the first record was invoked once and the shard moved on; nothing was given up
    assert function.batches == [[sequence_number], [later]]
    assert aws.objects(bucket) == []
    assert poller.stats.function_errors == 0


def test_retries_back_off_exponentially_up_to_the_cap() -> None:
    # Given the named backoff constants
    # When the pauses before the first retries are computed
    pauses = [retry_backoff_seconds(retry) for retry in range(1, 12)]
    # Then they double from the base and stay at the cap
    assert pauses[0] == RETRY_BACKOFF_BASE_SECONDS
    assert all(later == min(2 * earlier, RETRY_BACKOFF_CAP_SECONDS) for earlier, later in itertools.pairwise(pauses))
    assert pauses[-1] == RETRY_BACKOFF_CAP_SECONDS
    # And a retry far down an endless budget still waits the cap
    assert retry_backoff_seconds(10_000) == RETRY_BACKOFF_CAP_SECONDS


def attempts_within(seconds: float) -> int:
    """How many invocations start within `seconds` of the first when every one fails at once."""
    attempts, elapsed = 1, 0.0
    while (elapsed := elapsed + retry_backoff_seconds(attempts)) <= seconds:
        attempts += 1
    return attempts


def test_the_backoff_gives_as_many_attempts_per_minute_as_aws_made() -> None:
    # Given AWS's record: 8 invocations of an always-failing batch in the 60 s before its record expired
    # (LocalStack test_kinesis_maximum_record_age_exceeded[expire-while-retrying], record_age_exceeded_payload)
    # When the constants' schedule is laid over that minute
    # Then it makes as many attempts, within the 4 to 16 per minute AWS shows early on
    assert attempts_within(60) == 8
    assert 4 <= attempts_within(60) <= 16


async def test_a_failing_batch_is_retried_with_backoff_until_its_record_expires(aws: LocalAws) -> None:
    # Given an always-failing function, endless retries and MaximumRecordAgeInSeconds 60, as in LocalStack's
    # test_kinesis_maximum_record_age_exceeded[expire-while-retrying]
    stream = aws.create_stream()
    bucket = aws.create_bucket()
    aws.put_records(stream[0], [("test", b"stream-data")])
    function = ScriptedFunction(raising())
    virtual_time = VirtualTime()
    poller = poller_in_virtual_time(
        aws, stream, function, virtual_time, maximum_record_age_seconds=60, on_failure_bucket=bucket
    )
    # When the mapping retries it until it is too old (the backoff waits are skipped, the clock moves on by them)
    async with running(poller):
        await eventually(lambda: bool(aws.objects(bucket)), "the on-failure record")
    # Then it was invoked as often as the backoff allows in a minute (real time spent in between can only make the
    # record expire sooner), with pauses that grew, and given up as too old
    assert attempts_within(60) - 1 <= len(function.events) <= attempts_within(60)
    assert virtual_time.sleeps == [retry_backoff_seconds(retry) for retry in range(1, len(function.events) + 1)]
    (document,) = aws.objects(bucket)
    assert document["requestContext"]["condition"] == RECORD_AGE_EXCEEDED
    assert document["requestContext"]["approximateInvokeCount"] == len(function.events)


async def test_filter_criteria_drop_records_whose_json_data_does_not_match(aws: LocalAws) -> None:
    # Given a filter on data.type and records of several types, one of them not JSON
    stream = aws.create_stream()
    payloads = [
        json.dumps({"type": "order.created", "id": "a"}).encode(),
        json.dumps({"type": "order.cancelled", "id": "b"}).encode(),
        b"not json",
        json.dumps({"type": "order.created", "id": "c"}).encode(),
    ]
    aws.put_records(stream[0], [("k", payload) for payload in payloads])
    function = ScriptedFunction()
    poller = kinesis_poller(aws, stream, function, filter_patterns=({"data": {"type": ["order.created"]}},))
    # When the mapping reads them
    async with running(poller):
        await eventually(lambda: poller.stats.filtered_out == 2)
        await eventually(lambda: sum(map(len, function.batches)) == 2)
    # Then only the matching records reach the function
    delivered = [json.loads(data_of(record))["id"] for event in function.events for record in event["Records"]]
    assert delivered == ["a", "c"]


async def test_iterator_age_is_the_age_of_the_last_record_of_the_batch(aws: LocalAws) -> None:
    # Given a mapping whose clock runs five seconds ahead of the stream's
    stream = aws.create_stream()
    aws.put_records(stream[0], [("k", b"1"), ("k", b"2")])
    function = ScriptedFunction()
    poller = kinesis_poller(aws, stream, function, clock=lambda: time.time() + 5)
    # When it sends the batch
    async with running(poller):
        await eventually(lambda: bool(function.events))
    # Then IteratorAge is at least those five seconds, in milliseconds
    last_arrival = function.events[0]["Records"][-1]["kinesis"]["approximateArrivalTimestamp"]
    assert poller.stats.iterator_age_ms >= 5000
    assert poller.stats.max_iterator_age_ms >= poller.stats.iterator_age_ms
    assert poller.stats.iterator_age_ms <= (time.time() + 5 - last_arrival) * 1000


async def test_function_errors_and_invocations_are_counted(aws: LocalAws) -> None:
    # Given a function that always raises, and one retry allowed
    stream = aws.create_stream()
    aws.put_records(stream[0], [("k", b"1")])
    function = ScriptedFunction(raising())
    poller = kinesis_poller(aws, stream, function, maximum_retry_attempts=1)
    # When the mapping gives the record up
    async with running(poller):
        await eventually(lambda: poller.stats.extra.get("discarded") == 1, "the record to be given up")
    # Then both invocations were function errors, and nothing is left in flight
    assert (poller.stats.invocations, poller.stats.function_errors, poller.stats.records_in_flight) == (2, 2, 0)


async def test_cancelling_the_poller_stops_it(aws: LocalAws) -> None:
    # Given a running poller
    stream = aws.create_stream(shards=2)
    task = asyncio.create_task(kinesis_poller(aws, stream, ScriptedFunction()).run())
    await asyncio.sleep(0.5)
    # When its task is cancelled
    task.cancel()
    # Then it ends (the guard only stops a hang)
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert task.cancelled()
