"""Hostile and careless records (issue 8): one record never fails its batch, webhook-ids never collide,
header values are always encodable, and logs never carry message attribute values.

The properties run bounded under `make test` and for much longer under `make fuzz` (marker
`adversarial`, Hypothesis profile `fuzz`)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import UTC
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.outcomes import Outcome
from dispatcher.records import REDRIVE_FIELD, header_safe, parse_event
from dispatcher.timestamps import rfc3339
from tests.events import STREAM, event, kinesis_record, sequence_number, sqs_record
from tests.unit.conftest import Harness, failed_ids, subscription

DEEP_JSON = b"[" * 1_000 + b"]" * 1_000
DEEP_OBJECT = b'{"a":' * 1_000 + b"1" + b"}" * 1_000
HUGE_INTEGER = b'{"id": "evt-huge", "amount": ' + b"9" * 5_000 + b"}"
HOSTILE_TEXT = "evt\r\nX-Injected: 1 \x00 ü \u2028 %41"


def header_values_are_sendable(headers: dict[str, str]) -> bool:
    """What every HTTP client accepts: visible ASCII and spaces, no CR, LF or NUL."""
    return all(all(" " <= character <= "~" for character in value) for value in headers.values())


# --- One record never fails its batch (item 4) -----------------------------------------------------


@pytest.mark.parametrize(
    "hostile_payload",
    [DEEP_JSON, DEEP_OBJECT, HUGE_INTEGER, b'{"id": NaN}', b'{"id": "\\ud800"}', b"\xc3\x28 invalid utf-8"],
    ids=["nested-1000-arrays", "nested-1000-objects", "5000-digit-integer", "nan", "lone-surrogate-id", "bad-utf8"],
)
async def test_unreadable_json_is_delivered_as_bytes_beside_the_healthy_records(
    harness: Harness, hostile_payload: bytes
) -> None:
    # Given a batch whose middle record is JSON this function cannot read
    batch = event(
        kinesis_record(0, {"id": "evt-0"}),
        kinesis_record(1, hostile_payload),
        kinesis_record(2, {"id": "evt-2"}),
    )
    # When it is dispatched
    report = await harness.dispatch(batch)
    # Then all three are delivered; the hostile one unchanged, as bytes, under a header-safe id
    assert failed_ids(report) == []
    posted = {request.headers["webhook-id"]: request for request in harness.endpoint.requests}
    assert set(posted) >= {"evt-0", "evt-2"}
    (hostile,) = [request for webhook_id, request in posted.items() if webhook_id not in ("evt-0", "evt-2")]
    assert hostile.body == hostile_payload
    assert header_values_are_sendable(hostile.headers)
    if hostile_payload != b'{"id": "\\ud800"}':  # the only one whose JSON is valid: its own id, encoded
        assert hostile.headers["Content-Type"] == "application/octet-stream"
        assert hostile.headers["webhook-id"] == f"{STREAM}:{sequence_number(1)}"


async def test_header_hostile_source_fields_are_encoded_not_rejected(harness: Harness) -> None:
    # Given an SQS FIFO record whose queue ARN, message id and deduplication id carry CR/LF and non-ASCII
    record = sqs_record("m\r\n-ü", {"amount": 1}, queue="jobs\r\nX 1ü.fifo", group="g\r\n1", position=1)
    record["attributes"]["MessageDeduplicationId"] = "dedup\r\nü"
    # When it is dispatched
    report = await harness.dispatch(event(record))
    # Then it is delivered with every header value sendable, and reported nowhere
    assert failed_ids(report) == []
    (request,) = harness.endpoint.requests
    assert header_values_are_sendable(request.headers)
    assert request.headers["webhook-id"] == header_safe("jobs\r\nX 1ü.fifo:dedup\r\nü")
    assert request.headers["dispatch-source"] == header_safe("jobs\r\nX 1ü.fifo")


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ({"sequenceNumber": "not-a-number"}, "sequenceNumber 'not-a-number' is not a decimal"),
        ({"sequenceNumber": "1" * 200}, "is not a decimal of at most 129 digits"),
        ({"data": None}, "'data' is missing, not a base64 string"),
        ({"data": 42}, "'data' is a int, not a base64 string"),
        ({"partitionKey": ["a"]}, "'partitionKey' is a list, not a string"),
    ],
)
async def test_malformed_kinesis_record_is_parked_and_the_batch_goes_on(
    harness: Harness, broken: dict[str, Any], reason: str
) -> None:
    # Given a batch whose first record has a malformed field
    record = kinesis_record(0, {"id": "evt-0"})
    record["kinesis"] |= broken
    batch = event(record, kinesis_record(1, {"id": "evt-1"}, partition_key="pk-1"))
    # When it is dispatched
    report = await harness.dispatch(batch)
    # Then the malformed record is parked with a reason naming the field, and the other is delivered
    assert failed_ids(report) == []
    (parked,) = harness.parked_records.messages
    assert reason in parked["reason"]
    assert harness.endpoint.ids_posted() == ["evt-1"]


@pytest.mark.parametrize("timestamp", [float("nan"), float("inf"), 1e300, -1e300, "yesterday", None, True], ids=repr)
async def test_absurd_arrival_time_labels_the_record_but_does_not_stop_it(harness: Harness, timestamp: object) -> None:
    # Given a record whose approximateArrivalTimestamp is no usable time
    record = kinesis_record(0, {"id": "evt-0"})
    record["kinesis"]["approximateArrivalTimestamp"] = timestamp
    # When it is dispatched
    report = await harness.dispatch(event(record))
    # Then it is delivered, labelled with the epoch
    assert failed_ids(report) == []
    (request,) = harness.endpoint.requests
    assert request.headers["dispatch-produced-at"] == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"MessageGroupId": None}, "no MessageGroupId"),
        ({"SequenceNumber": "1e5"}, "SequenceNumber '1e5' is not a decimal"),
        ({"SequenceNumber": "١٢٣"}, "is not a decimal"),  # Arabic-Indic digits: int() would take them
    ],
)
async def test_malformed_fifo_record_is_parked(harness: Harness, attributes: dict[str, Any], reason: str) -> None:
    record = sqs_record("m-1", {"a": 1}, queue="jobs.fifo", group="g", position=1)
    record["attributes"] |= attributes
    report = await harness.dispatch(event(record, sqs_record("m-2", {"a": 2}, queue="jobs.fifo", group="h")))
    assert failed_ids(report) == []
    (parked,) = harness.parked_records.messages
    assert reason in parked["reason"]
    assert len(harness.endpoint.requests) == 1


async def test_unreadable_receive_count_is_looked_up_as_a_possible_resend(harness: Harness) -> None:
    # Given an SQS message whose ApproximateReceiveCount is not a number, and an entry saying it was delivered
    record = sqs_record("m-1", {"a": 1})
    record["attributes"]["ApproximateReceiveCount"] = "many"
    harness.delivered_ids.entries["orders-to-ledger#sqs#billing-callbacks#m-1"] = frozenset({"m-1"})
    # When it is dispatched
    report = await harness.dispatch(event(record))
    # Then the entry is found and nothing is POSTed twice
    assert failed_ids(report) == []
    assert harness.endpoint.requests == []


async def test_an_unforeseen_error_in_one_record_fails_only_that_record(harness: Harness) -> None:
    # Given an endpoint whose client raises something no one planned for on one record
    def explode(request: Any) -> None:
        if request.headers["webhook-id"] == "evt-1":
            raise UnicodeEncodeError("ascii", "ü", 0, 1, "a header the client refused")

    harness.endpoint.on_request = explode
    # When a batch of three is dispatched
    report = await harness.dispatch(event(*(kinesis_record(p, {"id": f"evt-{p}"}, f"pk-{p}") for p in range(3))))
    # Then that record alone is reported, and the others are delivered
    assert failed_ids(report) == [sequence_number(1)]
    assert sorted(harness.endpoint.ids_posted()) == ["evt-0", "evt-1", "evt-2"]


# --- Ids never collide (item 6) ---------------------------------------------------------------------


async def test_ids_that_percent_encode_alike_are_two_events(harness: Harness) -> None:
    # Given two records whose ids were equal under the old encoding ("a b" -> "a%20b")
    batch = event(kinesis_record(0, {"id": "a b"}, "k-0"), kinesis_record(1, {"id": "a%20b"}, "k-1"))
    # When they are dispatched
    report = await harness.dispatch(batch)
    # Then both are POSTed, each under its own webhook-id
    assert failed_ids(report) == []
    assert sorted(harness.endpoint.ids_posted()) == ["a%20b", "a%2520b"]


@pytest.mark.adversarial
@given(st.text(st.characters(codec=None)))
def test_webhook_id_encoding_is_injective_and_always_a_header_value(own_id: str) -> None:
    # Any id (lone surrogates included) encodes to a sendable header value that decodes back to it alone:
    # an encoding with an inverse never gives two ids one value
    encoded = header_safe(own_id)
    assert header_values_are_sendable({"webhook-id": encoded})
    assert unquote(encoded, errors="surrogatepass") == own_id
    # And the encoding of an id that needed one is not taken as an id of its own: it is encoded again
    assert encoded == own_id or header_safe(encoded) != encoded


@pytest.mark.adversarial
@given(st.lists(st.text(st.characters(codec=None), min_size=1), min_size=2, max_size=8, unique=True))
def test_distinct_payload_ids_in_one_batch_are_all_posted(ids: list[str]) -> None:
    harness = Harness(subscription(ordering="none"))
    records = [kinesis_record(p, json.dumps({"id": own_id}).encode(), f"k-{p}") for p, own_id in enumerate(ids)]
    report = asyncio.run(harness.dispatch(event(*records)))
    assert failed_ids(report) == []
    assert len(set(harness.endpoint.ids_posted())) == len(ids)


# --- Nothing secret in the logs (item 7) ------------------------------------------------------------


async def test_message_attribute_values_never_reach_the_logs(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Given SQS messages with a secret in a message attribute: one the endpoint refuses, one it cannot take now
    secret = "sk_live_attribute_value"
    attributes = {"api-key": {"stringValue": secret, "dataType": "String"}}
    refused, failing = sqs_record("m-1", {"id": "evt-1"}), sqs_record("m-2", {"id": "evt-2"})
    refused["messageAttributes"] = failing["messageAttributes"] = attributes
    harness.endpoint.answers = {"evt-1": [410], "evt-2": [503, 503, 503]}
    # When they are dispatched
    with caplog.at_level(logging.DEBUG):
        report = await harness.dispatch(event(refused, failing))
    # Then the park and retry warnings name the attribute, never its value; the parked message keeps it
    assert failed_ids(report) == ["m-2"]
    logged = [record.__dict__.get("source_position") for record in caplog.records]
    assert {"message_attribute_names": ["api-key"]}.items() <= next(p for p in logged if p).items()
    assert secret not in caplog.text
    assert all(secret not in repr(position) for position in logged)
    assert harness.parked_records.messages[0]["source"]["message_attributes"] == attributes


# --- The standing property: any Kinesis- or SQS-shaped event --------------------------------------

unicode_text = st.text(st.characters(codec=None), max_size=40)
hostile_json = st.one_of(
    # Deeper than any recursion limit: Hypothesis raises the limit while a test runs, Lambda does not.
    st.integers(900, 20_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(4_301, 6_000).map(lambda digits: '{"n": ' + "9" * digits + "}"),
    st.sampled_from(['{"id": NaN}', '{"id": "\\udfff"}', '{"id": 1e999}', '{"id": ""}', "\ufeff{}", "{"]),
    unicode_text.map(lambda own_id: json.dumps({"id": own_id})),
    st.recursive(
        st.none() | st.booleans() | st.floats() | unicode_text,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(unicode_text, children, max_size=3),
        max_leaves=10,
    ).map(json.dumps),
)
any_json_value = st.none() | st.booleans() | st.integers() | st.floats() | unicode_text | st.lists(st.integers())
field_value = st.one_of(unicode_text, any_json_value)
# The redrive engine's mark: absent (as Lambda sends records), a time as the engine writes it, or anything else.
redrive_marks: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {}, optional={REDRIVE_FIELD: st.one_of(st.datetimes(timezones=st.just(UTC)).map(rfc3339), field_value)}
)


@st.composite
def kinesis_events(draw: st.DrawFn) -> dict[str, Any]:
    arn = draw(st.one_of(st.just(f"arn:aws:kinesis:eu-west-1:1:stream/{STREAM}"), unicode_text.filter(bool)))
    count = draw(st.integers(1, 8))
    records = []
    for position in range(count):
        data = draw(
            st.one_of(
                hostile_json.map(lambda text: base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()),
                st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode()),
                field_value,
            )
        )
        sequence = draw(st.one_of(st.just(sequence_number(position)), unicode_text.filter(bool)))
        records.append(
            {
                "kinesis": {
                    "partitionKey": draw(st.one_of(st.sampled_from(["k-1", "k-2"]), field_value)),
                    "sequenceNumber": sequence,
                    "data": data,
                    "approximateArrivalTimestamp": draw(st.one_of(st.floats(), st.integers(), field_value)),
                },
                "eventSource": "aws:kinesis",
                "eventID": draw(field_value),
                "eventSourceARN": arn,
            }
            | draw(redrive_marks)
        )
    return event(*records)


@st.composite
def sqs_events(draw: st.DrawFn) -> dict[str, Any]:
    queue = draw(st.one_of(st.sampled_from(["jobs", "jobs.fifo"]), unicode_text.map(lambda name: name + ".fifo")))
    arn = f"arn:aws:sqs:eu-west-1:1:{queue}"
    records = []
    for _ in range(draw(st.integers(1, 8))):
        attribute_names = ["ApproximateReceiveCount", "SentTimestamp", "MessageGroupId", "SequenceNumber"]
        attributes = draw(
            st.one_of(
                st.fixed_dictionaries({}, optional={name: field_value for name in attribute_names}),
                any_json_value,
            )
        )
        records.append(
            {
                "messageId": draw(unicode_text.filter(bool)),
                "body": draw(st.one_of(hostile_json, field_value)),
                "attributes": attributes,
                "messageAttributes": draw(st.dictionaries(unicode_text, field_value, max_size=2)),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
            }
            | draw(redrive_marks)
        )
    return event(*records)


@pytest.mark.adversarial
@given(any_event=st.one_of(kinesis_events(), sqs_events()), ordering=st.sampled_from(["partition-key", "none"]))
def test_any_shaped_event_returns_and_accounts_for_every_record(any_event: dict[str, Any], ordering: str) -> None:
    # Given any Kinesis- or SQS-shaped event, whatever its fields contain
    harness = Harness(subscription(ordering=ordering))
    # When it is dispatched (nothing may raise)
    report = asyncio.run(harness.dispatch(any_event))
    # Then every record is delivered, parked or reported, and every header sent is a valid header value
    posted = {request.headers["webhook-id"]: request.body for request in harness.endpoint.requests}
    parked = {(message["item_identifier"], message["webhook_id"]) for message in harness.parked_records.messages}
    reported = set(failed_ids(report))
    for record, result in zip(report.batch.records, report.results, strict=True):
        if result.outcome is Outcome.DELIVERED:
            assert posted[record.webhook_id] == record.payload
        elif result.outcome is Outcome.PARKED:
            assert (record.item_identifier, record.webhook_id) in parked
        elif result.outcome is Outcome.FAILED:
            assert record.item_identifier in reported
        else:  # a second record with the id of one delivered in this batch
            assert record.webhook_id in posted
    assert all(header_values_are_sendable(request.headers) for request in harness.endpoint.requests)
    assert reported <= {record.item_identifier for record in parse_event(any_event).records}
