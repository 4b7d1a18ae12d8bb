"""KinesisProducer against moto: batching limits, partition keys, re-sending only failed records, refusals."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError

from producer import (
    KinesisProducer,
    ProducerConfigurationError,
    RecordsRefusedError,
    RetryPolicy,
    UnsentRecordsError,
    limits,
)
from tests.producer.conftest import STREAM, FlakyKinesis, stream_records

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

NO_BACKOFF = RetryPolicy(backoff_base_seconds=0.0, backoff_cap_seconds=0.0)


def producer_over(flaky: FlakyKinesis, **options: Any) -> KinesisProducer:
    return KinesisProducer(STREAM, client=cast("KinesisClient", flaky), retry=NO_BACKOFF, **options)


def orders(count: int) -> list[dict[str, object]]:
    return [{"type": "order.created", "order_id": f"o-{number}", "amount": number} for number in range(count)]


def test_puts_every_event_with_its_partition_key_from_a_json_field(kinesis: KinesisClient) -> None:
    # Given three orders and a producer keyed by order_id
    producer = KinesisProducer(STREAM, partition_key_field="order_id", client=kinesis)

    # When they are sent
    result = producer.send(orders(3))

    # Then one request put all three, each under its own order id, and the result lists them in input order
    assert (result.count, result.requests, result.resent) == (3, 1, 0)
    assert len(result.ids) == 3
    assert sorted(stream_records(kinesis)) == [
        (f"o-{n}", json.dumps(order, separators=(",", ":")).encode()) for n, order in enumerate(orders(3))
    ]


def test_a_nested_field_or_a_fixed_key_can_be_the_partition_key(kinesis: KinesisClient) -> None:
    # Given an event with the key nested in an object, and one sent under a fixed key
    KinesisProducer(STREAM, partition_key_field="customer.id", client=kinesis).send(['{"customer": {"id": 42}}'])
    KinesisProducer(STREAM, partition_key="everything", client=kinesis).send(['{"n": 1}'])

    # Then the nested integer became the key "42" and the fixed key was used as given
    assert sorted(key for key, _ in stream_records(kinesis)) == ["42", "everything"]


def test_501_records_take_two_requests(kinesis: KinesisClient) -> None:
    # Given 501 small records: one more than PutRecords takes at once
    flaky = FlakyKinesis(kinesis)

    # When they are sent
    result = producer_over(flaky, partition_key_field="order_id").send(orders(501))

    # Then a full request of 500 went out, then one of 1
    assert [len(call) for call in flaky.calls] == [500, 1]
    assert result.count == 501


def test_requests_are_split_at_five_mebibytes(kinesis: KinesisClient) -> None:
    # Given six records of about 1,000,000 bytes: five fit in one request's 5 MiB, six do not
    padding = "x" * 999_950
    events = [json.dumps({"order_id": f"o-{n}", "padding": padding}) for n in range(6)]
    flaky = FlakyKinesis(kinesis)

    # When they are sent
    producer_over(flaky, partition_key_field="order_id").send(events)

    # Then the first request carried five and stayed within the limit, the second carried one
    assert [len(call) for call in flaky.calls] == [5, 1]
    assert sum(len(data) + len("o-0") for data in flaky.calls[0]) <= limits.KINESIS_MAX_REQUEST_BYTES


def test_only_the_records_that_failed_are_sent_again(kinesis: KinesisClient) -> None:
    # Given a stream whose first PutRecords reports records 1 and 3 throttled (hot shard)
    flaky = FlakyKinesis(kinesis, fail=lambda call, position: call == 0 and position in {1, 3})
    sleeps: list[float] = []
    producer = KinesisProducer(
        STREAM, partition_key_field="order_id", client=cast("KinesisClient", flaky), sleep=sleeps.append
    )

    # When five orders are sent
    result = producer.send(orders(5))

    # Then the second request re-sent exactly those two, after one backoff sleep
    assert [json.loads(data)["order_id"] for data in flaky.calls[1]] == ["o-1", "o-3"]
    assert (result.count, result.requests, result.resent) == (5, 2, 2)
    assert len(sleeps) == 1
    # And every order is on the stream exactly once
    assert sorted(key for key, _ in stream_records(kinesis)) == [f"o-{n}" for n in range(5)]


def test_records_still_failing_after_the_last_round_are_listed_in_the_error(kinesis: KinesisClient) -> None:
    # Given a stream that throttles the record at the head of every request, forever
    flaky = FlakyKinesis(kinesis, fail=lambda call, position: position == 0)
    retry = RetryPolicy(max_rounds=3, backoff_base_seconds=0.0, backoff_cap_seconds=0.0)
    producer = KinesisProducer(STREAM, partition_key_field="order_id", client=cast("KinesisClient", flaky), retry=retry)

    # When three orders are sent
    with pytest.raises(UnsentRecordsError) as raised:
        producer.send(orders(3))

    # Then the producer gave up after three rounds: the first put o-1 and o-2, the next two retried o-0 alone
    assert [len(call) for call in flaky.calls] == [3, 1, 1]
    error = raised.value
    assert [(failure.index, failure.code) for failure in error.failures] == [
        (0, "ProvisionedThroughputExceededException")
    ]
    assert sorted(error.result.receipts) == [1, 2]
    assert (error.result.requests, error.result.resent) == (3, 2)
    assert "1 of 3 records could not be put on stream dev-orders (2 were)" in str(error)
    assert "record 0: ProvisionedThroughputExceededException: Rate exceeded for shard" in str(error)


def test_an_oversize_record_is_refused_before_anything_is_sent(kinesis: KinesisClient) -> None:
    # Given a batch whose third record is one byte over 1 MiB once its partition key ("k") is counted
    fits = b"x" * (limits.KINESIS_MAX_RECORD_BYTES - 1)
    too_large = b"x" * limits.KINESIS_MAX_RECORD_BYTES
    flaky = FlakyKinesis(kinesis)

    # When it is sent
    with pytest.raises(RecordsRefusedError) as raised:
        producer_over(flaky, partition_key="k").send([b"{}", fits, too_large])

    # Then no request was made, and the error names the record and its size; the one at the limit passed
    assert flaky.calls == []
    assert [problem.index for problem in raised.value.problems] == [2]
    assert "record 2: is 1,048,577 bytes (data plus partition key), above the Kinesis limit of 1,048,576 bytes" in (
        str(raised.value)
    )


def test_events_without_their_partition_key_field_are_refused_by_index(kinesis: KinesisClient) -> None:
    # Given events where the key is missing, null, or the event is not JSON at all
    flaky = FlakyKinesis(kinesis)
    events = ['{"order_id": "o-1"}', '{"id": "o-2"}', '{"order_id": null}', "not json"]

    # When they are sent
    with pytest.raises(RecordsRefusedError) as raised:
        producer_over(flaky, partition_key_field="order_id").send(events)

    # Then nothing went out and each bad record is named with its reason
    assert flaky.calls == []
    assert [str(problem) for problem in raised.value.problems] == [
        "record 1: has no field 'order_id'",
        "record 2: field 'order_id' is null, not a string or an integer",
        "record 3: is not JSON, so it has no field 'order_id': Expecting value: line 1 column 1 (char 0)",
    ]


def test_a_partition_key_longer_than_256_characters_is_refused(kinesis: KinesisClient) -> None:
    with pytest.raises(RecordsRefusedError, match="record 0: partition key has 257 characters; Kinesis takes 1 to 256"):
        KinesisProducer(STREAM, partition_key_field="id", client=kinesis).send([{"id": "k" * 257}])
    with pytest.raises(ProducerConfigurationError, match="partition key has 257 characters"):
        KinesisProducer(STREAM, partition_key="k" * 257, client=kinesis)


@pytest.mark.parametrize(
    "options",
    [{}, {"partition_key": "k", "partition_key_field": "order_id"}],
    ids=["neither", "both"],
)
def test_exactly_one_partition_key_source_is_required(options: dict[str, Any]) -> None:
    with pytest.raises(ProducerConfigurationError, match="exactly one of partition_key and partition_key_field"):
        KinesisProducer(STREAM, **options)


def test_a_missing_stream_fails_every_record_with_the_service_error(kinesis: KinesisClient) -> None:
    # Given a stream name that does not exist
    producer = KinesisProducer("no-such-stream", partition_key="k", client=kinesis)

    # When two records are sent
    with pytest.raises(UnsentRecordsError) as raised:
        producer.send(orders(2))

    # Then both are reported with the error of the request that could not be made
    assert [(failure.index, failure.code) for failure in raised.value.failures] == [
        (0, "ResourceNotFoundException"),
        (1, "ResourceNotFoundException"),
    ]
    assert raised.value.result.count == 0


def test_progress_is_reported_per_request(kinesis: KinesisClient) -> None:
    # Given a throttled record in the first request
    flaky = FlakyKinesis(kinesis, fail=lambda call, position: call == 0 and position == 0)
    accepted: list[int] = []

    # When 501 records are sent
    producer_over(flaky, partition_key_field="order_id").send(orders(501), on_progress=accepted.append)

    # Then progress counted 499 from the first request, 1 from the re-send and 1 from the second batch
    assert accepted == [499, 1, 1]


def test_a_stream_arn_is_accepted_in_place_of_a_name(kinesis: KinesisClient) -> None:
    arn = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamARN"]

    result = KinesisProducer(arn, partition_key="k", client=kinesis).send(orders(2))

    assert result.count == 2
    assert len(stream_records(kinesis)) == 2


def test_a_request_that_fails_outright_reports_everything_not_yet_put(kinesis: KinesisClient) -> None:
    # Given a stream whose second PutRecords fails as a whole, after botocore's own retries
    class FailingSecondCall(FlakyKinesis):
        def put_records(self, **request: Any) -> dict[str, Any]:
            if self.calls:
                raise ClientError({"Error": {"Code": "KMSThrottlingException", "Message": "slow down"}}, "PutRecords")
            return super().put_records(**request)

    flaky = FailingSecondCall(kinesis)

    # When 501 records are sent
    with pytest.raises(UnsentRecordsError) as raised:
        producer_over(flaky, partition_key_field="order_id").send(orders(501))

    # Then the first 500 are kept as put and the last one is reported with the request's error
    assert raised.value.result.count == 500
    assert [str(failure) for failure in raised.value.failures] == ["record 500: KMSThrottlingException: slow down"]
