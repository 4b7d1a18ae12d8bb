"""Timestamps as the endpoint contract, parked messages and Lambda's own documents write them: RFC 3339 in UTC
with milliseconds and a `Z` (2024-05-01T12:00:00.123Z)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    # In UTC, isoformat always ends in "+00:00" (slicing it off took half the time replace() did).
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def rfc3339_from_epoch_seconds(epoch_seconds: float) -> str:
    return rfc3339(datetime.fromtimestamp(epoch_seconds, UTC))
