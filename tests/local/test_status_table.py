"""The status table of `dispatcher local` shows what is parked now, read from the parked-records queue on each
refresh, not how many records were parked since it started."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from moto.moto_api._internal.models import moto_api_backend

from local.demo import STREAM, write_demo_registry
from local.receiver import POISON_FIELD, DemoReceiver
from local.runtime import LocalSystem
from producer import KinesisProducer
from tests.local.conftest import status_cell

pytestmark = pytest.mark.integration

SUBSCRIPTION = "demo-events-ordered"  # the demo's stream subscription
PARKED_RECORDS = 3
HOLD_SECONDS = 600  # a hold that outlasts the test: the record stays out of sight until deleted
PARKED_TIMEOUT_SECONDS = 60.0  # a guard against hangs, far above what parking a few records takes
POLL_SECONDS = 0.2


async def test_the_parked_column_counts_what_is_parked_now(receiver: DemoReceiver, tmp_path: Path) -> None:
    # Given `dispatcher local`'s system on a fresh embedded AWS (moto's state is shared by the servers of a
    # process), whose receiver refused PARKED_RECORDS poison events for good, so the function parked them
    moto_api_backend.reset()
    system = LocalSystem(write_demo_registry(tmp_path, receiver), tmp_path / "work", port=0)
    await system.start()
    try:
        (consumer,) = [consumer for consumer in system.consumers if consumer.subscription == SUBSCRIPTION]
        receiver.register(SUBSCRIPTION, system.secret_of(consumer), ordered=consumer.ordered)
        producer = KinesisProducer(f"dev-{STREAM}", partition_key="customer-1", client=system.aws.client("kinesis"))
        events = [{"id": f"evt-parked-{n}", POISON_FIELD: True} for n in range(PARKED_RECORDS)]
        await asyncio.to_thread(producer.send, events)
        async with asyncio.timeout(PARKED_TIMEOUT_SECONDS):
            while True:  # parked, and counted by the run (the pollers read the function's metrics)
                if min(system.queue_depth(consumer.parked_records_url), consumer.stats.parked) >= PARKED_RECORDS:
                    break
                await asyncio.sleep(POLL_SECONDS)

        # Then the column counts them
        assert await status_cell(system, consumer, "parked") == str(PARKED_RECORDS)

        # When a redrive receives one of them (and holds it out of sight while it works on it)
        sqs = system.aws.client("sqs")
        (held,) = sqs.receive_message(
            QueueUrl=consumer.parked_records_url, MaxNumberOfMessages=1, VisibilityTimeout=HOLD_SECONDS
        )["Messages"]

        # Then the column says it is held, besides the ones still visible
        assert await status_cell(system, consumer, "parked") == f"{PARKED_RECORDS - 1} + 1 held"

        # When every parked record is deleted (redriven)
        visible = sqs.receive_message(QueueUrl=consumer.parked_records_url, MaxNumberOfMessages=10)["Messages"]
        assert len(visible) == PARKED_RECORDS - 1
        for message in [held, *visible]:
            sqs.delete_message(QueueUrl=consumer.parked_records_url, ReceiptHandle=message["ReceiptHandle"])

        # Then the column drops to 0, though the run's count of records parked (the demo's report) stays
        assert await status_cell(system, consumer, "parked") == "0"
        assert consumer.stats.parked == PARKED_RECORDS
    finally:
        await system.stop()
