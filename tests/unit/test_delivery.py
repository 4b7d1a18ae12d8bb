from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from dispatcher.attempt_policy import parse_retry_after
from dispatcher.guard import EndpointRefusedError
from dispatcher.outcomes import Outcome
from dispatcher.signing import SigningSecretError
from tests.events import STREAM, event, fifo_sequence_number, kinesis_record, sequence_number, sqs_record
from tests.fakes import SECRET, SentRequest, transport_failure
from tests.unit.conftest import FAST, Harness, failed_ids, subscription

# Far longer than any of these batches takes: only a batch that stalls reaches it.
HANG_GUARD_SECONDS = 30


def kinesis_id(position: int) -> str:
    return f"{STREAM}:{sequence_number(position)}"


# --- what an endpoint receives -------------------------------------------------------------------


async def test_kinesis_record_is_posted_signed_with_ordering_metadata(harness: Harness) -> None:
    # Given a Kinesis batch of one JSON record
    report = await harness.dispatch(event(kinesis_record(4, {"type": "order.created"}, partition_key="c-1")))
    # Then it is delivered and nothing is reported
    assert report.response() == {"batchItemFailures": []}
    (request,) = harness.endpoint.requests
    headers = request.headers
    assert request.url == "https://ledger.example.com/hooks"
    assert request.body == b'{"type": "order.created"}'
    assert headers["Content-Type"] == "application/json"
    assert headers["webhook-id"] == headers["Idempotency-Key"] == kinesis_id(4)
    assert Webhook(SECRET).verify(request.body, headers) == {"type": "order.created"}
    assert headers["dispatch-source"] == STREAM
    assert headers["dispatch-partition-key"] == "c-1"
    assert headers["dispatch-sequence"] == sequence_number(4)
    assert headers["dispatch-produced-at"] == "2023-11-14T22:13:24.500Z"
    assert headers["dispatch-attempt"] == "1"


async def test_standard_queue_record_has_no_partition_or_sequence_headers(harness: Harness) -> None:
    await harness.dispatch(event(sqs_record("m-1", b"plain text")))
    (request,) = harness.endpoint.requests
    assert request.headers["webhook-id"] == "m-1"
    assert request.headers["Content-Type"] == "application/octet-stream"
    assert request.headers["dispatch-source"] == "billing-callbacks"
    assert request.headers["dispatch-produced-at"] == "2023-11-14T22:13:20.123Z"
    assert "dispatch-partition-key" not in request.headers
    assert "dispatch-sequence" not in request.headers


async def test_fifo_record_names_its_group_and_sequence(harness: Harness) -> None:
    await harness.dispatch(event(sqs_record("m-1", {"a": 1}, queue="jobs.fifo", group="g-7", position=3)))
    (request,) = harness.endpoint.requests
    assert request.headers["webhook-id"] == "jobs.fifo:dedup-m-1"
    assert request.headers["dispatch-partition-key"] == "g-7"
    assert request.headers["dispatch-sequence"] == fifo_sequence_number(3)


# --- response classes ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 599])
async def test_transient_status_is_retried_until_delivered(harness: Harness, status: int) -> None:
    # Given an endpoint that fails once with a transient status, then accepts
    harness.endpoint.answers[kinesis_id(1)] = [status, 200]
    # When the record is dispatched
    report = await harness.dispatch(event(kinesis_record(1, {})))
    # Then it is retried with the attempt number, each attempt signed afresh, and delivered
    assert failed_ids(report) == []
    attempts = [request.headers["dispatch-attempt"] for request in harness.endpoint.requests]
    assert attempts == ["1", "2"]
    assert report.results[0].outcome is Outcome.DELIVERED
    assert report.stats.retried == 1
    assert report.stats.status_classes[f"{status // 100}xx"] == 1


async def test_transient_failure_after_max_attempts_is_reported(harness: Harness) -> None:
    harness.endpoint.answers[kinesis_id(1)] = [503, 503, 503]
    report = await harness.dispatch(event(kinesis_record(1, {}), kinesis_record(2, {}, partition_key="other")))
    assert failed_ids(report) == [sequence_number(1)]
    assert report.results[0] == replace(report.results[0], outcome=Outcome.FAILED, attempts=3, last_status=503)
    assert len(harness.parked_records) == 0
    assert report.stats.failed == 1
    assert report.stats.delivered == 1


async def test_connection_errors_are_transient(harness: Harness) -> None:
    harness.endpoint.answers[kinesis_id(1)] = [transport_failure(), transport_failure(), transport_failure()]
    report = await harness.dispatch(event(kinesis_record(1, {})))
    assert failed_ids(report) == [sequence_number(1)]
    assert report.results[0].reason == "no response: connection refused"
    assert report.stats.status_classes["network"] == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 410, 422, 301, 302, 307])
async def test_permanent_status_parks_the_record_and_does_not_report_it(harness: Harness, status: int) -> None:
    # Given an endpoint that will never take this record
    harness.endpoint.answers["evt-1"] = [status]
    # When it is dispatched
    report = await harness.dispatch(event(kinesis_record(9, {"id": "evt-1", "n": 1}, partition_key="p")))
    # Then it is not retried, not reported, and parked with its payload and position
    assert failed_ids(report) == []
    assert len(harness.endpoint.requests) == 1
    (parked,) = harness.parked_records.messages
    assert parked["subscription"] == "orders-to-ledger"
    assert parked["webhook_id"] == "evt-1"
    assert base64.b64decode(parked["payload_base64"]) == b'{"id": "evt-1", "n": 1}'
    assert parked["source"] == {
        "type": "kinesis",
        "name": STREAM,
        "arn": "arn:aws:kinesis:eu-west-1:123456789012:stream/orders",
        "shard_id": "shardId-000000000000",
        "sequence_number": sequence_number(9),
        "partition_key": "p",
    }
    assert parked["last_status"] == status
    assert parked["attempts"] == 1
    assert parked["reason"].startswith(f"HTTP {status}")
    assert datetime.fromisoformat(parked["parked_at"]).tzinfo is not None
    assert report.stats.parked == 1


async def test_endpoint_refused_by_the_guard_is_parked_naming_the_address(harness: Harness) -> None:
    harness.endpoint.default = EndpointRefusedError("10.0.0.5 is a private address and not in allow_private_cidrs")
    report = await harness.dispatch(event(sqs_record("m-1", {})))
    assert failed_ids(report) == []
    (parked,) = harness.parked_records.messages
    assert parked["reason"] == (
        "endpoint refused by the SSRF guard: 10.0.0.5 is a private address and not in allow_private_cidrs"
    )
    assert parked["last_status"] is None


async def test_unreadable_record_is_parked_and_the_batch_goes_on(harness: Harness) -> None:
    report = await harness.dispatch(event(kinesis_record(1, None, raw_data="%%%"), kinesis_record(2, {"ok": 1})))
    assert failed_ids(report) == []
    assert harness.endpoint.ids_posted() == [kinesis_id(2)]
    (parked,) = harness.parked_records.messages
    assert "not valid base64" in parked["reason"]
    assert base64.b64decode(parked["payload_base64"]) == b"%%%"
    assert parked["attempts"] == 0


async def test_record_that_cannot_be_parked_is_reported_instead(harness: Harness) -> None:
    # Given a parked-records queue that refuses the message
    harness.parked_records.refuse = True
    harness.endpoint.answers[kinesis_id(1)] = [404]
    report = await harness.dispatch(event(kinesis_record(1, {})))
    # Then the record is never dropped: Lambda will send it again
    assert failed_ids(report) == [sequence_number(1)]
    assert report.results[0].reason == (
        "could not park (HTTP 404 Not Found): RuntimeError: the parked-records queue is unavailable"
    )


# --- Retry-After and the deadline --------------------------------------------------------------------


async def test_retry_after_seconds_is_honoured(harness: Harness) -> None:
    harness.endpoint.answers[kinesis_id(1)] = [(429, "7"), 200]
    report = await harness.dispatch(event(kinesis_record(1, {})), remaining_seconds=60)
    assert failed_ids(report) == []
    assert harness.sleeps == [7.0]


async def test_retry_after_past_the_deadline_is_not_waited_for(harness: Harness) -> None:
    harness.endpoint.answers[kinesis_id(1)] = [(503, "120"), 200]
    report = await harness.dispatch(event(kinesis_record(1, {})), remaining_seconds=30)
    assert failed_ids(report) == [sequence_number(1)]
    assert harness.sleeps == []
    assert len(harness.endpoint.requests) == 1


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after("Fri, 27 Nov 2026 12:00:45 GMT", now) == 45.0
    assert parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_nothing_is_sent_without_time_left() -> None:
    # Given an invocation whose remaining time is all needed to finish up
    harness = Harness(subscription(), replace(FAST, finish_reserve_seconds=3.0))
    report = await harness.dispatch(event(kinesis_record(1, {}), kinesis_record(2, {})), remaining_seconds=3.1)
    # Then nothing is attempted and everything is reported for a later invocation
    assert harness.endpoint.requests == []
    assert failed_ids(report) == [sequence_number(1), sequence_number(2)]


async def test_request_timeout_is_cut_to_the_time_left() -> None:
    harness = Harness(subscription(request_timeout_seconds=10), replace(FAST, finish_reserve_seconds=1.0))
    await harness.dispatch(event(kinesis_record(1, {})), remaining_seconds=3.0)
    assert harness.endpoint.requests[0].timeout <= 2.0


# --- ordering ------------------------------------------------------------------------------------------


async def test_failure_holds_back_later_records_of_its_key_only(harness: Harness) -> None:
    # Given records of two partition keys, the second record of key A failing
    harness.endpoint.answers[kinesis_id(2)] = [500, 500, 500]
    records = [kinesis_record(i, {"i": i}, partition_key="A" if i % 2 == 0 else "B") for i in range(8)]
    # When dispatched with ordering by partition key
    report = await harness.dispatch(event(*records))
    # Then key A stops at the failure, key B is delivered in full and in order
    assert failed_ids(report) == [sequence_number(2), sequence_number(4), sequence_number(6)]
    posted = harness.endpoint.ids_posted()
    assert kinesis_id(4) not in posted
    assert kinesis_id(6) not in posted
    b_posted = [webhook_id for webhook_id in posted if webhook_id in {kinesis_id(i) for i in (1, 3, 5, 7)}]
    assert b_posted == [kinesis_id(1), kinesis_id(3), kinesis_id(5), kinesis_id(7)]


async def test_records_of_a_key_go_out_one_after_another() -> None:
    harness = Harness(subscription(max_in_flight=8))
    harness.endpoint.latency_seconds = 0.001
    await harness.dispatch(event(*[kinesis_record(i, {}, partition_key="same") for i in range(6)]))
    assert harness.endpoint.max_in_flight_seen == 1
    assert harness.endpoint.ids_posted() == [kinesis_id(i) for i in range(6)]


async def test_parked_record_does_not_hold_back_its_key(harness: Harness) -> None:
    harness.endpoint.answers[kinesis_id(1)] = [410]
    report = await harness.dispatch(event(*[kinesis_record(i, {}, partition_key="A") for i in range(3)]))
    assert failed_ids(report) == []
    assert harness.endpoint.ids_posted() == [kinesis_id(0), kinesis_id(1), kinesis_id(2)]


async def test_ordering_none_attempts_every_record() -> None:
    harness = Harness(subscription(ordering="none"))
    harness.endpoint.answers[kinesis_id(0)] = [500, 500, 500]
    report = await harness.dispatch(event(*[kinesis_record(i, {}, partition_key="A") for i in range(3)]))
    assert failed_ids(report) == [sequence_number(0)]
    assert {kinesis_id(1), kinesis_id(2)} <= set(harness.endpoint.ids_posted())


async def test_fifo_groups_stay_ordered_whatever_the_subscription_says() -> None:
    # Given a FIFO batch and a subscription that asks for no ordering
    harness = Harness(subscription(ordering="none"))
    harness.endpoint.answers["jobs.fifo:dedup-m-1"] = [500, 500, 500]
    records = [
        sqs_record(f"m-{i}", {"i": i}, queue="jobs.fifo", group="g-1" if i < 3 else "g-2", position=i) for i in range(5)
    ]
    report = await harness.dispatch(event(*records))
    # Then the group of the failure stops there and reports the rest; the other group is delivered
    assert failed_ids(report) == ["m-1", "m-2"]
    assert "jobs.fifo:dedup-m-2" not in harness.endpoint.ids_posted()
    assert report.results[3].outcome is report.results[4].outcome is Outcome.DELIVERED


async def test_in_flight_requests_never_exceed_max_in_flight() -> None:
    harness = Harness(subscription(ordering="none", max_in_flight=4))
    harness.endpoint.latency_seconds = 0.002
    report = await harness.dispatch(event(*[kinesis_record(i, {}) for i in range(40)]))
    assert failed_ids(report) == []
    assert harness.endpoint.max_in_flight_seen == 4


async def test_a_key_waiting_to_retry_does_not_keep_other_keys_from_the_endpoint() -> None:
    # Given one request in flight at most, key A's first record failing once, and a backoff that lasts until
    # key B's records were sent (it would never end if key B had to wait for key A)
    harness = Harness(subscription(max_in_flight=1))
    harness.endpoint.answers[kinesis_id(0)] = [503]
    key_b_sent = asyncio.Event()

    def note_key_b(request: SentRequest) -> None:
        if request.headers["webhook-id"] == kinesis_id(2):
            key_b_sent.set()

    async def backoff_until_key_b_was_sent(seconds: float) -> None:
        await key_b_sent.wait()

    harness.endpoint.on_request = note_key_b
    harness.dispatcher.sleep = backoff_until_key_b_was_sent
    records = [kinesis_record(0, {}, "A"), kinesis_record(1, {}, "B"), kinesis_record(2, {}, "B")]

    # When dispatched (bounded: a stalled batch fails the test instead of hanging it)
    report = await asyncio.wait_for(harness.dispatch(event(*records)), timeout=HANG_GUARD_SECONDS)

    # Then key B went out while key A waited, and key A's retry came after
    assert harness.endpoint.ids_posted() == [kinesis_id(0), kinesis_id(1), kinesis_id(2), kinesis_id(0)]
    assert failed_ids(report) == []


async def test_a_record_waiting_for_its_twin_on_a_later_key_does_not_stall_the_batch() -> None:
    # Given one request in flight at most, and key A's second record sharing its webhook-id with key B's
    # record, which comes first in the batch (so key A's copy waits for key B's)
    harness = Harness(subscription(max_in_flight=1))
    records = [
        kinesis_record(1, {}, "A"),
        kinesis_record(2, {"id": "evt-1"}, "B"),
        kinesis_record(3, {"id": "evt-1"}, "A"),
    ]

    # When dispatched (bounded: a stalled batch fails the test instead of hanging it)
    report = await asyncio.wait_for(harness.dispatch(event(*records)), timeout=HANG_GUARD_SECONDS)

    # Then key B's copy was sent once and key A's copy was settled by it
    assert harness.endpoint.ids_posted() == [kinesis_id(1), "evt-1"]
    assert failed_ids(report) == []
    assert report.stats.duplicates_skipped == 1


# --- duplicates ------------------------------------------------------------------------------------------


async def test_records_sharing_a_webhook_id_are_posted_once(harness: Harness) -> None:
    records = [kinesis_record(1, {"id": "evt-1"}, "A"), kinesis_record(2, {"id": "evt-1"}, "B")]
    report = await harness.dispatch(event(*records))
    assert harness.endpoint.ids_posted() == ["evt-1"]
    assert failed_ids(report) == []
    assert report.stats.duplicates_skipped == 1
    assert report.stats.delivered == 1


async def test_duplicate_of_a_failed_record_is_reported_too(harness: Harness) -> None:
    harness.endpoint.answers["evt-1"] = [500, 500, 500]
    records = [kinesis_record(1, {"id": "evt-1"}, "A"), kinesis_record(2, {"id": "evt-1"}, "B")]
    report = await harness.dispatch(event(*records))
    assert failed_ids(report) == [sequence_number(1), sequence_number(2)]
    assert len(harness.endpoint.requests) == 3


async def test_held_back_record_settles_its_duplicate_on_another_key(harness: Harness) -> None:
    # Given key A failing first, then evt-1 on key A (held back) and evt-1 again on key B
    harness.endpoint.answers[kinesis_id(1)] = [500, 500, 500]
    records = [
        kinesis_record(1, {}, "A"),
        kinesis_record(2, {"id": "evt-1"}, "A"),
        kinesis_record(3, {"id": "evt-1"}, "B"),
    ]
    # When dispatched, the batch finishes (the copy on key B does not wait forever for the held-back one)
    report = await asyncio.wait_for(harness.dispatch(event(*records)), timeout=5)
    # Then all three are reported and evt-1 was never POSTed
    assert failed_ids(report) == [sequence_number(1), sequence_number(2), sequence_number(3)]
    assert "evt-1" not in harness.endpoint.ids_posted()


async def test_kinesis_partial_failure_records_what_lambda_will_resend(harness: Harness) -> None:
    # Given a batch whose third record fails
    harness.endpoint.answers[kinesis_id(2)] = [500, 500, 500]
    records = [kinesis_record(i, {}, partition_key=f"k{i}") for i in range(6)]
    report = await harness.dispatch(event(*records))
    assert failed_ids(report) == [sequence_number(2)]
    # Then one entry, keyed by the checkpoint, lists the delivered records after it
    checkpoint_key = f"orders-to-ledger#kinesis#{STREAM}#shardId-000000000000#{sequence_number(2)}"
    assert harness.delivered_ids.saves == [{checkpoint_key: frozenset(sequence_number(i) for i in (3, 4, 5))}]
    # When Lambda re-sends from the checkpoint on, with the endpoint healthy again
    harness.endpoint.requests.clear()
    resent = await harness.dispatch(event(*records[2:]))
    # Then only the record that failed is POSTed; the others are skipped and counted
    assert harness.endpoint.ids_posted() == [kinesis_id(2)]
    assert failed_ids(resent) == []
    assert resent.stats.duplicates_skipped == 3
    assert harness.delivered_ids.fetches[-1] == [checkpoint_key]


async def test_fully_delivered_batch_reads_once_and_writes_nothing(harness: Harness) -> None:
    await harness.dispatch(event(*[kinesis_record(i, {}) for i in range(100)]))
    assert len(harness.delivered_ids.fetches) == 1
    assert harness.delivered_ids.saves == []


async def test_sqs_looks_up_only_messages_received_before(harness: Harness) -> None:
    harness.delivered_ids.entries["orders-to-ledger#sqs#billing-callbacks#m-2"] = frozenset({"m-2"})
    report = await harness.dispatch(event(sqs_record("m-1", {}), sqs_record("m-2", {}, receive_count=2)))
    assert harness.delivered_ids.fetches == [["orders-to-ledger#sqs#billing-callbacks#m-2"]]
    assert harness.endpoint.ids_posted() == ["m-1"]
    assert report.stats.duplicates_skipped == 1


async def test_sqs_partial_failure_writes_no_entry(harness: Harness) -> None:
    harness.endpoint.answers["m-1"] = [500, 500, 500]
    report = await harness.dispatch(event(sqs_record("m-1", {}), sqs_record("m-2", {})))
    assert failed_ids(report) == ["m-1"]
    assert harness.delivered_ids.saves == []


async def test_entry_write_failure_does_not_change_the_report(harness: Harness) -> None:
    harness.delivered_ids.fail_saves = True
    harness.endpoint.answers[kinesis_id(0)] = [500, 500, 500]
    report = await harness.dispatch(event(kinesis_record(0, {}, "a"), kinesis_record(1, {}, "b")))
    assert failed_ids(report) == [sequence_number(0)]


async def test_long_invocation_checkpoints_its_progress() -> None:
    # Given a slow endpoint and a short checkpoint interval
    harness = Harness(subscription(ordering="none", max_in_flight=1), replace(FAST, checkpoint_interval_seconds=0.01))
    harness.endpoint.latency_seconds = 0.005
    await harness.dispatch(event(*[kinesis_record(i, {}) for i in range(10)]))
    # Then progress entries of delivered records were written under the batch's first record
    key = f"orders-to-ledger#kinesis#{STREAM}#shardId-000000000000#{sequence_number(0)}"
    assert harness.delivered_ids.saves
    assert all(set(save) == {key} for save in harness.delivered_ids.saves)
    assert sequence_number(0) in harness.delivered_ids.saves[-1][key]


# --- circuit breaker and throttling --------------------------------------------------------------------


async def test_circuit_opens_after_transient_failures_of_five_keys() -> None:
    # Given an endpoint that is down and one attempt per record, each record of its own key
    harness = Harness(subscription(ordering="none", max_in_flight=1, max_attempts=1))
    harness.endpoint.default = 503
    report = await harness.dispatch(event(*[kinesis_record(i, {}, f"pk-{i}") for i in range(20)]))
    # Then after five keys failed the rest is reported without a request
    assert len(harness.endpoint.requests) == 5
    assert len(failed_ids(report)) == 20
    assert "circuit open" in report.results[19].reason


async def test_next_invocation_probes_with_one_request_first() -> None:
    harness = Harness(subscription(ordering="none", max_in_flight=8, max_attempts=1))
    harness.endpoint.default = 503
    await harness.dispatch(event(*[kinesis_record(i, {}, f"pk-{i}") for i in range(8)]))
    # When the next invocation finds the endpoint still down
    harness.endpoint.requests.clear()
    still_down = await harness.dispatch(event(*[kinesis_record(i, {}, f"pk-{i}") for i in range(10, 20)]))
    # Then a single probe is sent and everything is reported
    assert len(harness.endpoint.requests) == 1
    assert len(failed_ids(still_down)) == 10
    # When the endpoint has recovered
    harness.endpoint.default = 200
    harness.endpoint.requests.clear()
    recovered = await harness.dispatch(event(*[kinesis_record(i, {}, f"pk-{i}") for i in range(10, 20)]))
    # Then the probe succeeds and the rest follows
    assert failed_ids(recovered) == []
    assert len(harness.endpoint.requests) == 10


async def test_rate_limit_spaces_requests_after_a_one_second_burst() -> None:
    harness = Harness(subscription(ordering="none", rate_limit_per_second=5))
    await harness.dispatch(event(*[kinesis_record(i, {}) for i in range(10)]))
    # The first five go at once (the burst); the next five wait for tokens at 5 per second. The waits are
    # reserved within milliseconds of each other, so each is a fifth of a second longer than the last.
    assert sorted(harness.sleeps) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0], abs=0.1)


async def test_malformed_signing_secret_fails_the_invocation_before_sending(harness: Harness) -> None:
    harness.secret.value = "not-a-webhook-secret"
    with pytest.raises(SigningSecretError):
        await harness.dispatch(event(kinesis_record(1, {})))
    assert harness.endpoint.requests == []


async def test_secret_is_parsed_again_only_when_it_changes(harness: Harness) -> None:
    keys = harness.dispatcher.signing_keys()
    assert harness.dispatcher.signing_keys() is keys
    harness.secret.value = SECRET + " " + SECRET.replace("a", "b")
    assert harness.dispatcher.signing_keys() is not keys
