"""Re-delivering what a subscription parked: its parked-records queue, then its on-failure store (bucket).

Every record goes back through the subscription's own function at its original source position (see
`redrive.parked`), so it reaches the endpoint with its original webhook-id. What guarantees nothing is lost or
duplicated, whenever the run is interrupted:

- a parked message is deleted only after the invocation succeeded for it (no function error, not in
  batchItemFailures). If the endpoint refused it again, the function has by then parked it as a NEW message,
  so the old one is deleted too: it was re-queued. An interruption between the delivery and the delete
  re-delivers it next run with the same webhook-id, which receivers dedupe;
- a payload the function stored in S3 (`payload_s3`) is deleted only after its message was, and only once the
  record was delivered: a record refused again has been parked again under the same key, so its new message
  points at the same object. An interruption between the two deletes leaves an object nothing points at, which
  the bucket's lifecycle expires;
- a message carrying a webhook-id this run has already re-delivered (the copy the function parked when the
  endpoint refused the record again) is left for the next run, so a record refused again is not looped;
- every message received and not deleted is held invisible while the run lasts, `hold_seconds` at a time and
  renewed HOLD_RENEWALS_PER_HOLD times per hold, and released when the run ends: so each is handled once per
  run, and a killed run (kill -9) hides its messages for `hold_seconds` at most;
- messages held by another or an interrupted run (ApproximateNumberOfMessagesNotVisible, less this run's own)
  are counted at the start and at the end and reported, never passed over in silence; with `wait` the run waits
  for them to reappear and redrives them too;
- an on-failure object is replaced, under its own key, by one holding only the records that failed again
  (a single atomic write), or deleted when none did; the records of one object are one shard's, in order,
  and go to the function as the one batch they were.

Every record the function gets from a redrive is marked with the time of the redrive (records.REDRIVE_FIELD),
which it sends as the `dispatch-redrive` header: receivers take a replay although it is older than what its
key delivered since.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError

from dispatcher import metric_names
from dispatcher.adapters.s3 import parked_payload_prefix
from dispatcher.records import REDRIVE_FIELD, UnsupportedEventError, parse_event
from dispatcher.timestamps import rfc3339
from local.esm.base import judge
from local.workers import InvocationResult
from redrive.errors import NotRedrivableError
from redrive.parked import ParkedRecord, StoredPayload, describe_position
from redrive.target import RedriveTarget

logger = logging.getLogger(__name__)

SQS_RECEIVE_LIMIT = 10  # SQS's maximum messages per ReceiveMessage and per batch call
# Long polling queries every SQS server, so an empty answer means the queue has no visible message left.
SQS_WAIT_SECONDS = 1
# A received message stays invisible while the run lasts (kept ones must not come round again), but never longer
# than the run's `hold_seconds` past its last renewal: all that a killed run (kill -9) hides, and for how long.
HOLD_RENEWALS_PER_HOLD = 3  # holds are renewed this many times per hold: well within it on a busy machine
HELD_POLL_SECONDS = 2.0  # with `wait`: how often the queue's count of held messages is read again
IN_RETRY_LANE_REASON = "in the retry lane (its key is held, or it failed again); the lane delivers it in order"


class Outcome(enum.Enum):
    REDRIVEN = "redriven"  # delivered to the endpoint (or, from S3, found already delivered)
    PARKED_AGAIN = "parked again"  # refused again: re-queued in the parked-records queue as a new message
    STILL_FAILING = "still failing (kept)"  # function error or reported failure: left where it was
    SKIPPED = "skipped"  # not redrivable, or the function skipped it as already finished: left where it was
    # Failed again transiently, or its key is held: handed to the subscription's retry lane, which delivers it in
    # its key's order (or parks it again when the schedule runs out). Its parked message is deleted; a payload it
    # had stored aside stays for the bucket's lifecycle (the lane may park it again under the same key).
    IN_RETRY_LANE = "in the retry lane"


@dataclass(frozen=True)
class HeldRecords:
    """Parked messages out of sight: received (held invisible) by another or an interrupted run."""

    count: int
    # SQS does not say when a held message reappears. A redrive holds for its hold past its last renewal (this
    # run's is assumed); a plain receive holds for the queue's default visibility timeout. The larger is when all
    # of them are back, unless another run or tool received them with a longer timeout of its own.
    visible_again_within_seconds: int


@dataclass
class RedriveSummary:
    counts: Counter[Outcome] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # why records were kept, one line each
    held_at_start: HeldRecords | None = None  # read before anything was received
    held_at_end: HeldRecords | None = None  # still held by others when the run ended (None: not read)

    @property
    def complete(self) -> bool:
        """Every record was redriven: none failed, was parked again, skipped, or left held by another run."""
        return self.total == self.counts[Outcome.REDRIVEN] and not self.held_left

    @property
    def held_left(self) -> int:
        return self.held_at_end.count if self.held_at_end is not None else 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class PlannedRecord:
    """An on-failure record a redrive would re-deliver (dry run)."""

    store: str  # the on-failure object's s3://bucket/key
    webhook_id: str
    position: str
    reason: str
    parked_at: str
    problem: str | None = None  # why it cannot be redriven, if so


@dataclass(frozen=True)
class Plan:
    """What a dry run can show without changing anything. SQS has no peek: reading a parked message means
    receiving it, which raises its receive count and hides it for a while, so the parked-records queue is shown
    as counts only; the on-failure store is listed record by record (reading S3 changes nothing)."""

    parked: int  # visible in the parked-records queue: what a run would redrive now
    held: HeldRecords  # out of sight: a run redrives them once they reappear (or waits for them)
    on_failure: list[PlannedRecord]


class ProgressListener(Protocol):
    def expect(self, records: int) -> None:
        """`records` more records are known to be waiting."""

    def finished(self, outcome: Outcome, records: int) -> None:
        """`records` records were handled with `outcome`."""

    def held(self, held: HeldRecords, *, waiting: bool) -> None:
        """`held` records are out of sight, held by another or an interrupted run; `waiting`: the run waits."""


class _Silent:
    def expect(self, records: int) -> None:
        pass

    def finished(self, outcome: Outcome, records: int) -> None:
        pass

    def held(self, held: HeldRecords, *, waiting: bool) -> None:
        pass


class _Pacer:
    """Spaces invocations so records go out at most `rate` per second on average."""

    def __init__(self, rate_per_second: float) -> None:
        self._interval = 1.0 / rate_per_second
        self._next = time.monotonic()

    async def wait(self, records: int) -> None:
        now = time.monotonic()
        self._next = max(self._next, now)
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next += records * self._interval


class _Holds:
    """The parked messages this run received and has not deleted (message id -> latest receipt handle): held
    for `hold_seconds` at a time, renewed while the run lasts, released when it ends."""

    def __init__(self, sqs: Any, queue_url: str, hold_seconds: int) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._hold_seconds = hold_seconds
        self.handles: dict[str, str] = {}
        # A renewal still running in its thread when the run ends must not re-hide what the release made visible.
        self._visibility_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.handles)

    async def renew_every(self, interval_seconds: float) -> None:
        """Runs until cancelled; the sleep is the renewal period, nothing waits on it."""
        while True:
            await asyncio.sleep(interval_seconds)
            await asyncio.to_thread(self._set_visibility, list(self.handles.values()), self._hold_seconds)

    def release(self) -> None:
        """Make every held message visible again at once, for the next run. Synchronous on purpose: this also
        runs while the run is being cancelled (Ctrl-C)."""
        self._set_visibility(list(self.handles.values()), 0)

    def _set_visibility(self, handles: list[str], seconds: int) -> None:
        """Best effort: a message not renewed reappears after `hold_seconds`, one not released too."""
        with self._visibility_lock:
            for start in range(0, len(handles), SQS_RECEIVE_LIMIT):
                entries = [
                    {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                    for index, handle in enumerate(handles[start : start + SQS_RECEIVE_LIMIT])
                ]
                try:
                    self._sqs.change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries)
                except Exception as error:
                    logger.warning(
                        "could not set held messages visible in %d s (%s); back within %d s at most",
                        seconds,
                        error,
                        self._hold_seconds,
                    )
                    return


class Redriver:
    """`await run()` re-delivers; `plan()` shows what would be, changing nothing."""

    def __init__(
        self,
        target: RedriveTarget,
        *,
        rate_per_second: float,  # records re-delivered per second
        hold_seconds: int,  # how long a received message stays out of sight past the run's last renewal
        limit: int | None = None,
        wait: bool = False,
        progress: ProgressListener | None = None,
        hold_renewal_seconds: float | None = None,  # None: HOLD_RENEWALS_PER_HOLD times per hold
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be above 0, got {rate_per_second}")
        if hold_seconds < 1:
            raise ValueError(f"hold_seconds must be at least 1, got {hold_seconds}")
        self.target = target
        self.limit = limit
        self.wait = wait
        self.progress = progress or _Silent()
        self.summary = RedriveSummary()
        self._pacer = _Pacer(rate_per_second)
        self._hold_seconds = hold_seconds
        self._hold_renewal_seconds = (
            hold_seconds / HOLD_RENEWALS_PER_HOLD if hold_renewal_seconds is None else hold_renewal_seconds
        )

    # -- redrive ----------------------------------------------------------------------------------------------

    async def run(self) -> RedriveSummary:
        visible, held = await asyncio.to_thread(self._queue_counts, 0)
        self.summary.held_at_start = held
        self.progress.expect(visible if self.limit is None else min(visible, self.limit))
        if held.count:
            self.progress.held(held, waiting=self.wait)
        await self._redrive_parked_records_queue()
        if self.target.on_failure_bucket is not None:
            await self._redrive_on_failure_objects(self.target.on_failure_bucket)
        return self.summary

    async def _redrive_parked_records_queue(self) -> None:
        holds = _Holds(self.target.sqs, self.target.parked_records_url, self._hold_seconds)
        seen: set[str] = set()  # message ids handled in this run
        redriven_ids: set[str] = set()  # webhook-ids re-delivered in this run: a re-parked copy is not looped
        reported = self.summary.held_at_start  # told once per change, not once per poll
        renewal = asyncio.create_task(holds.renew_every(self._hold_renewal_seconds))
        try:
            while True:
                await self._drain(holds, seen, redriven_ids)
                _, held = await asyncio.to_thread(self._queue_counts, len(holds))
                self.summary.held_at_end = held
                if not held.count or not self.wait or self._room() <= 0:
                    return
                if held != reported:
                    self.progress.held(held, waiting=True)
                    reported = held
                await asyncio.sleep(HELD_POLL_SECONDS)  # a polling period: the next drain sees what reappeared
        finally:
            renewal.cancel()
            holds.release()

    async def _drain(self, holds: _Holds, seen: set[str], redriven_ids: set[str]) -> None:
        """Redrive every message visible now, until a receive finds none (or the limit is reached)."""
        while self._room() > 0:
            messages = await asyncio.to_thread(self._receive)
            if not messages:
                return
            # Every received message is held before any is handled, so an interruption releases them all.
            holds.handles |= {message["MessageId"]: message["ReceiptHandle"] for message in messages}
            for message in messages:
                message_id = message["MessageId"]
                if message_id in seen or _parked_webhook_id(message) in redriven_ids:
                    continue  # handled already, or parked again by this run: the next run's
                seen.add(message_id)
                if self._room() <= 0:
                    break
                redriven = await self._redrive_message(message, redriven_ids)
                if redriven is None:
                    continue
                record, outcome = redriven
                await asyncio.to_thread(
                    self.target.sqs.delete_message,
                    QueueUrl=self.target.parked_records_url,
                    ReceiptHandle=holds.handles.pop(message_id),
                )
                # Parked again, the record's new message points at the very same object: it stays. In the retry
                # lane, it may be parked again under the same key: it stays too (the bucket's lifecycle expires it).
                if record.stored_payload is not None and outcome is Outcome.REDRIVEN:
                    await asyncio.to_thread(self._delete_stored_payload, record.stored_payload)

    async def _redrive_message(
        self, message: dict[str, Any], redriven_ids: set[str]
    ) -> tuple[ParkedRecord, Outcome] | None:
        """Re-deliver one parked message; the record and how it ended when the message may be deleted now."""
        try:
            record = await asyncio.to_thread(ParkedRecord.from_message, message["Body"], self._read_stored_payload)
            if record.subscription != self.target.subscription:
                raise NotRedrivableError(f"it was parked by subscription {record.subscription!r}")
            event = _marked_as_redrive(record.lambda_event()["Records"])
        except NotRedrivableError as error:
            self._finish(Outcome.SKIPPED, 1, f"parked message {message['MessageId']}: {error}")
            return None
        await self._pacer.wait(1)
        redriven_ids.add(record.webhook_id)  # before invoking: the function may park it again at once
        result = await self.target.invoke(event)
        verdict = judge(result, {record.item_identifier}, report_batch_item_failures=True)
        where = f"{record.webhook_id} ({record.position()})"
        if not verdict.succeeded:
            self._finish(Outcome.STILL_FAILING, 1, f"{where}: {verdict.reason or 'reported as failed'}")
            return None
        if _metric(result, metric_names.DUPLICATES_SKIPPED):
            # The function's delivered ids list it as finished (delivered or parked) and it did not POST it:
            # deleting it would lose it. Kinesis entries expire with their TTL; a later run then delivers it.
            self._finish(Outcome.SKIPPED, 1, f"{where}: the function skipped it as already delivered or parked")
            return None
        problem = None
        if _metric(result, metric_names.PARKED):
            outcome = Outcome.PARKED_AGAIN
        elif _metric(result, metric_names.HANDED_TO_RETRY_LANE):
            outcome, problem = Outcome.IN_RETRY_LANE, f"{where}: not delivered yet: {IN_RETRY_LANE_REASON}"
        else:
            outcome = Outcome.REDRIVEN
        self._finish(outcome, 1, problem)
        return record, outcome

    async def _redrive_on_failure_objects(self, bucket: str) -> None:
        for key in await asyncio.to_thread(lambda: list(self._object_keys(bucket))):
            if self._room() <= 0:
                return
            document = await asyncio.to_thread(self._read_object, bucket, key)
            records: list[dict[str, Any]] = document["payload"]["Records"]
            self.progress.expect(len(records))
            room = self._room()
            attempted, untouched = records[:room], records[room:]
            await self._pacer.wait(len(attempted))
            result = await self.target.invoke(_marked_as_redrive(attempted))
            verdict = judge(result, {_sequence_number(record) for record in attempted}, report_batch_item_failures=True)
            location = f"s3://{bucket}/{key}"
            if verdict.whole_batch_failed:
                self._finish(Outcome.STILL_FAILING, len(attempted), f"{location}: {verdict.reason}")
                continue
            failed = [
                record for record in attempted if record["kinesis"]["sequenceNumber"] in verdict.reported_failures
            ]
            remaining = failed + untouched
            if remaining:
                await asyncio.to_thread(self._replace_object, bucket, key, document, remaining)
            else:
                await asyncio.to_thread(self.target.s3.delete_object, Bucket=bucket, Key=key)
            finished = len(attempted) - len(failed)
            parked_again = min(int(_metric(result, metric_names.PARKED)), finished)
            in_lane = min(int(_metric(result, metric_names.HANDED_TO_RETRY_LANE)), finished - parked_again)
            if failed:
                self._finish(Outcome.STILL_FAILING, len(failed), f"{location}: {len(failed)} records failed again")
            self._finish(Outcome.PARKED_AGAIN, parked_again)
            if in_lane:
                self._finish(
                    Outcome.IN_RETRY_LANE, in_lane, f"{location}: {in_lane} not delivered yet: {IN_RETRY_LANE_REASON}"
                )
            self._finish(Outcome.REDRIVEN, finished - parked_again - in_lane)

    # -- dry run ----------------------------------------------------------------------------------------------

    async def plan(self) -> Plan:
        """What `run()` would re-deliver, changing nothing: not a receive count, not a visibility."""
        visible, held = await asyncio.to_thread(self._queue_counts, 0)
        on_failure: list[PlannedRecord] = []
        bucket = self.target.on_failure_bucket
        if bucket is not None:
            for key in await asyncio.to_thread(lambda: list(self._object_keys(bucket))):
                document = await asyncio.to_thread(self._read_object, bucket, key)
                on_failure.extend(_planned_from_object(bucket, key, document))
        return Plan(parked=visible, held=held, on_failure=on_failure[: self.limit])

    # -- AWS calls --------------------------------------------------------------------------------------------

    def _queue_counts(self, held_by_this_run: int) -> tuple[int, HeldRecords]:
        """The parked-records queue's visible messages, and those held by others than this run (SQS's counts are
        approximate: eventually consistent within about a minute)."""
        attributes = self.target.sqs.get_queue_attributes(
            QueueUrl=self.target.parked_records_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "VisibilityTimeout",
            ],
        )["Attributes"]
        not_visible = int(attributes["ApproximateNumberOfMessagesNotVisible"])
        within = max(self._hold_seconds, int(attributes.get("VisibilityTimeout", 0)))
        held = HeldRecords(count=max(0, not_visible - held_by_this_run), visible_again_within_seconds=within)
        return int(attributes["ApproximateNumberOfMessages"]), held

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.target.sqs.receive_message(
            QueueUrl=self.target.parked_records_url,
            MaxNumberOfMessages=SQS_RECEIVE_LIMIT,
            VisibilityTimeout=self._hold_seconds,
            WaitTimeSeconds=SQS_WAIT_SECONDS,
        ).get("Messages", [])
        return messages

    def _read_stored_payload(self, stored: StoredPayload) -> bytes:
        """A parked payload's bytes, read only from where this subscription's function may have stored it: a
        message pointing anywhere else is not redriven (a redrive must not deliver other data to the endpoint)."""
        prefix = parked_payload_prefix(self.target.subscription)
        if stored.bucket != self.target.payload_bucket or not stored.key.startswith(prefix):
            raise NotRedrivableError(
                f"its payload {stored} is outside the subscription's parked payloads "
                f"(s3://{self.target.payload_bucket}/{prefix}...)"
            )
        try:
            payload: bytes = self.target.s3.get_object(Bucket=stored.bucket, Key=stored.key)["Body"].read()
        except self.target.s3.exceptions.NoSuchKey:
            # Payloads outlive their messages and parking again rewrites them, so a missing one was deleted: by a
            # redrive that delivered another message of the same record (a retry parked it twice), or by hand.
            raise NotRedrivableError(
                f"its payload {stored} cannot be read: it is gone (deleted once another parked copy of this record "
                "was redriven, or by hand); delete this message once you have checked the record was delivered"
            ) from None
        except ClientError as error:
            raise NotRedrivableError(f"its payload {stored} cannot be read: {error}") from None
        return payload

    def _delete_stored_payload(self, stored: StoredPayload) -> None:
        """Best effort: the message is gone already, so a payload left behind is only garbage, which expires."""
        try:
            self.target.s3.delete_object(Bucket=stored.bucket, Key=stored.key)
        except ClientError as error:
            logger.warning("could not delete the re-delivered payload %s (the bucket expires it): %s", stored, error)

    def _object_keys(self, bucket: str) -> Iterator[str]:
        """Every on-failure object, oldest first (Lambda's keys sort by shard and time)."""
        for page in self.target.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                yield str(item["Key"])

    def _read_object(self, bucket: str, key: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.target.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return document

    def _replace_object(self, bucket: str, key: str, document: dict[str, Any], remaining: list[dict[str, Any]]) -> None:
        """One put under the same key: the object holds either every record or the remaining ones, never none."""
        replacement = document | {"payload": {"Records": remaining}}
        if isinstance(document.get("KinesisBatchInfo"), dict):
            replacement["KinesisBatchInfo"] = document["KinesisBatchInfo"] | {
                "startSequenceNumber": _sequence_number(remaining[0]),
                "endSequenceNumber": _sequence_number(remaining[-1]),
                "batchSize": len(remaining),
            }
        self.target.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(replacement).encode())

    # -- bookkeeping ------------------------------------------------------------------------------------------

    def _room(self) -> int:
        """How many more records this run may handle."""
        return self.limit - self.summary.total if self.limit is not None else 1 << 62

    def _finish(self, outcome: Outcome, records: int, problem: str | None = None) -> None:
        if records <= 0:
            return
        self.summary.counts[outcome] += records
        if problem is not None:
            self.summary.problems.append(problem)
        self.progress.finished(outcome, records)


def _marked_as_redrive(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The Lambda event of `records`, each marked with the time of this redrive. Marked copies: what is written
    back to the on-failure store stays as the source gave it."""
    redriven_at = rfc3339(datetime.now(UTC))
    return {"Records": [{**record, REDRIVE_FIELD: redriven_at} for record in records]}


def _metric(result: InvocationResult, name: str) -> float:
    return result.metrics.get(name, 0.0)


def _parked_webhook_id(message: dict[str, Any]) -> str | None:
    try:
        return str(json.loads(message["Body"])["webhook_id"])
    except (ValueError, KeyError, TypeError):
        return None


def _sequence_number(event_record: dict[str, Any]) -> str:
    return str(event_record["kinesis"]["sequenceNumber"])


def _planned_from_object(bucket: str, key: str, document: dict[str, Any]) -> Iterator[PlannedRecord]:
    records = document.get("payload", {}).get("Records", [])
    reason = str(document.get("requestContext", {}).get("condition", ""))
    parked_at = str(document.get("timestamp", ""))
    store = f"s3://{bucket}/{key}"
    try:
        parsed = parse_event({"Records": records}).records
    except UnsupportedEventError as error:
        yield PlannedRecord(store, "?", f"{len(records)} records", reason, parked_at, problem=str(error))
        return
    for source_record in parsed:
        yield PlannedRecord(
            store, source_record.webhook_id, describe_position(source_record.source_fields()), reason, parked_at
        )
