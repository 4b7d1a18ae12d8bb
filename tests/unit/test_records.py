from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dispatcher.records import SourceKind, UnsupportedEventError, header_safe, parse_event
from tests.events import SHARD, STREAM, event, kinesis_record, sequence_number, sqs_record


def test_kinesis_record_is_decoded_with_its_position() -> None:
    # Given a Kinesis event whose payload has no id of its own
    batch = parse_event(event(kinesis_record(7, {"type": "order.created"}, partition_key="customer-9")))
    # Then the payload is the base64-decoded data and the webhook-id is derived from the position
    (record,) = batch.records
    assert batch.kind is SourceKind.KINESIS
    assert record.payload == b'{"type": "order.created"}'
    assert record.is_json
    assert record.webhook_id == f"{STREAM}:{sequence_number(7)}"
    assert (record.item_identifier, record.sequence_number) == (sequence_number(7), sequence_number(7))
    assert (record.partition_key, record.shard_id, record.source_name) == ("customer-9", SHARD, STREAM)
    assert record.produced_at == datetime.fromtimestamp(1_700_000_007.5, tz=UTC)


def test_payload_id_wins_over_the_position() -> None:
    batch = parse_event(event(kinesis_record(1, {"id": "evt_123", "type": "x"})))
    assert batch.records[0].webhook_id == "evt_123"


@pytest.mark.parametrize("payload", [{"id": ""}, {"id": 42}, ["id", "evt"], "evt_123", b"\xff\xfe binary"])
def test_payload_without_a_usable_string_id_falls_back_to_the_position(payload: object) -> None:
    batch = parse_event(event(kinesis_record(3, payload)))
    assert batch.records[0].webhook_id == f"{STREAM}:{sequence_number(3)}"


def test_empty_kinesis_record_is_a_valid_empty_payload() -> None:
    batch = parse_event(event(kinesis_record(1, b"")))
    assert batch.records[0].payload == b""
    assert not batch.records[0].is_json
    assert batch.records[0].unreadable_reason is None


def test_non_json_payload_is_octet_stream() -> None:
    batch = parse_event(event(kinesis_record(1, b"\x00\x01 not json")))
    assert not batch.records[0].is_json
    assert batch.records[0].payload == b"\x00\x01 not json"


def test_invalid_base64_is_kept_raw_and_marked_unreadable() -> None:
    # Given a record whose data is not base64
    batch = parse_event(event(kinesis_record(1, None, raw_data="not*base64!")))
    # Then it does not crash the batch: the record carries the raw field and the reason
    record = batch.records[0]
    assert record.unreadable_reason is not None
    assert "not valid base64" in record.unreadable_reason
    assert record.payload == b"not*base64!"


BASE64_AND_NEAR_MISSES = st.text(st.sampled_from("ABCXYZabcxyz0189+/= \n-_é"), max_size=16)


@given(BASE64_AND_NEAR_MISSES)
@example("==")  # padding alone
@example("YQ=")  # too little padding
@example("YQ==YQ==")  # padding in the middle
@example("YR==")  # non-zero bits after the last digit
def test_kinesis_data_is_base64_exactly_as_b64decode_with_validation_reads_it(data: str) -> None:
    # Given any data field, valid base64 or nearly
    try:
        expected = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        expected = None
    # When the record is parsed
    (record,) = parse_event(event(kinesis_record(1, None, raw_data=data))).records
    # Then the payload is what the standard library's validating decoder reads, or the record is unreadable
    if expected is None:
        assert record.unreadable_reason is not None
        assert "not valid base64" in record.unreadable_reason
    else:
        assert (record.payload, record.unreadable_reason) == (expected, None)


def test_sqs_standard_record_uses_the_message_id() -> None:
    batch = parse_event(event(sqs_record("m-1", {"amount": 3}, receive_count=2)))
    (record,) = batch.records
    assert batch.kind is SourceKind.SQS
    assert record.webhook_id == "m-1"
    assert (record.partition_key, record.sequence_number, record.receive_count) == (None, None, 2)
    assert record.produced_at == datetime.fromtimestamp(1_700_000_000.123, tz=UTC)


def test_sqs_fifo_record_uses_queue_and_deduplication_id() -> None:
    batch = parse_event(event(sqs_record("m-1", {"a": 1}, queue="jobs.fifo", group="g-1", position=5, dedup_id="d-9")))
    (record,) = batch.records
    assert batch.kind is SourceKind.SQS_FIFO
    assert batch.ordered_by_source
    assert record.webhook_id == "jobs.fifo:d-9"
    assert record.partition_key == "g-1"
    assert record.source_fields()["message_group_id"] == "g-1"
    assert record.source_fields()["message_deduplication_id"] == "d-9"


def test_payload_id_that_is_not_a_header_value_is_percent_encoded() -> None:
    batch = parse_event(event(kinesis_record(1, {"id": "evt\r\nX-Injected: 1"})))
    assert batch.records[0].webhook_id == "evt%0D%0AX-Injected%3A%201"


@pytest.mark.parametrize(
    ("bad_event", "message"),
    [
        ({}, "no 'Records' list"),
        ({"Records": []}, "empty 'Records' list"),
        ({"Records": [{"eventSource": "aws:dynamodb"}]}, "unsupported eventSource"),
        ({"detail-type": "Scheduled Event"}, "not a Kinesis or SQS batch"),
        ({"Records": [{"eventSource": "aws:kinesis", "kinesis": {}}]}, "'sequenceNumber' is missing"),
    ],
)
def test_event_that_is_not_kinesis_or_sqs_raises_a_clear_error(bad_event: dict[str, object], message: str) -> None:
    with pytest.raises(UnsupportedEventError, match=message):
        parse_event(bad_event)


def test_event_mixing_sources_is_refused() -> None:
    with pytest.raises(UnsupportedEventError, match="several sources"):
        parse_event(event(kinesis_record(1, {}), kinesis_record(2, {}, stream="other")))


def test_header_safe_keeps_visible_ascii_and_encodes_the_rest() -> None:
    assert header_safe("customer-42") == "customer-42"
    assert header_safe("kunde ü") == "kunde%20%C3%BC"


@pytest.mark.adversarial
@given(st.text(st.characters(max_codepoint=0x7F)) | st.text(st.characters(codec=None)))
@example(" ")  # the edges of the kept range, one by one
@example("!")
@example("$")
@example("%")
@example("&")
@example("~")
@example("\x7f")
def test_header_safe_keeps_a_value_exactly_when_every_character_is_visible_ascii_but_percent(value: str) -> None:
    # Given any text (the kept set spelt character by character, as RFC 9110's VCHAR less "%")
    kept_characters = {chr(code) for code in range(0x21, 0x7F)} - {"%"}
    # Then the value is its own header value exactly when it is made only of those
    assert (header_safe(value) == value) == (set(value) <= kept_characters)
