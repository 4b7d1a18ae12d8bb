"""Property: for any mix of per-record outcomes and partition keys, the reported failures are exactly
the records the rules require (issue sections 5 and 6), and a re-send never re-POSTs what was delivered."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.events import event, kinesis_record, sequence_number, sqs_record
from tests.fakes import Answer, transport_failure
from tests.unit.conftest import FAST, Harness, failed_ids, subscription

MAX_ATTEMPTS = 3
# What one record meets: delivered, delivered after transient failures, parked, or never delivered.
BEHAVIOURS = ("ok", "flaky", "permanent", "unreadable", "down")
SOURCES = ("kinesis", "sqs", "sqs-fifo")


def script(behaviour: str) -> list[Answer]:
    scripts: dict[str, list[Answer]] = {
        "ok": [200],
        "flaky": [503, transport_failure(), 200],
        "permanent": [404],
        "unreadable": [],
        "down": [500] * MAX_ATTEMPTS,
    }
    return scripts[behaviour]


def build_record(source: str, position: int, key: str, behaviour: str) -> dict[str, Any]:
    payload = {"position": position}
    if source == "kinesis":
        raw = "!!not base64!!" if behaviour == "unreadable" else None
        return kinesis_record(position, payload, partition_key=key, raw_data=raw)
    if source == "sqs-fifo":
        return sqs_record(f"m-{position}", payload, queue="jobs.fifo", group=key, position=position)
    return sqs_record(f"m-{position}", payload)


def expected_failures(source: str, ordering: str, cases: list[tuple[str, str]]) -> list[int]:
    """The reference model: positions that must be reported."""
    ordered = source == "sqs-fifo" or (source == "kinesis" and ordering == "partition-key")
    blocked: set[str] = set()
    failures = []
    for position, (key, behaviour) in enumerate(cases):
        lane = key if ordered else str(position)
        if lane in blocked or behaviour == "down":
            failures.append(position)
            blocked.add(lane)
    return failures


def identifier(source: str, position: int) -> str:
    return sequence_number(position) if source == "kinesis" else f"m-{position}"


cases_strategy = st.lists(
    st.tuples(st.sampled_from(["A", "B", "C"]), st.sampled_from(BEHAVIOURS)), min_size=1, max_size=25
)


@settings(max_examples=150, deadline=None)
@given(
    source=st.sampled_from(SOURCES),
    ordering=st.sampled_from(["partition-key", "none"]),
    cases=cases_strategy,
)
def test_reported_failures_are_exactly_what_the_rules_require(
    source: str, ordering: str, cases: list[tuple[str, str]]
) -> None:
    if source != "kinesis":  # SQS records carry no unreadable form
        cases = [(key, "ok" if behaviour == "unreadable" else behaviour) for key, behaviour in cases]
    # Given any mix of outcomes, keys and sources (the breaker is tested on its own)
    harness = Harness(
        subscription(ordering=ordering, max_attempts=MAX_ATTEMPTS), replace(FAST, breaker_threshold=10**6)
    )
    records = [build_record(source, position, key, behaviour) for position, (key, behaviour) in enumerate(cases)]
    batch_ids = {identifier(source, position) for position in range(len(cases))}
    for position, (_, behaviour) in enumerate(cases):
        harness.endpoint.answers[_webhook_id(source, position)] = script(behaviour)
    # When the batch is dispatched
    report = asyncio.run(harness.dispatch(event(*records)))
    # Then exactly the required records are reported, each once, all from this batch
    reported = failed_ids(report)
    assert reported == [identifier(source, p) for p in expected_failures(source, ordering, cases)]
    assert len(reported) == len(set(reported))
    assert set(reported) <= batch_ids
    assert all(reported)
    # And parked records are exactly the permanent and unreadable ones, each with its payload
    parked = {message["item_identifier"] for message in harness.parked_records.messages}
    assert parked == {
        identifier(source, p) for p, (_, b) in enumerate(cases) if b in ("permanent", "unreadable")
    } - set(reported)


def _webhook_id(source: str, position: int) -> str:
    if source == "kinesis":
        return f"orders:{sequence_number(position)}"
    if source == "sqs-fifo":
        return f"jobs.fifo:dedup-m-{position}"
    return f"m-{position}"


@settings(max_examples=100, deadline=None)
@given(cases=cases_strategy, ordering=st.sampled_from(["partition-key", "none"]))
def test_kinesis_resend_from_the_checkpoint_posts_nothing_twice(cases: list[tuple[str, str]], ordering: str) -> None:
    # Given a Kinesis batch with any mix of outcomes
    harness = Harness(
        subscription(ordering=ordering, max_attempts=MAX_ATTEMPTS), replace(FAST, breaker_threshold=10**6)
    )
    records = [build_record("kinesis", p, key, behaviour) for p, (key, behaviour) in enumerate(cases)]
    for position, (_, behaviour) in enumerate(cases):
        harness.endpoint.answers[_webhook_id("kinesis", position)] = script(behaviour)
    first = asyncio.run(harness.dispatch(event(*records)))
    reported = failed_ids(first)
    if not reported:
        return
    # When Lambda re-sends from the lowest reported sequence number on, and the endpoint has recovered
    checkpoint = min(int(sequence) for sequence in reported)
    resent_records = [r for r in records if int(r["kinesis"]["sequenceNumber"]) >= checkpoint]
    harness.endpoint.answers.clear()
    harness.endpoint.requests.clear()
    second = asyncio.run(harness.dispatch(event(*resent_records)))
    # Then nothing delivered or parked the first time is POSTed again, every reported record that
    # can be delivered is, and nothing is reported any more
    reported_positions = {int(sequence) - int(sequence_number(0)) for sequence in reported}
    resent_posts = {request.headers["webhook-id"] for request in harness.endpoint.requests}
    finished_first = {_webhook_id("kinesis", p) for p in range(len(cases)) if p not in reported_positions}
    deliverable = {_webhook_id("kinesis", p) for p in reported_positions if cases[p][1] != "unreadable"}
    assert not resent_posts & finished_first
    assert resent_posts == deliverable
    assert failed_ids(second) == []
