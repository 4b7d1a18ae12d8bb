"""Replays say what they are (issue 13): a record the redrive engine marked (records.REDRIVE_FIELD) reaches the
endpoint with a `dispatch-redrive` header, the RFC 3339 time of the redrive; nothing else has that header, and a
mark that is not a time as the engine writes it is ignored without failing the record."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from dispatcher.records import REDRIVE_FIELD, parse_event
from dispatcher.timestamps import rfc3339
from tests.events import event, kinesis_record, sequence_number, sqs_record
from tests.fakes import SECRET
from tests.unit.conftest import Harness, failed_ids, subscription

REDRIVEN_AT = "2026-11-27T14:05:09.250Z"


def written_by_the_engine(mark: str) -> bool:
    """Whether `timestamps.rfc3339` writes `mark` for some time (read back another way than the function does)."""
    try:
        return rfc3339(datetime.fromisoformat(mark)) == mark
    except ValueError:
        return False


def marked(record: dict[str, Any], value: object = REDRIVEN_AT) -> dict[str, Any]:
    return record | {REDRIVE_FIELD: value}


@pytest.mark.parametrize(
    "record",
    [
        kinesis_record(1, {"id": "evt-1"}),
        sqs_record("m-1", {"id": "evt-1"}),
        sqs_record("m-1", {"id": "evt-1"}, queue="jobs.fifo", group="g", position=1),
    ],
    ids=["kinesis", "sqs", "sqs-fifo"],
)
def test_a_marked_record_keeps_the_time_of_its_redrive(record: dict[str, Any]) -> None:
    # Given a record the redrive engine marked, and the same record as the source sends it
    (redriven,) = parse_event(event(marked(record))).records
    (first_time,) = parse_event(event(record)).records
    # Then the marked one carries the redrive time, the other none, and nothing else differs
    assert redriven.redriven_at == datetime(2026, 11, 27, 14, 5, 9, 250_000, tzinfo=UTC)
    assert first_time.redriven_at is None
    assert (redriven.webhook_id, redriven.sequence_number) == (first_time.webhook_id, first_time.sequence_number)


async def test_a_redriven_delivery_says_so_beside_its_original_id_and_sequence(harness: Harness) -> None:
    # Given a Kinesis record marked by a redrive, in a batch with one that is not
    batch = event(marked(kinesis_record(1, {"id": "evt-1"}, "k-1")), kinesis_record(2, {"id": "evt-2"}, "k-2"))
    # When the batch is dispatched
    report = await harness.dispatch(batch)
    # Then the redriven one carries dispatch-redrive with its original webhook-id and dispatch-sequence, and still
    # verifies as a Standard Webhook; the other has no such header
    assert failed_ids(report) == []
    posted = {request.headers["webhook-id"]: request for request in harness.endpoint.requests}
    redriven, first_time = posted["evt-1"], posted["evt-2"]
    assert redriven.headers["dispatch-redrive"] == REDRIVEN_AT
    assert redriven.headers["dispatch-sequence"] == sequence_number(1)
    assert Webhook(SECRET).verify(redriven.body, redriven.headers) == {"id": "evt-1"}
    assert "dispatch-redrive" not in first_time.headers


@pytest.mark.parametrize(
    "hostile",
    [
        "2026-11-27T14:05:09Z",  # no milliseconds
        "2026-11-27T14:05:09.250+00:00",  # an offset, not Z
        "2026-11-27T14:05:09.250123Z",  # microseconds
        "2026-11-27 14:05:09.250Z",
        "2026-13-27T14:05:09.250Z",  # no month 13
        "٢٠٢٦-11-27T14:05:09.250Z",  # Arabic-Indic digits: strptime would take them
        "2026-11-27T14:05:09.250Z\r\nX-Injected: 1",
        "yesterday",
        "",
        1_764_252_309,
        None,
        True,
        ["2026-11-27T14:05:09.250Z"],
        {"at": "2026-11-27T14:05:09.250Z"},
    ],
    ids=repr,
)
async def test_a_mark_that_is_not_a_time_as_the_engine_writes_it_is_ignored(harness: Harness, hostile: object) -> None:
    # Given an SQS record whose redrive mark is anything but a time as the engine writes it
    # When it is dispatched
    report = await harness.dispatch(event(marked(sqs_record("m-1", {"id": "evt-1"}), hostile)))
    # Then it is delivered as any other record, without a dispatch-redrive header
    assert failed_ids(report) == []
    (request,) = harness.endpoint.requests
    assert request.headers["webhook-id"] == "evt-1"
    assert "dispatch-redrive" not in request.headers


@pytest.mark.adversarial
@given(mark=st.one_of(st.datetimes(timezones=st.just(UTC)).map(rfc3339), st.text(st.characters(codec=None))))
def test_any_mark_is_sent_exactly_as_the_engine_writes_it_or_not_at_all(mark: str) -> None:
    # Given a record marked with any text, a time as the engine writes it included
    harness = Harness(subscription())
    # When it is dispatched
    report = asyncio.run(harness.dispatch(event(marked(kinesis_record(1, {"id": "evt-1"}), mark))))
    # Then it is delivered, with the mark as its dispatch-redrive header only when the engine could have written it
    assert failed_ids(report) == []
    (request,) = harness.endpoint.requests
    assert request.headers.get("dispatch-redrive") == (mark if written_by_the_engine(mark) else None)
