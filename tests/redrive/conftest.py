"""The redrive's tests: in-process moto for the parked-records queue and the on-failure store, and the real
dispatcher (delivery, delivered ids, parking into that queue) behind the function port, with a scripted endpoint."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from dispatcher import metric_names
from dispatcher.adapters.s3 import S3PayloadStore
from dispatcher.adapters.sqs import SqsParkedRecords
from dispatcher.delivery import Dispatcher
from dispatcher.records import parse_event
from dispatcher.retry_lane import LanePorts
from local.workers import InvocationResult
from redrive import RedriveTarget
from redrive.parked import StoredPayload
from tests.fakes import (
    LANE_QUEUE,
    FakeClock,
    FakeDeliveredIds,
    FakeEndpoint,
    FakeSecret,
    InMemoryHeldKeys,
    RecordingRetryLane,
)
from tests.producer.conftest import REGION, aws
from tests.unit.conftest import FAST, subscription

__all__ = ["REGION", "ParkedSubscription", "aws", "parked_subscription", "parked_subscription_with_lane"]

SUBSCRIPTION = "orders-to-ledger"  # tests.unit.conftest.subscription()'s name
INVOCATION_SECONDS = 60.0  # the remaining time each fake invocation gets
FUNCTION_TIMEOUT_SECONDS = 60.0


@dataclass
class ParkedSubscription:
    """One subscription's function (the real dispatcher), its parked-records queue and on-failure store."""

    sqs: Any
    s3: Any
    parked_records_url: str
    bucket: str
    payload_bucket: str  # where the function stores payloads too large for their parked message
    endpoint: FakeEndpoint = field(default_factory=lambda: FakeEndpoint(default=204))
    delivered_ids: FakeDeliveredIds = field(default_factory=FakeDeliveredIds)
    invocations: list[dict[str, Any]] = field(default_factory=list)
    function_error: str | None = None  # set: every invocation fails with it, as a raised exception would
    interrupt_at_invocation: int | None = None  # 1-based: that invocation is cancelled (Ctrl-C) mid-flight
    with_retry_lane: bool = False  # the function hands what still fails to a retry lane (in memory)

    def __post_init__(self) -> None:
        payloads = S3PayloadStore(self.payload_bucket, client_factory=lambda: self.s3)
        parked_records = SqsParkedRecords(self.parked_records_url, payloads, client_factory=lambda: self.sqs)
        config = subscription(max_attempts=1)
        self.retry_lane = RecordingRetryLane(FakeClock(time.time()))
        self.held_keys = InMemoryHeldKeys()
        lane = LanePorts(LANE_QUEUE, self.retry_lane, self.held_keys) if self.with_retry_lane else None
        self.dispatcher = Dispatcher(
            config, self.endpoint, self.delivered_ids, parked_records, FakeSecret(), FAST, lane=lane
        )

    async def invoke(self, event: dict[str, Any]) -> InvocationResult:
        """The function port: what the deployed function would answer, with its EMF counts as metrics."""
        self.invocations.append(event)
        if self.interrupt_at_invocation == len(self.invocations):
            raise KeyboardInterrupt
        if self.function_error is not None:
            return InvocationResult("request", error=self.function_error, error_type="RuntimeError")
        report = await self.dispatcher.dispatch(parse_event(event), INVOCATION_SECONDS, event["Records"])
        stats = report.stats
        metrics = {
            metric_names.DELIVERED: float(stats.delivered),
            metric_names.PARKED: float(stats.parked),
            metric_names.DUPLICATES_SKIPPED: float(stats.duplicates_skipped),
            metric_names.HANDED_TO_RETRY_LANE: float(stats.handed_to_lane),
        }
        return InvocationResult("request", response=report.response(), metrics=metrics)

    async def park(self, *records: dict[str, Any]) -> None:
        """Deliver `records` (one batch) while the endpoint refuses them: the function parks each one."""
        default, self.endpoint.default = self.endpoint.default, 422
        await self.dispatcher.dispatch(parse_event({"Records": list(records)}), INVOCATION_SECONDS, list(records))
        self.endpoint.default = default
        self.endpoint.requests.clear()

    def target(self, *, with_bucket: bool = True) -> RedriveTarget:
        return RedriveTarget(
            subscription=SUBSCRIPTION,
            function_name=f"dev-{SUBSCRIPTION}",
            invoke=self.invoke,
            function_timeout_seconds=FUNCTION_TIMEOUT_SECONDS,
            sqs=self.sqs,
            parked_records_url=self.parked_records_url,
            s3=self.s3,
            on_failure_bucket=self.bucket if with_bucket else None,
            payload_bucket=self.payload_bucket,
        )

    def read_stored(self, stored: StoredPayload) -> bytes:
        """The redrive's payload reader, without its checks of where the payload may be."""
        payload: bytes = self.s3.get_object(Bucket=stored.bucket, Key=stored.key)["Body"].read()
        return payload

    def stored_payloads(self) -> dict[str, bytes]:
        """Every payload the function stored aside (too large for its message), by key."""
        contents = self.s3.list_objects_v2(Bucket=self.payload_bucket).get("Contents", [])
        return {
            item["Key"]: self.s3.get_object(Bucket=self.payload_bucket, Key=item["Key"])["Body"].read()
            for item in contents
        }

    def parked_bodies(self) -> list[str]:
        """Every message in the parked-records queue, read and made visible again."""
        bodies: list[str] = []
        handles: list[str] = []
        while messages := self.sqs.receive_message(
            QueueUrl=self.parked_records_url, MaxNumberOfMessages=10, VisibilityTimeout=30
        ).get("Messages", []):
            bodies.extend(message["Body"] for message in messages)
            handles.extend(message["ReceiptHandle"] for message in messages)
        for handle in handles:
            self.sqs.change_message_visibility(
                QueueUrl=self.parked_records_url, ReceiptHandle=handle, VisibilityTimeout=0
            )
        return bodies


@pytest.fixture
def parked_subscription(aws: None) -> ParkedSubscription:
    return _parked_subscription(with_retry_lane=False)


@pytest.fixture
def parked_subscription_with_lane(aws: None) -> ParkedSubscription:
    """The same, its function handing what still fails transiently to a retry lane (in memory)."""
    return _parked_subscription(with_retry_lane=True)


def _parked_subscription(*, with_retry_lane: bool) -> ParkedSubscription:
    sqs = boto3.client("sqs", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    suffix = uuid.uuid4().hex[:8]
    url = sqs.create_queue(QueueName=f"dev-{SUBSCRIPTION}-parked-{suffix}")["QueueUrl"]
    bucket = f"failed-batches-{suffix}"
    payload_bucket = f"parked-payloads-{suffix}"
    for name in (bucket, payload_bucket):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return ParkedSubscription(sqs, s3, url, bucket, payload_bucket, with_retry_lane=with_retry_lane)
