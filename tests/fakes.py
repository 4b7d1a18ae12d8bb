"""In-memory fakes of the dispatcher's ports. They record what they received."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatcher.ports import HttpResponse, LaneMessage, ParkedMessage, TransportError

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


@dataclass
class FakeClock:
    """Wall-clock time that moves only when a test moves it."""

    now: float

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


LANE_QUEUE = "orders-to-ledger-retry-lane.fifo"
LANE_QUEUE_ARN = f"arn:aws:sqs:eu-west-1:123456789012:{LANE_QUEUE}"
FIFO_DEDUPLICATION_SECONDS = 300  # SQS FIFO's deduplication window
LANE_VISIBILITY_TIMEOUT_SECONDS = 180.0  # the lane queue's own, when a reported message was not deferred
LAMBDA_SQS_BATCH_SIZE = 10


@dataclass
class LaneQueueMessage:
    message_id: str
    group: str
    deduplication_id: str
    body: str
    sequence: int
    visible_at: float = 0.0
    receipt_handle: str | None = None
    receive_count: int = 0


@dataclass
class RecordingRetryLane:
    """The retry lane as its FIFO queue and Lambda's SQS mapping behave: per-group order, a group gives nothing
    while one of its messages is invisible (in flight or deferred), deduplication for five minutes, and
    reported messages left in the queue (deleted otherwise). Records every send and deferral."""

    clock: Callable[[], float]
    messages: list[LaneQueueMessage] = field(default_factory=list)
    sends: list[list[LaneMessage]] = field(default_factory=list)
    deferrals: list[dict[str, int]] = field(default_factory=list)
    refuse_groups: set[str] = field(default_factory=set)  # send refuses messages of these groups
    send_error: Exception | None = None
    _deduplicated_at: dict[str, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def send(self, messages: Sequence[LaneMessage]) -> dict[int, str]:
        if self.send_error is not None:
            raise self.send_error
        self.sends.append(list(messages))
        refused: dict[int, str] = {}
        stopped: set[str] = set()
        for index, message in enumerate(messages):
            if message.group in self.refuse_groups or message.group in stopped:
                refused[index] = "AWS.SimpleQueueService.Unavailable: refused"
                stopped.add(message.group)
                continue
            sent_at = self._deduplicated_at.get(message.deduplication_id)
            if sent_at is not None and self.clock() - sent_at < FIFO_DEDUPLICATION_SECONDS:
                continue  # accepted, not enqueued again
            self._deduplicated_at[message.deduplication_id] = self.clock()
            number = next(self._ids)
            self.messages.append(
                LaneQueueMessage(f"lane-{number}", message.group, message.deduplication_id, message.body, number)
            )
        return refused

    def defer(self, receipt_handles: Mapping[str, int]) -> dict[str, str]:
        self.deferrals.append(dict(receipt_handles))
        for message in self.messages:
            seconds = receipt_handles.get(message.receipt_handle or "")
            if seconds is not None:
                message.visible_at = self.clock() + seconds
        return {}

    def receive_event(self) -> dict[str, Any] | None:
        """The next batch the mapping would invoke the function with, or None when nothing is visible."""
        now = self.clock()
        blocked = {message.group for message in self.messages if message.visible_at > now}
        batch = [message for message in self.messages if message.group not in blocked][:LAMBDA_SQS_BATCH_SIZE]
        if not batch:
            return None
        for message in batch:
            message.receive_count += 1
            message.receipt_handle = f"{message.message_id}-receipt-{message.receive_count}"
            message.visible_at = now + LANE_VISIBILITY_TIMEOUT_SECONDS
        return {"Records": [self._lambda_record(message) for message in batch]}

    def settle(self, event: Mapping[str, Any], response: Mapping[str, list[dict[str, str]]]) -> None:
        """As the mapping does after the invocation: delete every message of the batch not reported."""
        reported = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
        received = {record["messageId"] for record in event["Records"]}
        self.messages = [m for m in self.messages if m.message_id not in received or m.message_id in reported]

    def next_visible_at(self) -> float | None:
        """When the next invisible message becomes visible again (None when none is invisible)."""
        now = self.clock()
        return min((message.visible_at for message in self.messages if message.visible_at > now), default=None)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(message.body) for message in self.messages]

    def _lambda_record(self, message: LaneQueueMessage) -> dict[str, Any]:
        return {
            "messageId": message.message_id,
            "receiptHandle": message.receipt_handle,
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(message.receive_count),
                "SentTimestamp": "1700000000000",
                "SenderId": "AIDAEXAMPLE",
                "ApproximateFirstReceiveTimestamp": "1700000000000",
                "SequenceNumber": str(18_000_000_000_000_000_000 + message.sequence),
                "MessageGroupId": message.group,
                "MessageDeduplicationId": message.deduplication_id,
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": LANE_QUEUE_ARN,
            "awsRegion": "eu-west-1",
        }

    def __len__(self) -> int:
        return len(self.messages)


@dataclass
class InMemoryHeldKeys:
    """The held-keys item: one set of entry ids per held key's attribute; an emptied set disappears."""

    sets: dict[str, set[str]] = field(default_factory=dict)
    reads: int = 0
    holds: list[dict[str, frozenset[str]]] = field(default_factory=list)
    releases: list[dict[str, frozenset[str]]] = field(default_factory=list)
    hold_error: Exception | None = None
    release_error: Exception | None = None
    read_error: Exception | None = None

    def read(self) -> dict[str, frozenset[str]]:
        if self.read_error is not None:
            raise self.read_error
        self.reads += 1
        return {attribute: frozenset(ids) for attribute, ids in self.sets.items()}

    def hold(self, entries: Mapping[str, frozenset[str]]) -> None:
        if self.hold_error is not None:
            raise self.hold_error
        self.holds.append(dict(entries))
        for attribute, ids in entries.items():
            self.sets.setdefault(attribute, set()).update(ids)

    def release(self, entries: Mapping[str, frozenset[str]]) -> None:
        if self.release_error is not None:
            raise self.release_error
        self.releases.append(dict(entries))
        for attribute, ids in entries.items():
            remaining = self.sets.get(attribute, set()) - ids
            if remaining:
                self.sets[attribute] = remaining
            else:
                self.sets.pop(attribute, None)
