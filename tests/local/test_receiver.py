"""The demo receiver does what the contract asks of every receiver: verify, dedupe, spot stale events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from dispatcher.signing import SigningKeys
from local.receiver import DemoReceiver, FaultKnobs
from tests.fakes import OLD_SECRET, SECRET

LATE_ANSWER_SECONDS = 2.0
ARRIVAL_GUARD_SECONDS = 20.0  # a guard against hangs, far above what an arrival takes


@pytest.fixture
def receiver() -> Iterator[DemoReceiver]:
    server = DemoReceiver(seed=1)
    server.register("orders", SECRET, ordered=True)
    server.start()
    yield server
    server.stop()


def post(
    receiver: DemoReceiver,
    webhook_id: str,
    body: bytes,
    sequence: int,
    secret: str = SECRET,
    redriven_at: str | None = None,
    key: str = "customer-1",
) -> int:
    timestamp = int(time.time())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": SigningKeys.parse(secret).signature_header(webhook_id, timestamp, body),
        "dispatch-source": "orders",
        "dispatch-partition-key": key,
        "dispatch-sequence": str(sequence),
    }
    if redriven_at is not None:
        headers["dispatch-redrive"] = redriven_at
    return httpx.post(receiver.url("orders"), content=body, headers=headers).status_code


def test_duplicates_are_absorbed_and_stale_events_counted(receiver: DemoReceiver) -> None:
    # Given an event, its duplicate, and an older event of the same key arriving after it
    statuses = [post(receiver, "evt-2", b"{}", 2), post(receiver, "evt-2", b"{}", 2), post(receiver, "evt-1", b"{}", 1)]
    # Then all are answered 2xx, the duplicate is not accepted twice and the stale one is counted
    assert statuses == [204, 204, 204]
    assert receiver.totals() == {
        "accepted": 2,
        "duplicates": 1,
        "out_of_order": 1,
        "redriven_older": 0,
        "refused_signature": 0,
        "outage_refusals": 0,
    }


def test_an_older_redriven_event_is_taken_on_purpose_and_a_stale_one_still_counted(receiver: DemoReceiver) -> None:
    # Given a key whose newest event is sequence 5
    assert post(receiver, "evt-5", b"{}", 5) == 204
    # When an older event arrives as a redrive, then another older one without the header, then a newer one
    redriven = post(receiver, "evt-3", b"{}", 3, redriven_at="2026-11-27T14:05:09.250Z")
    statuses = [redriven, post(receiver, "evt-4", b"{}", 4), post(receiver, "evt-6", b"{}", 6)]
    # Then the redriven one is accepted deliberately and the key's newest stays 5 (so 4 is still stale), the one
    # without the header is counted stale, and the newer one is neither
    assert statuses == [204, 204, 204]
    assert receiver.totals() == {
        "accepted": 4,
        "duplicates": 0,
        "out_of_order": 1,
        "redriven_older": 1,
        "refused_signature": 0,
        "outage_refusals": 0,
    }
    assert receiver.ledgers["orders"].last_sequence == {("orders", "customer-1"): 6}


def test_a_redriven_event_still_needs_its_signature(receiver: DemoReceiver) -> None:
    # Given a redriven event signed with a secret the receiver does not hold
    status = post(receiver, "evt-1", b"{}", 1, secret=OLD_SECRET, redriven_at="2026-11-27T14:05:09.250Z")
    # Then the header earns it nothing: it is refused like any unsigned request
    assert status == 401
    assert receiver.totals()["accepted"] == 0


def test_bad_signature_is_refused(receiver: DemoReceiver) -> None:
    assert post(receiver, "evt-1", b"{}", 1, secret=OLD_SECRET) == 401
    assert receiver.totals()["refused_signature"] == 1
    assert receiver.totals()["accepted"] == 0


def test_poison_events_are_refused_for_good(receiver: DemoReceiver) -> None:
    assert post(receiver, "evt-1", b'{"poison": true}', 1) == 422
    assert receiver.totals()["accepted"] == 0


def test_fail_rate_answers_500() -> None:
    server = DemoReceiver(FaultKnobs(fail_rate=1.0), seed=1)
    server.register("orders", SECRET, ordered=False)
    server.start()
    try:
        assert post(server, "evt-1", b"{}", 1) == 500
        assert server.totals()["accepted"] == 0
    finally:
        server.stop()


def test_an_event_answered_late_keeps_the_place_it_arrived_in() -> None:
    # Given a receiver that answers its first request late and its second at once (seed 1 draws 0.13, then 0.85)
    server = DemoReceiver(FaultKnobs(timeout_rate=0.5, stall_seconds=LATE_ANSWER_SECONDS), seed=1)
    server.register("orders", SECRET, ordered=True)
    server.start()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            late = pool.submit(post, server, "evt-1", b"{}", 1)
            # When a newer event of the same key arrives while the first one's answer is still held back
            deadline = time.monotonic() + ARRIVAL_GUARD_SECONDS
            while server.totals()["accepted"] == 0:
                assert time.monotonic() < deadline, "the first event was never taken"
                time.sleep(0.01)
            answers_when_taken = sum(server.ledgers["orders"].answers.values())
            newer = post(server, "evt-2", b"{}", 2)
            # Then the first was taken on arrival, before any answer, and nothing is out of order
            assert (answers_when_taken, late.result(), newer) == (0, 204, 204)
        assert server.totals() == {
            "accepted": 2,
            "duplicates": 0,
            "out_of_order": 0,
            "redriven_older": 0,
            "refused_signature": 0,
            "outage_refusals": 0,
        }
    finally:
        server.stop()


@pytest.fixture
def receiver_with_outage(request: pytest.FixtureRequest) -> Iterator[DemoReceiver]:
    """A receiver whose key outage (of customer-1) lasts `request.param` seconds once started (None: until ended)."""
    server = DemoReceiver(FaultKnobs(outage_keys=frozenset({"customer-1"}), outage_seconds=request.param), seed=1)
    server.register("orders", SECRET, ordered=True)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("receiver_with_outage", [None], indirect=True)
def test_a_key_outage_refuses_its_keys_only_while_it_lasts(receiver_with_outage: DemoReceiver) -> None:
    receiver = receiver_with_outage
    # Given a receiver with customer-1 in its key outage, which has not started yet
    before = post(receiver, "evt-1", b"{}", 1)
    # When the outage starts, Then customer-1's events are answered 503 and not taken, other keys' are taken
    receiver.start_key_outage()
    during = [post(receiver, "evt-2", b"{}", 2), post(receiver, "evt-a", b"{}", 1, key="customer-2")]
    # When it ends, Then customer-1's events are taken again
    receiver.end_key_outage()
    after = post(receiver, "evt-2", b"{}", 2)
    assert (before, during, after) == (204, [503, 204], 204)
    assert list(receiver.ledgers["orders"].accepted) == ["evt-1", "evt-a", "evt-2"]
    assert receiver.totals()["outage_refusals"] == 1
    assert receiver.ledgers["orders"].answers[503] == 1


@pytest.mark.parametrize("receiver_with_outage", [0.0, 3600.0], indirect=True)
def test_a_timed_key_outage_lasts_its_seconds_from_its_first_request(receiver_with_outage: DemoReceiver) -> None:
    receiver = receiver_with_outage
    # Given a key outage of outage_seconds, started
    receiver.start_key_outage()
    # When an event of its key arrives
    status = post(receiver, "evt-1", b"{}", 1)
    # Then it is refused while the outage lasts (an hour), taken when it lasts no time at all
    assert status == (503 if receiver.faults.outage_seconds else 204)
