"""Figure (d): DynamoDB (and, with a retry lane, SQS) requests and items written per 100-record Kinesis batch,
against moto.

The dispatcher runs with the real `DynamoDbDeliveredIds` adapter; the baseline is Powertools'
per-record idempotency (`idempotent_function` inside a `BatchProcessor`), as its docs recommend.
The retry-lane figures run the dispatcher ordered by partition key with its real lane adapters
(`SqsRetryLane`, `DynamoDbHeldKeys`): lanes must stay priced by failures.
Both get a boto3 client instrumented with a botocore `before-call` hook that counts every API call.
HTTP is the in-memory endpoint of tests/fakes.py: only the DynamoDB traffic is measured here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from unittest import mock

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from moto import mock_aws

from bench import workload
from bench.report import Figure, emit, progress, section
from dispatcher.adapters.dynamodb import DynamoDbDeliveredIds
from dispatcher.adapters.held_keys import DynamoDbHeldKeys
from dispatcher.adapters.retry_lane import SqsRetryLane
from dispatcher.delivery import Dispatcher
from dispatcher.outcomes import BatchReport
from dispatcher.records import Batch, parse_event
from dispatcher.retry_lane import LanePorts
from tests.events import event, kinesis_record
from tests.fakes import Answer, FakeEndpoint, FakeParkedRecords, FakeSecret

if TYPE_CHECKING:
    from botocore.model import OperationModel
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "eu-west-1"
DISPATCHER_TABLE = "bench-delivered-ids"
POWERTOOLS_TABLE = "bench-powertools-idempotency"
RECORDS = 100
FAILING = 10
MAX_REQUESTS_DELIVERED = 2
MAX_ITEMS_DELIVERED = 1
MAX_REQUESTS_FAILING = 5
LANE_QUEUE = "bench-retry-lane.fifo"
# With a lane, a fully delivered batch with no held keys adds the held-keys read and nothing else
MAX_REQUESTS_DELIVERED_WITH_LANE = 2
MAX_SQS_REQUESTS_DELIVERED_WITH_LANE = 0
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
SQS_OPERATIONS = frozenset({"SendMessage", "SendMessageBatch", "ChangeMessageVisibilityBatch", "CreateQueue"})


@dataclass
class CallCounter:
    """Counts DynamoDB API calls (botocore `before-call`, once per call) and the items they write."""

    operations: Counter[str] = field(default_factory=Counter)
    items_written: int = 0

    def __call__(self, model: OperationModel, params: dict[str, Any], **_: Any) -> None:
        self.operations[model.name] += 1
        if model.name in WRITE_OPERATIONS:
            self.items_written += 1
        elif model.name == "BatchWriteItem":
            body = json.loads(params["body"])
            self.items_written += sum(len(requests) for requests in body["RequestItems"].values())

    @property
    def requests(self) -> int:
        return sum(self.operations.values())

    def reset(self) -> None:
        self.operations.clear()
        self.items_written = 0

    def describe(self) -> str:
        calls = ", ".join(f"{count} {name}" for name, count in sorted(self.operations.items())) or "no calls"
        return f"{calls}; {self.items_written} item write(s)"


class _Context:
    """The little of a LambdaContext that Powertools idempotency reads."""

    function_name = "bench-powertools"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return int(workload.REMAINING_SECONDS * 1000)


@contextmanager
def _mocked_aws() -> Iterator[None]:
    fake_credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    dispatcher_logger = logging.getLogger("dispatcher")
    level = dispatcher_logger.level
    dispatcher_logger.setLevel(logging.ERROR)  # the failing records' warnings are expected here
    with mock.patch.dict(os.environ, fake_credentials):
        os.environ.pop("AWS_ENDPOINT_URL", None)  # in-process moto, never a real or other endpoint
        os.environ.pop("AWS_PROFILE", None)
        try:
            with mock_aws():
                yield
        finally:
            dispatcher_logger.setLevel(level)


def _instrumented_client() -> tuple[DynamoDBClient, CallCounter]:
    client = boto3.client("dynamodb", region_name=REGION)
    counter = CallCounter()
    client.meta.events.register("before-call.dynamodb.*", counter)
    return client, counter


def _create_table(client: DynamoDBClient, name: str, key: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _batch_event(first: int, count: int = RECORDS) -> dict[str, Any]:
    return event(
        *(kinesis_record(i, workload.payload(i), partition_key=f"pk-{i}") for i in range(first, first + count))
    )


def _failing_ids(batch: Batch) -> set[str]:
    # Spread out (every tenth record), so the circuit breaker (5 consecutive failures) never opens.
    return {record.webhook_id for position, record in enumerate(batch.records) if position % 10 == 5}


def run() -> list[Figure]:
    section(f"(d) DynamoDB traffic per {RECORDS}-record Kinesis batch (moto, counted with a botocore before-call hook)")
    progress("starting moto")
    with _mocked_aws():
        setup, _ = _instrumented_client()
        _create_table(setup, DISPATCHER_TABLE, "pk")
        _create_table(setup, POWERTOOLS_TABLE, "id")
        return _dispatcher_figures() + _lane_figures() + _powertools_figures()


def _dispatch(
    event_: dict[str, Any],
    failing: set[str],
    counter: CallCounter,
    client: DynamoDBClient,
    lane: LanePorts | None = None,
) -> BatchReport:
    batch = parse_event(event_)
    answers: dict[str, list[Answer]] = {webhook_id: [503] for webhook_id in failing}
    subscription = workload.subscription("http://127.0.0.1:9/unused", max_attempts=1)
    if lane is not None:
        subscription = subscription.model_copy(update={"ordering": "partition-key"})
    dispatcher = Dispatcher(
        subscription,
        sender=FakeEndpoint(answers=answers),
        delivered_ids=DynamoDbDeliveredIds(DISPATCHER_TABLE, client_factory=lambda: client),
        parked_records=FakeParkedRecords(),
        secret=FakeSecret(),
        lane=lane,
    )
    counter.reset()
    report = asyncio.run(dispatcher.dispatch(batch, workload.REMAINING_SECONDS, event_["Records"]))
    not_delivered = report.stats.handed_to_lane if lane is not None else report.stats.failed
    if not_delivered != len(failing):
        raise RuntimeError(f"expected {len(failing)} records not delivered, got {report.stats}")
    return report


def _dispatcher_figures() -> list[Figure]:
    progress("dispatcher batches")
    client, counter = _instrumented_client()

    _dispatch(_batch_event(0), set(), counter, client)
    figures = [
        emit(
            Figure(
                f"(d) dispatcher, all {RECORDS} delivered: requests",
                str(counter.requests),
                f"<= {MAX_REQUESTS_DELIVERED}",
                counter.requests <= MAX_REQUESTS_DELIVERED,
                counter.describe(),
            )
        ),
        emit(
            Figure(
                f"(d) dispatcher, all {RECORDS} delivered: items written",
                str(counter.items_written),
                f"<= {MAX_ITEMS_DELIVERED}",
                counter.items_written <= MAX_ITEMS_DELIVERED,
            )
        ),
    ]

    failing_event = _batch_event(RECORDS)
    failing = _failing_ids(parse_event(failing_event))
    report = _dispatch(failing_event, failing, counter, client)
    figures.append(
        emit(
            Figure(
                f"(d) dispatcher, {FAILING} of {RECORDS} failing: requests",
                str(counter.requests),
                f"<= {MAX_REQUESTS_FAILING}",
                counter.requests <= MAX_REQUESTS_FAILING,
                counter.describe(),
            )
        )
    )

    # What Lambda does next: re-send from the lowest reported sequence number on; now all succeed.
    checkpoint = min(int(item["itemIdentifier"]) for item in report.response()["batchItemFailures"])
    resent = {
        "Records": [raw for raw in failing_event["Records"] if int(raw["kinesis"]["sequenceNumber"]) >= checkpoint]
    }
    resent_report = _dispatch(resent, set(), counter, client)
    figures.append(
        emit(
            Figure(
                "(d) dispatcher, the re-sent batch after that: requests",
                str(counter.requests),
                detail=f"{counter.describe()}; {len(resent['Records'])} records re-sent, "
                f"{resent_report.stats.duplicates_skipped} skipped as already delivered",
            )
        )
    )
    return figures


def _lane_figures() -> list[Figure]:
    progress("dispatcher batches with a retry lane")
    client, counter = _instrumented_client()
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.meta.events.register("before-call.sqs.*", counter)
    queue_url = sqs.create_queue(QueueName=LANE_QUEUE, Attributes={"FifoQueue": "true"})["QueueUrl"]
    lane = LanePorts(
        queue_name=LANE_QUEUE,
        lane=SqsRetryLane(queue_url, client_factory=lambda: sqs),
        held_keys=DynamoDbHeldKeys(DISPATCHER_TABLE, "bench", client_factory=lambda: client),
    )

    _dispatch(_batch_event(2 * RECORDS), set(), counter, client, lane)
    sqs_requests = sum(count for name, count in counter.operations.items() if name in SQS_OPERATIONS)
    figures = [
        emit(
            Figure(
                f"(d) lane, {RECORDS} delivered, none held: DynamoDB",
                str(counter.requests - sqs_requests),
                f"<= {MAX_REQUESTS_DELIVERED_WITH_LANE}",
                counter.requests - sqs_requests <= MAX_REQUESTS_DELIVERED_WITH_LANE,
                counter.describe(),
            )
        ),
        emit(
            Figure(
                f"(d) lane, {RECORDS} delivered, none held: SQS",
                str(sqs_requests),
                f"<= {MAX_SQS_REQUESTS_DELIVERED_WITH_LANE}",
                sqs_requests <= MAX_SQS_REQUESTS_DELIVERED_WITH_LANE,
            )
        ),
    ]
    failing_event = _batch_event(3 * RECORDS)
    report = _dispatch(failing_event, _failing_ids(parse_event(failing_event)), counter, client, lane)
    figures.append(
        emit(
            Figure(
                f"(d) lane, {FAILING} of {RECORDS} failing: requests",
                str(counter.requests),
                detail=f"{counter.describe()}; {report.stats.handed_to_lane} handed to the lane, "
                f"{len(report.response()['batchItemFailures'])} reported to the source",
            )
        )
    )
    return figures


def _powertools_figures() -> list[Figure]:
    progress("Powertools idempotency batches")
    client, counter = _instrumented_client()
    persistence = DynamoDBPersistenceLayer(table_name=POWERTOOLS_TABLE, boto3_client=client)
    config = IdempotencyConfig(event_key_jmespath="kinesis.sequenceNumber")
    context = cast(LambdaContext, _Context())
    failing: set[str] = set()

    def deliver(record: KinesisStreamRecord) -> dict[str, str]:
        document = record.kinesis.data_as_json()
        if document["id"] in failing:
            raise RuntimeError("HTTP 503")
        return {"delivered": document["id"]}

    # As `@idempotent_function(...)` on `deliver`; applied by call because the decorator is untyped.
    make_idempotent = idempotent_function(data_keyword_argument="record", persistence_store=persistence, config=config)
    idempotent_deliver = make_idempotent(deliver)

    def record_handler(record: KinesisStreamRecord) -> dict[str, str]:
        return cast(dict[str, str], idempotent_deliver(record=record))

    def handle(event_: dict[str, Any]) -> None:
        config.register_lambda_context(context)
        counter.reset()
        processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
        process_partial_response(event=event_, record_handler=record_handler, processor=processor, context=context)

    handle(_batch_event(10 * RECORDS))
    figures = [
        emit(
            Figure(
                f"(d) baseline: Powertools idempotency, all {RECORDS} delivered",
                f"{counter.requests} req",
                detail=f"(issue: ~200) {counter.describe()}",
            )
        )
    ]
    failing_event = _batch_event(11 * RECORDS)
    failing |= _failing_ids(parse_event(failing_event))
    handle(failing_event)
    figures.append(
        emit(
            Figure(
                f"(d) baseline: Powertools idempotency, {FAILING} failing",
                f"{counter.requests} req",
                detail=counter.describe(),
            )
        )
    )
    return figures
