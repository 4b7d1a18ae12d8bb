"""Given parked messages held out of sight (received by another or an interrupted run), when a redrive runs, then
it says how many and when they are back, leaves them or waits for them, and holds its own only as long as its
work needs (renewed while a record is redriven, not the worst case up front)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from local.workers import InvocationResult
from redrive import HeldRecords, Outcome, Redriver
from tests.events import sqs_record
from tests.redrive.conftest import ParkedSubscription
from tests.redrive.test_redrive import FAST_RATE, HOLD_SECONDS, receive_counts, redriver

QUICK_RENEWAL_SECONDS = 0.05  # renew holds often, so the renewal test waits on it briefly
OBSERVED_WITHIN_SECONDS = 30.0  # bound on waiting for the renewal: far above QUICK_RENEWAL_SECONDS
# A function that may run 13 minutes: the old hold (10 x (timeout + 1/rate) + 60 s) would have been over 2 hours.
LONG_FUNCTION_TIMEOUT_SECONDS = 783.0
QUEUE_DEFAULT_HOLD_SECONDS = HOLD_SECONDS + 30  # the queue's own VisibilityTimeout (a plain receive uses it): longer


def hold_as_an_interrupted_run_would(parked: ParkedSubscription, records: int) -> list[str]:
    """Receive `records` parked messages and keep them invisible, as a run killed mid-way leaves them; their
    receipt handles."""
    messages = parked.sqs.receive_message(
        QueueUrl=parked.parked_records_url, MaxNumberOfMessages=records, VisibilityTimeout=HOLD_SECONDS
    )["Messages"]
    assert len(messages) == records
    return [message["ReceiptHandle"] for message in messages]


async def test_records_held_by_an_interrupted_run_are_reported_and_left(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given three parked records, two of them held by a run that was killed
    await parked_subscription.park(*(sqs_record(f"m-{n}", {"type": "a"}) for n in range(3)))
    parked_subscription.sqs.set_queue_attributes(
        QueueUrl=parked_subscription.parked_records_url,
        Attributes={"VisibilityTimeout": str(QUEUE_DEFAULT_HOLD_SECONDS)},
    )
    hold_as_an_interrupted_run_would(parked_subscription, 2)
    reported: list[tuple[HeldRecords, bool]] = []

    class Listener:
        def expect(self, records: int) -> None: ...
        def finished(self, outcome: Outcome, records: int) -> None: ...
        def held(self, held: HeldRecords, *, waiting: bool) -> None:
            reported.append((held, waiting))

    # When a redrive runs without --wait
    summary = await redriver(parked_subscription, progress=Listener()).run()

    # Then it redrives the visible one and reports the two held, at the start and at the end, with the longer of
    # the redrive's hold and the queue's own as when they are back; the run is not complete
    assert summary.counts == {Outcome.REDRIVEN: 1}
    expected = HeldRecords(count=2, visible_again_within_seconds=QUEUE_DEFAULT_HOLD_SECONDS)
    assert summary.held_at_start == expected
    assert summary.held_at_end == expected
    assert summary.held_left == 2
    assert not summary.complete
    assert reported == [(expected, False)]


async def test_a_dry_run_reports_held_records_and_changes_nothing(parked_subscription: ParkedSubscription) -> None:
    # Given three parked records, two of them held by a run that was killed
    await parked_subscription.park(*(sqs_record(f"m-{n}", {"type": "a"}) for n in range(3)))
    handles = hold_as_an_interrupted_run_would(parked_subscription, 2)

    # When the redrive is planned
    plan = await redriver(parked_subscription).plan()

    # Then it counts one visible and two held, and received none of them
    assert plan.parked == 1
    assert plan.held == HeldRecords(count=2, visible_again_within_seconds=HOLD_SECONDS)
    for handle in handles:
        parked_subscription.sqs.change_message_visibility(
            QueueUrl=parked_subscription.parked_records_url, ReceiptHandle=handle, VisibilityTimeout=0
        )
    assert sorted(receive_counts(parked_subscription)) == [1, 2, 2]


async def test_with_wait_the_run_waits_for_held_records_and_redrives_them(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given two parked records held by another run, which lets them go once the redrive says it is waiting
    await parked_subscription.park(sqs_record("m-1", {"type": "a"}), sqs_record("m-2", {"type": "b"}))
    handles = hold_as_an_interrupted_run_would(parked_subscription, 2)
    waits: list[int] = []

    class ReleaseWhenWaiting:
        def expect(self, records: int) -> None: ...
        def finished(self, outcome: Outcome, records: int) -> None: ...
        def held(self, held: HeldRecords, *, waiting: bool) -> None:
            waits.append(held.count)
            if waiting:
                for handle in handles:
                    parked_subscription.sqs.change_message_visibility(
                        QueueUrl=parked_subscription.parked_records_url, ReceiptHandle=handle, VisibilityTimeout=0
                    )

    # When a redrive runs with --wait
    summary = await redriver(parked_subscription, wait=True, progress=ReleaseWhenWaiting()).run()

    # Then it waited, redrove both once they were back, and nothing is held or parked any more
    assert waits[0] == 2
    assert sorted(parked_subscription.endpoint.ids_posted()) == ["m-1", "m-2"]
    assert summary.counts == {Outcome.REDRIVEN: 2}
    assert summary.held_left == 0
    assert summary.complete
    assert parked_subscription.parked_bodies() == []


async def test_the_runs_own_kept_records_are_not_counted_as_held_and_are_released(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given a parked record and a function that fails
    await parked_subscription.park(sqs_record("m-1", {"type": "a"}))
    parked_subscription.function_error = "RuntimeError: the function crashed"

    # When it is redriven
    summary = await redriver(parked_subscription).run()

    # Then it is kept, not reported as held by someone else, and visible again at once (received once, by the run)
    assert summary.counts == {Outcome.STILL_FAILING: 1}
    assert summary.held_left == 0
    assert receive_counts(parked_subscription) == [2]


async def test_a_record_is_held_briefly_and_renewed_while_it_is_redriven(
    parked_subscription: ParkedSubscription,
) -> None:
    # Given a parked record of a function that may run for 13 minutes, and an invocation that lasts until the
    # run has renewed its hold
    await parked_subscription.park(sqs_record("m-1", {"type": "a"}))
    receives: list[int] = []
    renewals: list[list[int]] = []
    renewed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_receive(params: dict[str, Any], **_: Any) -> None:
        receives.append(params["VisibilityTimeout"])

    def on_renewal(params: dict[str, Any], **_: Any) -> None:
        renewals.append([entry["VisibilityTimeout"] for entry in params["Entries"]])
        loop.call_soon_threadsafe(renewed.set)

    parked_subscription.sqs.meta.events.register("provide-client-params.sqs.ReceiveMessage", on_receive)
    parked_subscription.sqs.meta.events.register("provide-client-params.sqs.ChangeMessageVisibilityBatch", on_renewal)

    async def invoke_outlasting_a_renewal(event: dict[str, Any]) -> InvocationResult:
        async with asyncio.timeout(OBSERVED_WITHIN_SECONDS):
            await renewed.wait()
        return await parked_subscription.invoke(event)

    target = dataclasses.replace(
        parked_subscription.target(),
        invoke=invoke_outlasting_a_renewal,
        function_timeout_seconds=LONG_FUNCTION_TIMEOUT_SECONDS,
    )

    # When it is redriven
    run = Redriver(
        target, rate_per_second=FAST_RATE, hold_seconds=HOLD_SECONDS, hold_renewal_seconds=QUICK_RENEWAL_SECONDS
    )
    summary = await run.run()

    # Then every receive held for HOLD_SECONDS only, whatever the function's timeout, and the hold was renewed
    # to HOLD_SECONDS while the record was being redriven
    assert summary.counts == {Outcome.REDRIVEN: 1}
    assert receives
    assert set(receives) == {HOLD_SECONDS}
    assert renewals[0] == [HOLD_SECONDS]
