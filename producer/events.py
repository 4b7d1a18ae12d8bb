"""Turning the caller's events into bytes, and reading a key (partition key, message group) out of them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# A mapping is serialised as compact JSON; text and bytes are sent exactly as given (already-encoded JSON).
Event = Mapping[str, Any] | str | bytes

FIELD_PATH_SEPARATOR = "."  # "customer.id" reads event["customer"]["id"]


class EventError(ValueError):
    """One event cannot be encoded or lacks the key it should carry; the message is the reason."""


def encode_event(event: Event) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode("utf-8")
    try:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise EventError(f"is not JSON-serialisable: {error}") from None


def event_text(event: Event) -> str:
    """The event as text: SQS message bodies are strings."""
    data = encode_event(event)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EventError("is not UTF-8 text, which an SQS message body must be") from None


def key_from_field(event: Event, field_path: str) -> str:
    """The string or integer at `field_path` of a JSON object event, as text."""
    document: Any = event
    if isinstance(event, str | bytes):
        try:
            document = json.loads(event)
        except ValueError as error:
            raise EventError(f"is not JSON, so it has no field {field_path!r}: {error}") from None
    for part in field_path.split(FIELD_PATH_SEPARATOR):
        if not isinstance(document, Mapping) or part not in document:
            raise EventError(f"has no field {field_path!r}")
        document = document[part]
    # bool is an int subclass, but `true` as a key is almost certainly the wrong field.
    if isinstance(document, bool) or not isinstance(document, str | int):
        raise EventError(f"field {field_path!r} is {json.dumps(document)}, not a string or an integer")
    key = str(document)
    if not key:
        raise EventError(f"field {field_path!r} is an empty string")
    return key
