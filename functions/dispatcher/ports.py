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
