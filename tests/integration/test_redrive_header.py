"""Replays say what they are (issue 13), over real HTTP: a record the function parked, redriven by the redrive
engine through the function's `process_batch` with its production wiring (moto for its AWS, the loopback endpoint),
arrives with `dispatch-redrive` beside its original `webhook-id` and `dispatch-sequence`, and still verifies
with the reference `standardwebhooks` package; the first deliveries carry no such header."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from dispatcher.record_fields import RFC3339_AS_WRITTEN
from local.workers import InvocationResult
from redrive import Outcome, Redriver, RedriveTarget
from tests.events import event, kinesis_record, sequence_number
from tests.fakes import SECRET
from tests.integration.conftest import AwsResources, FakeLambdaContext, FunctionStarter
from tests.integration.support import LoopbackEndpoint

pytestmark = pytest.mark.integration

FAST_RATE = 1_000.0  # records redriven per second: no pacing to speak of
HOLD_SECONDS = 60  # parked messages received by the redrive stay out of sight this long: outlasts the test
FUNCTION_TIMEOUT_SECONDS = 30.0  # FakeLambdaContext's remaining time


def test_a_redriven_record_arrives_saying_when_it_was_redriven_and_still_verifies(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter
) -> None:
    # Given two records of one key, the older of which the endpoint refused (410), so the function parked it
    invoke = warm_function(max_attempts=1)
    endpoint.always("evt-1", 410)
    records = [kinesis_record(position, {"id": f"evt-{position}"}, "acct-7") for position in (1, 2)]
    assert invoke(event(*records), FakeLambdaContext()) == {"batchItemFailures": []}
    first_deliveries = endpoint.received

    # When the endpoint takes it again and it is redriven through the same function
    endpoint.heal()

    async def invoke_as_lambda(redrive_event: dict[str, Any]) -> InvocationResult:
        # In a thread of its own, as Lambda runs it: the function drives its own warm event loop.
        response = await asyncio.to_thread(invoke, redrive_event, FakeLambdaContext())
        return InvocationResult("redrive", response=json.loads(json.dumps(response)))  # as Invoke answers: JSON

    target = RedriveTarget(
        subscription="it-orders",
        function_name="callback-dispatcher-it",
        invoke=invoke_as_lambda,
        function_timeout_seconds=FUNCTION_TIMEOUT_SECONDS,
        sqs=aws.sqs,
        parked_records_url=aws.parked_queue_url,
        s3=aws.s3,
        on_failure_bucket=None,
        payload_bucket=aws.payload_bucket,
    )
    started = datetime.now(UTC).replace(microsecond=0)
    summary = asyncio.run(Redriver(target, rate_per_second=FAST_RATE, hold_seconds=HOLD_SECONDS).run())
    finished = datetime.now(UTC)

    # Then the first deliveries had no dispatch-redrive header
    assert [request.webhook_id for request in first_deliveries] == ["evt-1", "evt-2"]
    assert all("dispatch-redrive" not in request.headers for request in first_deliveries)
    # and the redriven one carries the time of the redrive beside its original webhook-id and dispatch-sequence
    assert summary.counts == {Outcome.REDRIVEN: 1}
    (redriven,) = endpoint.received[len(first_deliveries) :]
    assert redriven.webhook_id == "evt-1"
    assert redriven.headers["dispatch-sequence"] == sequence_number(1)
    redriven_at = datetime.strptime(redriven.headers["dispatch-redrive"], RFC3339_AS_WRITTEN).replace(tzinfo=UTC)
    assert started <= redriven_at <= finished
    # and it is still a Standard Webhook over {id}.{timestamp}.{body}
    assert Webhook(SECRET).verify(redriven.body, redriven.headers) == {"id": "evt-1"}
