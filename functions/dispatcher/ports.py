"""The small ports the delivery logic talks through. Adapters implement them for AWS and aiohttp;
tests implement them in memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    retry_after: str | None = None  # the raw Retry-After header, seconds or an HTTP date


class TransportError(Exception):
    """The request got no HTTP response: timeout, refused or reset connection, TLS failure. Transient."""


class HttpSender(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_seconds: float) -> HttpResponse:
        """POST once, without following redirects. Raises TransportError, or
        guard.EndpointRefusedError when the SSRF guard refuses the endpoint: a refused form of the URL,
        a refused address literal, or only refused addresses among those it resolves to."""
        ...

    async def close(self) -> None: ...


class DeliveredIds(Protocol):
    """Entries naming the records already delivered or parked, keyed by what Lambda will re-send."""

    def fetch(self, keys: Sequence[str]) -> dict[str, frozenset[str]]:
        """Identifiers recorded under each key that exists (missing keys are absent)."""
        ...

    def save(self, entries: Mapping[str, frozenset[str]]) -> None:
        """Write (replace) each key's identifiers."""
        ...


@dataclass(frozen=True, slots=True)
class ParkedMessage:
    """A record to park: its parked message's fields (all but the payload's) and its payload, which the
    parked-records queue carries inline when the message fits and otherwise the parked-payload bucket, under a
    key derived from the webhook-id, the source position and the bytes (so parking the record again rewrites the
    same key)."""

    fields: Mapping[str, Any]  # JSON values; include "subscription", "webhook_id" and "item_identifier"
    payload: bytes


class ParkedRecords(Protocol):
    """Where records that can never succeed are kept with their payload (the subscription's parked-records queue)."""

    def park(self, messages: Sequence[ParkedMessage]) -> dict[int, str]:
        """Park each message; returns the indexes of the messages that could NOT be parked, each with why
        (exception type and message, never payload bytes)."""
        ...


class SecretSource(Protocol):
    def get(self) -> str:
        """The signing secret string (cached by the adapter; never logged)."""
        ...


@dataclass(frozen=True, slots=True)
class LaneMessage:
    """One record for the retry lane (docs/retry-lanes.md): FIFO group, deduplication id (the entry id), body."""

    group: str
    deduplication_id: str
    body: str  # JSON


class RetryLane(Protocol):
    """The subscription's retry lane, a FIFO queue read by this same function."""

    def send(self, messages: Sequence[LaneMessage]) -> dict[int, str]:
        """Send in the order given (per group, FIFO order is this order); returns the indexes NOT sent, each
        with why. Once a message of a group is not sent, no later message of that group in this call is."""
        ...

    def defer(self, receipt_handles: Mapping[str, int]) -> dict[str, str]:
        """Make each received message visible again only after the given seconds (at most 43,200: SQS's
        12 hours); returns the receipt handles that could not be deferred, each with why."""
        ...


class HeldKeys(Protocol):
    """Which keys have records in the retry lane: one item, one string set of entry ids per held key's
    attribute (docs/retry-lanes.md)."""

    def read(self) -> dict[str, frozenset[str]]:
        """Every held key's attribute name with its entry ids (consistent read; empty when none is held)."""
        ...

    def hold(self, entries: Mapping[str, frozenset[str]]) -> None:
        """Add the entry ids to each key attribute's set (idempotent; one write)."""
        ...

    def release(self, entries: Mapping[str, frozenset[str]]) -> None:
        """Remove the entry ids from each key attribute's set (idempotent; an emptied set disappears)."""
        ...
