"""The invocation deadline over real HTTP: a dispatch always returns within the time Lambda gave it, with
whatever it could not finish reported, never hanging (a hang is a function timeout: Lambda re-sends the
whole batch, and the same hang blocks the shard or message group again).

Each dispatch runs under `asyncio.wait_for` with the remaining time it was given: a correctness bound
(the contract), with the production finish reserve of 3 s inside it, not a measure of speed."""

from __future__ import annotations

import asyncio
import json

import pytest

from dispatcher.delivery import Dispatcher
from dispatcher.outcomes import BatchReport
from dispatcher.records import parse_event
from tests.events import event, kinesis_record, sequence_number
from tests.integration.conftest import AwsResources, DispatcherFactory
from tests.integration.support import LoopbackEndpoint, Reply

pytestmark = pytest.mark.integration

PAYLOAD = b'{"id": "evt-slow"}'


async def dispatch_within(dispatcher: Dispatcher, raw_event: dict[str, object], remaining: float) -> BatchReport:
    return await asyncio.wait_for(dispatcher.dispatch(parse_event(raw_event), remaining), timeout=remaining)


async def test_retry_after_beyond_the_deadline_is_not_waited_for(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an endpoint asking to come back in two minutes, and 30 s left in the invocation (room for the
    # delivered-ids read and a first attempt on a loaded machine; far less than the Retry-After)
    endpoint.default = Reply(429, {"Retry-After": "120"})
    dispatcher = make_dispatcher(max_attempts=5)

    # When a record is dispatched
    report = await dispatch_within(dispatcher, event(kinesis_record(0, PAYLOAD)), 30)

    # Then it is reported after one attempt instead of waiting past the deadline
    assert report.response() == {"batchItemFailures": [{"itemIdentifier": sequence_number(0)}]}
    assert len(endpoint.received) == 1


async def test_request_timeout_is_cut_to_the_time_that_remains(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an endpoint that hangs for 60 s, a 60 s request timeout, and 10 s left in the invocation (7 s for
    # attempts after the finish reserve: room for the delivered-ids read and the POST on a loaded machine)
    endpoint.default = Reply(200, delay_seconds=60)
    dispatcher = make_dispatcher(request_timeout_seconds=60, max_attempts=3)

    # When a record is dispatched
    report = await dispatch_within(dispatcher, event(kinesis_record(0, PAYLOAD)), 10)

    # Then the request was given up in time and the record is reported
    assert report.response() == {"batchItemFailures": [{"itemIdentifier": sequence_number(0)}]}
    assert len(endpoint.received) == 1


async def test_duplicate_of_a_held_back_record_on_another_key_does_not_hang_the_batch(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a Kinesis batch where key A's first record fails, so A's second record is held back, and key B
    # carries a record with the same webhook-id as that held-back record (a producer that wrote one event
    # twice under two partition keys; FIFO message groups share the same code path)
    endpoint.always("evt-fails", 500)
    dispatcher = make_dispatcher(max_attempts=1)
    fails, shared = json.dumps({"id": "evt-fails"}).encode(), json.dumps({"id": "evt-shared"}).encode()
    raw_event = event(kinesis_record(0, fails, "A"), kinesis_record(1, shared, "A"), kinesis_record(2, shared, "B"))

    # When it is dispatched with 10 s left (7 s for attempts after the 3 s finish reserve; a hang would run out)
    report = await dispatch_within(dispatcher, raw_event, 10)

    # Then it returns in time; A's records are reported (B's duplicate is reported with them or delivered)
    reported = [failure["itemIdentifier"] for failure in report.response()["batchItemFailures"]]
    assert reported[:2] == [sequence_number(0), sequence_number(1)]
    assert endpoint.hits()["evt-fails"] == 1
