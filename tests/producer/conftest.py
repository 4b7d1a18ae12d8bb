"""In-process moto for the producer, and clients that make chosen records fail the way AWS reports it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from tests.fake_aws import use_fake_aws

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_sqs import SQSClient

REGION = "eu-west-1"
STREAM = "dev-orders"
QUEUE = "dev-billing-callbacks"
FIFO_QUEUE = "dev-refunds.fifo"

# (call number from 0, position in that call's request) -> should this entry fail?
FailureRule = Callable[[int, int], bool]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """Fake credentials and in-process moto: nothing can reach a real AWS endpoint."""
    use_fake_aws(monkeypatch, tmp_path, REGION, endpoint_url=None)
    with mock_aws():
        yield


@pytest.fixture
def kinesis(aws: None) -> KinesisClient:
    client: KinesisClient = boto3.client("kinesis", region_name=REGION)
    client.create_stream(StreamName=STREAM, ShardCount=2)
    return client


@pytest.fixture
def sqs(aws: None) -> SQSClient:
    client: SQSClient = boto3.client("sqs", region_name=REGION)
    client.create_queue(QueueName=QUEUE)
    client.create_queue(QueueName=FIFO_QUEUE, Attributes={"FifoQueue": "true"})
    return client


def never(call: int, position: int) -> bool:
    return False


@dataclass
class FlakyKinesis:
    """Forwards PutRecords to moto, except the records `fail` picks: those are not written and come back
    with ErrorCode ProvisionedThroughputExceededException, as a hot shard reports them."""

    client: KinesisClient
    fail: FailureRule = never
    calls: list[list[bytes]] = field(default_factory=list)  # the records' data, per call

    def put_records(self, **request: Any) -> dict[str, Any]:
        call = len(self.calls)
        records = request["Records"]
        self.calls.append([record["Data"] for record in records])
        failing = {position for position in range(len(records)) if self.fail(call, position)}
        forwarded = [record for position, record in enumerate(records) if position not in failing]
        accepted = iter(self.client.put_records(**{**request, "Records": forwarded})["Records"] if forwarded else [])
        throttled = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}
        results = [throttled if position in failing else next(accepted) for position in range(len(records))]
        return {"FailedRecordCount": len(failing), "Records": results}


@dataclass
class FlakySqs:
    """Forwards SendMessageBatch to moto, except the entries `fail` picks: those are not sent and come back
    in `Failed`, as a server-side fault (retryable) or, with `sender_fault`, as the sender's mistake."""

    client: SQSClient
    fail: FailureRule = never
    sender_fault: bool = False
    calls: list[list[str]] = field(default_factory=list)  # the message bodies, per call

    def send_message_batch(self, **request: Any) -> dict[str, Any]:
        call = len(self.calls)
        entries = request["Entries"]
        self.calls.append([entry["MessageBody"] for entry in entries])
        failing = [entry for position, entry in enumerate(entries) if self.fail(call, position)]
        forwarded = [entry for entry in entries if entry not in failing]
        response: dict[str, Any] = {"Successful": [], "Failed": []}
        if forwarded:
            response = dict(self.client.send_message_batch(**{**request, "Entries": forwarded}))
        response["Failed"] = [
            {"Id": entry["Id"], "SenderFault": self.sender_fault, "Code": "InternalError", "Message": "try again"}
            for entry in failing
        ]
        return response

    def get_queue_url(self, **request: Any) -> Any:
        return self.client.get_queue_url(**request)


def stream_records(client: KinesisClient, stream: str = STREAM) -> list[tuple[str, bytes]]:
    """(partition key, data) of every record in the stream, shard by shard."""
    records: list[tuple[str, bytes]] = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend((record["PartitionKey"], record["Data"]) for record in response["Records"])
            if not response["Records"]:
                break
            iterator = response["NextShardIterator"]
    return records


def queue_messages(client: SQSClient, queue: str) -> list[dict[str, Any]]:
    """Every message in the queue, received (with its system attributes) and deleted."""
    url = client.get_queue_url(QueueName=queue)["QueueUrl"]
    messages: list[dict[str, Any]] = []
    while batch := client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
    ).get("Messages", []):
        messages.extend(dict(message) for message in batch)
        client.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        )
    return messages
