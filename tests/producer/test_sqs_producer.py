"""SqsProducer against moto: batches of 10 and 256 KiB, re-sending only failed entries, FIFO ids, refusals."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, cast

import pytest

from producer import ProducerConfigurationError, RecordsRefusedError, RetryPolicy, SqsProducer, UnsentRecordsError
from producer.limits import KIB, SQS_MAX_MESSAGE_BYTES
from tests.producer.conftest import FIFO_QUEUE, QUEUE, FlakySqs, queue_messages

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

NO_BACKOFF = RetryPolicy(backoff_base_seconds=0.0, backoff_cap_seconds=0.0)


def producer_over(flaky: FlakySqs, queue: str = QUEUE, **options: Any) -> SqsProducer:
    return SqsProducer(queue, client=cast("SQSClient", flaky), retry=NO_BACKOFF, **options)


def invoices(count: int) -> list[str]:
    return [
        json.dumps({"type": "invoice.paid", "invoice_id": f"i-{n}", "customer": f"c-{n % 3}"}) for n in range(count)
    ]


def test_25_messages_go_out_in_requests_of_10(sqs: SQSClient) -> None:
    # Given 25 events and a standard queue named, not given by URL
    flaky = FlakySqs(sqs)

    # When they are sent
    result = producer_over(flaky).send(invoices(25))

    # Then three requests carried 10, 10 and 5, and every body arrived as given
    assert [len(call) for call in flaky.calls] == [10, 10, 5]
    assert (result.count, result.requests, result.resent) == (25, 3, 0)
    assert sorted(message["Body"] for message in queue_messages(sqs, QUEUE)) == sorted(invoices(25))


def test_requests_are_split_at_256_kibibytes(sqs: SQSClient) -> None:
    # Given three messages of 100 KiB: two fit in one request's 256 KiB, three do not
    events = ["x" * (100 * KIB)] * 3
    flaky = FlakySqs(sqs)

    # When they are sent
    producer_over(flaky).send(events)

    # Then the requests carried two and one
    assert [len(call) for call in flaky.calls] == [2, 1]


def test_only_the_failed_entries_are_sent_again(sqs: SQSClient) -> None:
    # Given a queue whose first SendMessageBatch fails entries 0 and 9 server-side
    flaky = FlakySqs(sqs, fail=lambda call, position: call == 0 and position in {0, 9})

    # When ten events are sent
    result = producer_over(flaky).send(invoices(10))

    # Then the second request carried exactly those two, and each message is in the queue once
    assert flaky.calls[1] == [invoices(10)[0], invoices(10)[9]]
    assert (result.count, result.requests, result.resent) == (10, 2, 2)
    assert sorted(message["Body"] for message in queue_messages(sqs, QUEUE)) == sorted(invoices(10))


def test_a_sender_fault_is_reported_without_being_sent_again(sqs: SQSClient) -> None:
    # Given a queue that rejects entry 2 as the sender's fault (it would fail again on every try)
    flaky = FlakySqs(sqs, fail=lambda call, position: position == 2, sender_fault=True)

    # When five events are sent
    with pytest.raises(UnsentRecordsError) as raised:
        producer_over(flaky).send(invoices(5))

    # Then there was no second request, and the error lists entry 2 with the others' receipts kept
    assert len(flaky.calls) == 1
    assert [str(failure) for failure in raised.value.failures] == ["record 2: InternalError: try again"]
    assert sorted(raised.value.result.receipts) == [0, 1, 3, 4]


def test_an_oversize_message_is_refused_before_anything_is_sent(sqs: SQSClient) -> None:
    # Given a message one byte over 256 KiB after two that fit (é is two bytes in UTF-8)
    at_limit = "x" * SQS_MAX_MESSAGE_BYTES
    over = "é" * (SQS_MAX_MESSAGE_BYTES // 2) + "x"
    flaky = FlakySqs(sqs)

    # When they are sent
    with pytest.raises(RecordsRefusedError) as raised:
        producer_over(flaky).send(["{}", at_limit, over])

    # Then nothing was sent and the error names record 2 and its size in bytes
    assert flaky.calls == []
    assert str(raised.value).endswith("record 2: is 262,145 bytes (message body), above the SQS limit of 262,144 bytes")


def test_fifo_messages_carry_their_group_and_a_content_based_deduplication_id(sqs: SQSClient) -> None:
    # Given a FIFO queue and events grouped by customer
    producer = SqsProducer(FIFO_QUEUE, group_id_field="customer", client=sqs)

    # When three events are sent
    result = producer.send(invoices(3))

    # Then each message is in its customer's group, deduplicated by the SHA-256 of its body
    received = {message["Body"]: message["Attributes"] for message in queue_messages(sqs, FIFO_QUEUE)}
    for body in invoices(3):
        assert received[body]["MessageGroupId"] == json.loads(body)["customer"]
        assert received[body]["MessageDeduplicationId"] == hashlib.sha256(body.encode()).hexdigest()
    assert all(receipt.sequence_number for receipt in result.receipts.values())


def test_a_fifo_resend_keeps_its_deduplication_id(sqs: SQSClient) -> None:
    # Given a FIFO queue given by URL, a fixed group, an explicit id field, and a first request failing entry 1
    url = sqs.get_queue_url(QueueName=FIFO_QUEUE)["QueueUrl"]
    flaky = FlakySqs(sqs, fail=lambda call, position: call == 0 and position == 1)
    producer = producer_over(flaky, url, group_id="invoices", deduplication_id_field="invoice_id")

    # When three events are sent
    result = producer.send(invoices(3))

    # Then the re-sent message kept its id, so a copy that did land after all would be dropped by SQS
    received = {message["Body"]: message["Attributes"] for message in queue_messages(sqs, FIFO_QUEUE)}
    assert received[invoices(3)[1]]["MessageDeduplicationId"] == "i-1"
    assert received[invoices(3)[1]]["MessageGroupId"] == "invoices"
    assert (result.count, result.resent) == (3, 1)


@pytest.mark.parametrize(
    ("queue", "options", "message"),
    [
        (FIFO_QUEUE, {}, "FIFO queue dev-refunds.fifo needs group_id or group_id_field"),
        (FIFO_QUEUE, {"group_id": "a", "group_id_field": "b"}, "at most one of group_id and group_id_field"),
        (QUEUE, {"deduplication_id_field": "id"}, "deduplication ids apply to FIFO queues only"),
        (FIFO_QUEUE, {"group_id": "g" * 129}, "group id has 129 characters; SQS takes 1 to 128"),
    ],
    ids=["fifo without group", "two group sources", "dedup on standard", "group id too long"],
)
def test_inconsistent_fifo_options_are_refused_up_front(queue: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ProducerConfigurationError, match=message):
        SqsProducer(queue, **options)


def test_a_missing_queue_fails_every_message_with_the_service_error(sqs: SQSClient) -> None:
    with pytest.raises(UnsentRecordsError) as raised:
        SqsProducer("no-such-queue", client=sqs).send(invoices(2))

    assert [failure.index for failure in raised.value.failures] == [0, 1]
    assert raised.value.failures[0].message == "The specified queue does not exist."
