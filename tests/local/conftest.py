"""Fixtures for the local runtime's tests: moto as a real server on 127.0.0.1, the resources a test needs in it,
a scripted fake function the pollers invoke, and helpers to run a poller for the length of a test."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from moto.sqs.models import sqs_backends

from cli.local import status_table
from local.esm import KinesisPoller, SqsPoller
from local.moto_kinesis import enforce_kinesis_resharding
from local.moto_sqs import enforce_sqs_semantics
from local.receiver import DemoReceiver
from local.runtime import LocalSystem, RunningConsumer
from local.spec import LOCAL_ACCOUNT_ID, ConsumerSpec, FunctionSpec, KinesisMappingSpec, SqsMappingSpec
from local.workers import InvocationResult
from tests.fake_aws import use_fake_aws

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_sqs import SQSClient

LOOPBACK = "127.0.0.1"
REGION = "eu-west-1"
FAST_POLL_SECONDS = 0.2  # shard polling in tests: records show up quickly, with no effect on the rules tested
EVENTUALLY_TIMEOUT_SECONDS = 20.0  # a guard against hangs, far above what any condition takes


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    enforce_sqs_semantics()  # as the embedded AWS does
    enforce_kinesis_resharding()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Queue:
    name: str
    url: str
    arn: str
    dlq_url: str | None = None


@dataclass
class LocalAws:
    """Clients of the moto server, and the resources of one test (unique names, so tests never share)."""

    endpoint_url: str
    kinesis: KinesisClient
    sqs: SQSClient
    s3: Any  # no S3 stubs are installed

    def create_stream(self, shards: int = 1) -> tuple[str, str]:
        """A new stream: (name, ARN)."""
        name = f"stream-{uuid.uuid4().hex[:10]}"
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        return name, self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]

    def put_records(self, stream: str, records: list[tuple[str, bytes]]) -> list[str]:
        """Put (partition key, data) records one by one, so their order is the shard's; their sequence numbers."""
        return [
            self.kinesis.put_record(StreamName=stream, PartitionKey=key, Data=data)["SequenceNumber"]
            for key, data in records
        ]

    def create_queue(
        self, *, fifo: bool = False, visibility_timeout: int = 1, max_receive_count: int | None = None
    ) -> Queue:
        suffix = uuid.uuid4().hex[:10]
        name = f"queue-{suffix}" + (".fifo" if fifo else "")
        attributes: dict[Any, str] = {"VisibilityTimeout": str(visibility_timeout)}
        if fifo:
            attributes |= {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        dlq_url = None
        if max_receive_count is not None:
            dlq_name = f"dlq-{suffix}" + (".fifo" if fifo else "")
            dlq_attributes: dict[Any, str] = {"FifoQueue": "true"} if fifo else {}
            dlq_url = self.sqs.create_queue(QueueName=dlq_name, Attributes=dlq_attributes)["QueueUrl"]
            dlq_arn = self.queue_arn(dlq_url)
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            )
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return Queue(name, url, self.queue_arn(url), dlq_url)

    def queue_arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def messages_left(self, url: str) -> int:
        """Messages still in the queue, visible or in flight."""
        names: Any = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    def drain(self, url: str) -> list[str]:
        """Receive and delete every visible message; their bodies."""
        bodies: list[str] = []
        while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                bodies.append(message["Body"])
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    def message_in_backend(self, queue: Queue, body: str) -> Any:
        """moto's own record of the queue's message with this body (its backend runs in this process)."""
        backend = sqs_backends[LOCAL_ACCOUNT_ID][REGION].get_queue(queue.name)
        (message,) = [message for message in backend._messages if message.body == body]
        return message

    def create_bucket(self) -> str:
        name = f"on-failure-{uuid.uuid4().hex[:10]}"
        self.s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        return name

    def objects(self, bucket: str) -> list[dict[str, Any]]:
        """Every JSON document in the bucket."""
        keys = [item["Key"] for item in self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return [json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()) for key in keys]


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> LocalAws:
    """Fake credentials and the moto endpoint in the environment (pollers and workers read them there)."""
    use_fake_aws(monkeypatch, tmp_path, REGION, moto_endpoint)
    session = boto3.session.Session(region_name=REGION)
    return LocalAws(
        moto_endpoint,
        session.client("kinesis", endpoint_url=moto_endpoint),
        session.client("sqs", endpoint_url=moto_endpoint),
        session.client("s3", endpoint_url=moto_endpoint),
    )


# -- the scripted function ------------------------------------------------------------------------------------

Script = Callable[[list[dict[str, Any]], int], object]  # (records, invocation number from 1) -> response


class FunctionError(Exception):
    """What a scripted response raises to make the invocation a function error."""


@dataclass
class ScriptedFunction:
    """Stands in for a FunctionRunner: records every event, answers with `script`, optionally slowly.

    The script may return a response, raise (a function error), or return TIMED_OUT.
    """

    script: Script = lambda records, invocation: None  # full success
    delay_seconds: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    in_flight: list[list[dict[str, Any]]] = field(default_factory=list)
    peak_concurrency: int = 0
    overlapping_groups: list[str] = field(default_factory=list)  # FIFO groups seen in two batches at once

    async def invoke(self, event: dict[str, Any]) -> InvocationResult:
        records: list[dict[str, Any]] = event["Records"]
        self.events.append(event)
        busy_groups = {group_of(record) for batch in self.in_flight for record in batch}
        self.overlapping_groups += [group_of(record) for record in records if group_of(record) in busy_groups]
        self.in_flight.append(records)
        self.peak_concurrency = max(self.peak_concurrency, len(self.in_flight))
        try:
            await asyncio.sleep(self.delay_seconds)
            response = self.script(records, len(self.events))
        except FunctionError as error:
            return InvocationResult(str(uuid.uuid4()), error=f"FunctionError: {error}", error_type="FunctionError")
        finally:
            self.in_flight.remove(records)
        if response is TIMED_OUT:
            return InvocationResult(str(uuid.uuid4()), error="Task timed out", error_type="Timeout", timed_out=True)
        return InvocationResult(str(uuid.uuid4()), response=response)

    @property
    def batches(self) -> list[list[str]]:
        """The item identifiers of every invocation, in order (sequence numbers or message bodies)."""
        return [[identity_of(record) for record in event["Records"]] for event in self.events]


TIMED_OUT = object()


def identity_of(record: dict[str, Any]) -> str:
    return str(record["kinesis"]["sequenceNumber"]) if "kinesis" in record else str(record["body"])


def group_of(record: dict[str, Any]) -> str:
    return str(record.get("attributes", {}).get("MessageGroupId", ""))


def item_failures(*identifiers: str) -> dict[str, list[dict[str, str]]]:
    return {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in identifiers]}


def raising(message: str = "boom") -> Script:
    def script(records: list[dict[str, Any]], invocation: int) -> object:
        raise FunctionError(message)

    return script


# -- consumers and pollers ------------------------------------------------------------------------------------


def function_spec(name: str = "consumer-fn", *, reserved_concurrency: int = 5, **fields: Any) -> FunctionSpec:
    return FunctionSpec(
        name=name,
        subscription="orders",
        environment=fields.pop("environment", {}),
        timeout_seconds=fields.pop("timeout_seconds", 3.0),
        reserved_concurrency=reserved_concurrency,
        **fields,
    )


def kinesis_poller(
    aws: LocalAws,
    stream: tuple[str, str],
    function: Any,
    *,
    reserved_concurrency: int = 5,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    checkpoint_table: str | None = None,
    **mapping: Any,
) -> KinesisPoller:
    """A poller of `stream` polling fast (shards re-listed as often as they are read), with its own clock and
    sleep when a test runs it in virtual time."""
    name, arn = stream
    consumer = ConsumerSpec(
        function_spec(reserved_concurrency=reserved_concurrency), KinesisMappingSpec(name, arn, **mapping)
    )
    return KinesisPoller(
        consumer,
        function,
        endpoint_url=aws.endpoint_url,
        region=REGION,
        poll_interval_seconds=FAST_POLL_SECONDS,
        shard_discovery_interval_seconds=FAST_POLL_SECONDS,
        clock=clock,
        sleep=sleep,
        checkpoint_table=checkpoint_table,
    )


def sqs_poller(
    aws: LocalAws,
    queue: Queue,
    function: Any,
    *,
    reserved_concurrency: int = 5,
    clock: Callable[[], float] = time.time,
    **mapping: Any,
) -> SqsPoller:
    consumer = ConsumerSpec(
        function_spec(reserved_concurrency=reserved_concurrency),
        SqsMappingSpec(queue.name, queue.url, queue.arn, **mapping),
    )
    return SqsPoller(consumer, function, endpoint_url=aws.endpoint_url, region=REGION, clock=clock)


@asynccontextmanager
async def running(poller: KinesisPoller | SqsPoller) -> AsyncIterator[asyncio.Task[None]]:
    """Run the poller for the body of the `async with`, started (iterators taken) before the body runs."""
    task = asyncio.create_task(poller.run())
    started = asyncio.create_task(poller.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # the poller failed to start: raise its error
    try:
        yield task
    finally:
        started.cancel()
        task.cancel()
        with_suppressed_cancel = asyncio.gather(task, return_exceptions=True)
        await asyncio.wait_for(with_suppressed_cancel, EVENTUALLY_TIMEOUT_SECONDS)


async def eventually(condition: Callable[[], bool], what: str = "the condition") -> None:
    """Wait until `condition()` holds (a hang guard, not a speed requirement)."""
    deadline = time.monotonic() + EVENTUALLY_TIMEOUT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def status_cell(system: LocalSystem, consumer: RunningConsumer, header: str) -> str:
    """A cell of the consumer's row in `dispatcher local`'s status table, as its next refresh draws it."""
    table = status_table(system, await asyncio.to_thread(system.readings))
    (column,) = [column for column in table.columns if column.header == header]
    return str(list(column.cells)[system.consumers.index(consumer)])


@pytest.fixture
def receiver() -> Iterator[DemoReceiver]:
    """The demo's receiver, without faults, on 127.0.0.1 (a test module may define its own, with faults)."""
    server = DemoReceiver()
    server.start()
    yield server
    server.stop()
