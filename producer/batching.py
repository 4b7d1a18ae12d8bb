"""The send loop both producers share: refuse what can never fit, split into requests under the service's
count and byte limits, and re-send only the entries a request reported as failed, with backoff.

Ordering: a re-sent entry lands after the entries of its request that succeeded the first time, so a
partial failure can reorder records within one request (Kinesis and SQS say the same of their batch
APIs). Requests go out one after another and a request's failures are settled before the next one is
sent, so records of different requests keep their order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_random_exponential

from producer.errors import RecordFailure, RecordProblem, RecordsRefusedError, UnsentRecordsError
from producer.events import Event, EventError
from producer.result import ProduceResult, ReceiptT

RequestEntryT = TypeVar("RequestEntryT")

ProgressCallback = Callable[[int], None]  # called with the number of records just accepted


@dataclass(frozen=True, slots=True)
class BatchLimits:
    service: str  # as error messages name it: "Kinesis", "SQS"
    max_entries: int  # entries per request
    max_entry_bytes: int  # bytes per entry
    max_request_bytes: int  # bytes per request
    what_counts: str  # what an entry's size measures, for error messages


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long the producer keeps re-sending records a request reported as failed.

    Whole-request errors (throttling, 5xx, connection resets) are retried by botocore itself; this
    policy covers what botocore cannot see: records failed inside a successful response.
    """

    max_rounds: int = 6  # requests per batch: the first, then up to 5 re-sends of the failed entries
    backoff_base_seconds: float = 0.1  # full jitter: sleep uniform(0, base x 2**(round - 1)), capped
    backoff_cap_seconds: float = 5.0


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class PreparedEntry(Generic[RequestEntryT]):
    index: int  # position in the caller's sequence
    size_bytes: int  # what counts toward the service's byte limits
    request: RequestEntryT  # the API's entry, ready to send


@dataclass(frozen=True, slots=True)
class BatchResponse(Generic[ReceiptT]):
    """One request's outcome: receipts of the accepted entries; failures split by whether to re-send."""

    receipts: dict[int, ReceiptT]
    retryable: list[RecordFailure]
    permanent: list[RecordFailure] = field(default_factory=list)


@dataclass
class _Progress(Generic[ReceiptT]):
    receipts: dict[int, ReceiptT] = field(default_factory=dict)
    failures: list[RecordFailure] = field(default_factory=list)
    requests: int = 0
    resent: int = 0


class BatchProducer(ABC, Generic[RequestEntryT, ReceiptT]):
    """Puts events onto one destination in as few requests as the service's limits allow."""

    limits: BatchLimits

    def __init__(self, retry: RetryPolicy, sleep: Callable[[float], None]) -> None:
        self._retry = retry
        self._sleep = sleep

    @property
    @abstractmethod
    def destination(self) -> str:
        """What the destination is called in results and errors: "stream orders"."""

    @abstractmethod
    def _prepare(self, index: int, event: Event) -> PreparedEntry[RequestEntryT]:
        """The request entry for one event; raises EventError when the event cannot be sent."""

    @abstractmethod
    def _send_batch(self, entries: Sequence[PreparedEntry[RequestEntryT]]) -> BatchResponse[ReceiptT]:
        """One API call; raises botocore's errors when the whole request fails."""

    def send(self, events: Iterable[Event], on_progress: ProgressCallback | None = None) -> ProduceResult[ReceiptT]:
        """Send every event, or raise: RecordsRefusedError (nothing sent), UnsentRecordsError (some sent)."""
        entries = self._prepare_all(list(events))
        progress: _Progress[ReceiptT] = _Progress()
        batches = split_into_batches(entries, self.limits)
        for number, batch in enumerate(batches):
            try:
                self._send_with_resends(batch, progress, on_progress)
            except (BotoCoreError, ClientError) as error:
                # botocore has already retried what it could: everything not yet settled is reported.
                code, message = _describe(error)
                settled = progress.receipts.keys() | {failure.index for failure in progress.failures}
                unsent = [entry for later in batches[number:] for entry in later if entry.index not in settled]
                progress.failures.extend(RecordFailure(entry.index, code, message) for entry in unsent)
                break
        result = ProduceResult(self.destination, progress.receipts, progress.requests, progress.resent)
        if progress.failures:
            raise UnsentRecordsError(result, progress.failures, len(entries))
        return result

    def _prepare_all(self, events: list[Event]) -> list[PreparedEntry[RequestEntryT]]:
        """Every entry, or RecordsRefusedError naming each record that can never be sent."""
        entries: list[PreparedEntry[RequestEntryT]] = []
        problems: list[RecordProblem] = []
        for index, event in enumerate(events):
            try:
                entry = self._prepare(index, event)
            except EventError as error:
                problems.append(RecordProblem(index, str(error)))
                continue
            if entry.size_bytes > self.limits.max_entry_bytes:
                problems.append(
                    RecordProblem(
                        index,
                        f"is {entry.size_bytes:,} bytes ({self.limits.what_counts}), above the "
                        f"{self.limits.service} limit of {self.limits.max_entry_bytes:,} bytes",
                    )
                )
            entries.append(entry)
        if problems:
            raise RecordsRefusedError(problems, len(events))
        return entries

    def _send_with_resends(
        self,
        batch: list[PreparedEntry[RequestEntryT]],
        progress: _Progress[ReceiptT],
        on_progress: ProgressCallback | None,
    ) -> None:
        pending = batch
        last_failures: dict[int, RecordFailure] = {}

        def send_pending() -> list[PreparedEntry[RequestEntryT]]:
            nonlocal pending
            if pending is not batch:
                progress.resent += len(pending)
            response = self._send_batch(pending)
            progress.requests += 1
            progress.receipts.update(response.receipts)
            progress.failures.extend(response.permanent)
            last_failures.clear()
            last_failures.update((failure.index, failure) for failure in response.retryable)
            pending = [entry for entry in pending if entry.index in last_failures]
            if on_progress is not None and response.receipts:
                on_progress(len(response.receipts))
            return pending

        retrying = Retrying(
            stop=stop_after_attempt(self._retry.max_rounds),
            wait=wait_random_exponential(
                multiplier=self._retry.backoff_base_seconds, max=self._retry.backoff_cap_seconds
            ),
            retry=retry_if_result(bool),
            retry_error_callback=_last_result,
            sleep=self._sleep,
        )
        retrying(send_pending)
        progress.failures.extend(last_failures.values())


def split_into_batches(
    entries: Sequence[PreparedEntry[RequestEntryT]], limits: BatchLimits
) -> list[list[PreparedEntry[RequestEntryT]]]:
    """Consecutive entries, each request as full as the entry-count and byte limits allow."""
    batches: list[list[PreparedEntry[RequestEntryT]]] = []
    current: list[PreparedEntry[RequestEntryT]] = []
    current_bytes = 0
    for entry in entries:
        if current and (
            len(current) == limits.max_entries or current_bytes + entry.size_bytes > limits.max_request_bytes
        ):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(entry)
        current_bytes += entry.size_bytes
    if current:
        batches.append(current)
    return batches


def _last_result(state: RetryCallState) -> object:
    """Out of rounds: hand back what is still pending instead of raising tenacity's RetryError."""
    assert state.outcome is not None
    return state.outcome.result()


def _describe(error: BotoCoreError | ClientError) -> tuple[str, str]:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return details.get("Code", "ClientError"), details.get("Message", str(error))
    return type(error).__name__, str(error)
