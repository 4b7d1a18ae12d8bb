"""In-memory fakes of the dispatcher's ports. They record what they received."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatcher.ports import HttpResponse, ParkedMessage, TransportError

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()

# What the fake endpoint answers for one request: a status, a (status, Retry-After) pair, or an
# exception to raise (a transport failure).
Answer = int | tuple[int, str] | Exception


@dataclass
class SentRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    timeout: float


@dataclass
class FakeEndpoint:
    """An HttpSender whose answers are scripted per webhook-id (a list is consumed attempt by attempt)."""

    answers: dict[str, list[Answer]] = field(default_factory=dict)
    default: Answer = 200
    latency_seconds: float = 0.0
    requests: list[SentRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight_seen: int = 0
    on_request: Callable[[SentRequest], None] | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_seconds: float) -> HttpResponse:
        request = SentRequest(url, body, dict(headers), timeout_seconds)
        self.requests.append(request)
        if self.on_request is not None:
            self.on_request(request)
        self.in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
        try:
            await asyncio.sleep(self.latency_seconds)
        finally:
            self.in_flight -= 1
        script = self.answers.get(headers["webhook-id"])
        answer = script.pop(0) if script else self.default
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, tuple):
            return HttpResponse(answer[0], answer[1])
        return HttpResponse(answer)

    async def close(self) -> None:
        pass

    def ids_posted(self) -> list[str]:
        return [request.headers["webhook-id"] for request in self.requests]


def transport_failure() -> TransportError:
    return TransportError("connection refused")


@dataclass
class FakeDeliveredIds:
    entries: dict[str, frozenset[str]] = field(default_factory=dict)
    fetches: list[list[str]] = field(default_factory=list)
    saves: list[dict[str, frozenset[str]]] = field(default_factory=list)
    fail_saves: bool = False

    def fetch(self, keys: Sequence[str]) -> dict[str, frozenset[str]]:
        self.fetches.append(list(keys))
        return {key: self.entries[key] for key in keys if key in self.entries}

    def save(self, entries: Mapping[str, frozenset[str]]) -> None:
        if self.fail_saves:
            raise RuntimeError("DynamoDB is unavailable")
        self.saves.append(dict(entries))
        self.entries.update(entries)


@dataclass
class FakeParkedRecords:
    """Keeps each parked message as the SQS parked-records queue would get it, with its payload inline."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    refuse: bool = False

    def park(self, messages: Sequence[ParkedMessage]) -> dict[int, str]:
        if self.refuse:
            return dict.fromkeys(range(len(messages)), "RuntimeError: the parked-records queue is unavailable")
        self.messages.extend(
            {**message.fields, "payload_base64": base64.b64encode(message.payload).decode()} for message in messages
        )
        return {}

    def __len__(self) -> int:
        return len(self.messages)


@dataclass
class FakeSecret:
    value: str = SECRET
    reads: int = 0

    def get(self) -> str:
        self.reads += 1
        return self.value
