"""The retry lane through the Lambda entry point's `process_batch`, wired by `build_dispatcher` to moto (the lane
as an SQS FIFO queue, the held keys in the delivered-ids table) and a real endpoint on 127.0.0.1: one key fails,
the other keys are POSTed once, and the lane delivers the failing key's records later, in order."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from dispatcher import retry_lane
from dispatcher.delivery import Dispatcher
from tests.events import event, kinesis_record
from tests.fakes import SECRET
from tests.integration.conftest import AwsResources, FakeLambdaContext, HandlerLoader
from tests.integration.support import LoopbackEndpoint

pytestmark = pytest.mark.integration

SCHEDULE = [60]  # one round, a minute after the hand-over: the test moves the function's clock, never sleeps


@dataclass
class LaneFunction:
    """The function with a retry lane: its handler module, its dispatcher, the clock it reads and its lane."""

    module: ModuleType
    dispatcher: Dispatcher
    loop: asyncio.AbstractEventLoop
    lane_url: str
    lane_arn: str
    clock_offset_seconds: float = 0.0

    def invoke(self, lambda_event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.module.process_batch(
            lambda_event, FakeLambdaContext(), self.dispatcher, self.loop
        )
        return response


@pytest.fixture
def lane_function(
    aws: AwsResources, load_handler: HandlerLoader, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LaneFunction]:
    name = f"it-orders-retry-lane-{uuid.uuid4().hex[:8]}.fifo"
    lane_url = aws.sqs.create_queue(
        QueueName=name, Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    )["QueueUrl"]
    lane_arn = aws.sqs.get_queue_attributes(QueueUrl=lane_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    monkeypatch.setenv("DISPATCHER_RETRY_LANE_URL", lane_url)
    module = load_handler(retry_schedule_seconds=SCHEDULE)
    assert module.settings.retry_lane_url == lane_url
    loop = asyncio.new_event_loop()
    function = LaneFunction(module, module.build_dispatcher(module.settings), loop, lane_url, lane_arn)
    function.dispatcher.wall_clock = lambda: time.time() + function.clock_offset_seconds
    yield function
    loop.run_until_complete(function.dispatcher.sender.close())
    loop.close()


def lane_event(aws: AwsResources, function: LaneFunction) -> dict[str, Any]:
    """What the lane's event source mapping would invoke the function with: the lane's messages, received."""
    messages = aws.sqs.receive_message(
        QueueUrl=function.lane_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages", [])
    records: list[dict[str, Any]] = [
        {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {str(name): value for name, value in message.get("Attributes", {}).items()},
            "messageAttributes": {},
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": function.lane_arn,
            "awsRegion": "eu-west-1",
        }
        for message in messages
    ]
    return {"Records": records}


def payload(position: int) -> dict[str, Any]:
    return {"id": f"evt-{position}", "n": position}


KEYS = ["alpha", "stuck", "beta", "gamma", "stuck", "alpha"]


def test_one_failing_key_waits_in_the_lane_while_the_others_are_posted_once(
    aws: AwsResources, endpoint: LoopbackEndpoint, lane_function: LaneFunction
) -> None:
    # Given an endpoint that cannot take key "stuck" for now (its records evt-1 and evt-4)
    endpoint.always("evt-1", 503)
    endpoint.always("evt-4", 503)
    batch = event(*(kinesis_record(position, payload(position), key) for position, key in enumerate(KEYS)))

    # When Lambda invokes the function with the shard's batch
    response = lane_function.invoke(batch)

    # Then nothing is reported: the shard moves on
    assert response == {"batchItemFailures": []}
    # and every record of the healthy keys was POSTed exactly once, the stuck key's first one until its attempts
    # ran out, and its later one not at all
    assert endpoint.hits() == {"evt-0": 1, "evt-1": 3, "evt-2": 1, "evt-3": 1, "evt-5": 1}
    # and the key is held by both its records' entries in the delivered-ids table
    (held,) = [item for item in aws.table_items() if item["pk"]["S"] == "it-orders#held"]
    assert len(held[retry_lane.key_attribute("stuck")]["SS"]) == 2

    # When the endpoint has recovered and the lane's round is due
    endpoint.heal()
    lane_function.clock_offset_seconds = SCHEDULE[0]
    lane_batch = lane_event(aws, lane_function)
    assert len(lane_batch["Records"]) == 2
    response = lane_function.invoke(lane_batch)

    # Then the stuck key's records are delivered in order, signed, with their webhook-ids unchanged
    assert response == {"batchItemFailures": []}
    first, second = endpoint.received[-2:]
    assert (first.webhook_id, second.webhook_id) == ("evt-1", "evt-4")
    for request in (first, second):
        assert Webhook(SECRET).verify(request.body, request.headers)["id"] == request.webhook_id
        assert request.headers["dispatch-retry-round"] == "1"
        assert request.headers["dispatch-partition-key"] == "stuck"
    assert (first.headers["dispatch-attempt"], second.headers["dispatch-attempt"]) == ("4", "2")
    # and the key is no longer held
    (held,) = [item for item in aws.table_items() if item["pk"]["S"] == "it-orders#held"]
    assert [name for name in held if name.startswith("k")] == []
    assert json.loads(lane_batch["Records"][0]["body"])["attempts"] == 3


def test_a_fully_delivered_batch_costs_two_reads_and_no_queue_request(
    aws: AwsResources, endpoint: LoopbackEndpoint, lane_function: LaneFunction
) -> None:
    batch = event(*(kinesis_record(position, payload(position), key) for position, key in enumerate(KEYS)))
    aws.requests.clear()
    response = lane_function.invoke(batch)
    assert response == {"batchItemFailures": []}
    # The delivered-ids read and the held-keys read; nothing is sent to the lane
    assert aws.requests.of("dynamodb") == ["GetItem", "GetItem"]
    assert aws.requests.of("sqs") == []
