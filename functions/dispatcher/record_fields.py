"""Readers of the fields of a Kinesis or SQS record that must not fail the record.

Whatever the source wrote (a missing attribute, a sequence number that is not a decimal, a time out of range,
a redrive mark spelt otherwise than this function writes it), each reader answers with None, the epoch or a
problem noted for the parking reason: a record is delivered or parked with the reason, never crashes its batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dispatcher.timestamps import rfc3339

# Kinesis and FIFO sequence numbers are decimal strings; the Kinesis API's pattern allows up to 129 digits
# (`0|([1-9]\d{0,128})`; today's are 56).
MAX_SEQUENCE_DIGITS = 129
MAX_SHOWN_CHARACTERS = 80  # of a malformed field's value quoted in a parking reason
RFC3339_AS_WRITTEN = "%Y-%m-%dT%H:%M:%S.%fZ"  # `timestamps.rfc3339`'s form, read back


def text_attribute(attributes: Mapping[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    return value if isinstance(value, str) and value else None


def ascii_decimal(text: str | None) -> int | None:
    """ASCII digits only: int() would also take '+1', ' 1', '1_0' and other scripts' digits."""
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def sequence_ordinal(name: str, sequence_number: str, problems: list[str]) -> int | None:
    """The sequence number as an integer; None, with the problem noted, when it is not a decimal one."""
    number = ascii_decimal(sequence_number) if len(sequence_number) <= MAX_SEQUENCE_DIGITS else None
    if number is None:
        problems.append(f"{name} {shown(sequence_number)} is not a decimal of at most {MAX_SEQUENCE_DIGITS} digits")
    return number


def epoch_time(value: object, scale: int) -> datetime:
    """`value / scale` seconds since the epoch; the epoch itself when the source wrote no usable time
    (the time only labels the record, so a bad one must not keep it from being delivered)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a tuple: faster than int | float
        try:
            return datetime.fromtimestamp(value / scale, tz=UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return datetime.fromtimestamp(0, tz=UTC)


def redrive_time(value: object) -> datetime | None:
    """The redrive time when `value` is one exactly as `timestamps.rfc3339` writes it; anything else is ignored
    (the mark only labels the delivery, so a bad one must not keep the record from being delivered)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.strptime(value, RFC3339_AS_WRITTEN).replace(tzinfo=UTC)
    except ValueError:
        return None
    # strptime also takes other scripts' digits, fewer digits and more fraction: only our own spelling counts.
    return moment if rfc3339(moment) == value else None


def utf8(text: str) -> bytes:
    """The text's bytes; lone surrogates (which JSON escapes can carry) are kept, not refused."""
    return text.encode("utf-8", "surrogatepass")


def kind_of(value: object) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def shown(text: str) -> str:
    """`text` as a reason quotes it: repr'd, cut at MAX_SHOWN_CHARACTERS."""
    quoted = repr(text[:MAX_SHOWN_CHARACTERS])
    return quoted if len(text) <= MAX_SHOWN_CHARACTERS else f"{quoted}..."
