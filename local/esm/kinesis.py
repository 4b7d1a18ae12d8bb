"""The Kinesis event source mapping, emulated over the local AWS's Kinesis API.

Per shard, a reader task polls GetRecords (again at once while records keep coming, once per second when the
shard is idle, as Lambda does), drops the records FilterCriteria rejects, and hands the rest to the shard's
lanes. A lane is a run of records that must be processed in order: the whole shard, or with
ParallelizationFactor N one of N groups of partition keys (partition keys hashed as Kinesis hashes them), so a
shard has up to N batches in flight and each partition key stays in order. Each lane invokes the function with
one batch at a time and applies Lambda's error handling to it:

- full success: the lane's checkpoint moves past the batch;
- ReportBatchItemFailures: the checkpoint moves to the LOWEST reported sequence number (compared as integers)
  and that record and every one after it is sent again;
- a function error (exception, timeout, crash) or an invalid partial response fails the whole batch;
- BisectBatchOnFunctionError: a failed batch is split in two halves (with a partial response: at the reported
  sequence number) and the parts are retried in order. A split is not a retry;
- MaximumRetryAttempts counts the failed invocations of the batch being retried (function errors and partial
  failures; waiting for the function's concurrency is not one); -1 retries until the record is too old;
- MaximumRecordAgeInSeconds: before every invocation, records older than that are not sent;
- records given up on (RetryAttemptsExhausted, RecordAgeExceeded) go to the S3 on-failure destination as one
  JSON object per batch, and the lane moves on:

    {"requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "responseContext": {"statusCode", "executedVersion", "functionError"},   # when the function answered
     "version": "1.0", "timestamp": ISO-8601,
     "KinesisBatchInfo": {"shardId", "startSequenceNumber", "endSequenceNumber", "approximateArrivalOfFirstRecord",
                          "approximateArrivalOfLastRecord", "batchSize", "streamArn"},
     "payload": {"Records": [... the Kinesis event records, as the function received them ...]}}

  under the key aws/lambda/<mapping id>/<shard id>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>, as Lambda names them.

IteratorAge is measured as AWS defines it: when a batch is sent, now minus the approximate arrival time of its
last record. Checkpoints live in memory: a restarted poller starts again from StartingPosition.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from local.esm.base import (
    BatchVerdict,
    Invoker,
    aws_client,
    execution_role_arn,
    judge,
    record_invocation,
    take_within_payload_limit,
)
from local.esm.filters import matches_any, validate_patterns
from local.spec import ConsumerSpec, ConsumerStats, KinesisMappingSpec
from local.workers import InvocationResult

logger = logging.getLogger(__name__)

SHARD_POLL_INTERVAL_SECONDS = 1.0  # Lambda polls an idle shard about once per second
GET_RECORDS_LIMIT = 10_000  # Kinesis' maximum records per GetRecords call
SHARD_READ_AHEAD_RECORDS = 10_000  # records read but not yet processed, per shard, before the reader pauses
# Lambda documents no pause between retries of a failed batch; a short one keeps a function that fails at once
# from spinning a CPU core while it retries until the records expire.
RETRY_PAUSE_SECONDS = 0.2
KINESIS_SCHEMA_VERSION = "1.0"

RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True)
class StreamRecord:
    """One Kinesis record as the mapping handles it."""

    shard_id: str
    sequence_number: str
    partition_key: str
    arrival: float  # ApproximateArrivalTimestamp, epoch seconds
    event_record: dict[str, Any]  # the record as Lambda's Kinesis event carries it

    @property
    def position(self) -> int:
        """Sequence numbers are decimal strings of up to 128-bit integers: order them as integers."""
        return int(self.sequence_number)


class _Lane:
    """Records that must be processed in order, oldest first; a batch is always a prefix of them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: collections.deque[StreamRecord] = collections.deque()
        self._grew = asyncio.Event()

    def add(self, record: StreamRecord) -> None:
        self.records.append(record)
        self._grew.set()

    def consume(self, count: int) -> None:
        for _ in range(count):
            self.records.popleft()

    async def wait_for_more(self) -> None:
        self._grew.clear()
        await self._grew.wait()


class KinesisPoller:
    """The event source mapping of one consumer whose source is a Kinesis stream.

    `await run()` polls until cancelled; `started` is set once every shard has its iterator (records put after
    that are seen even with StartingPosition LATEST). `clock` (epoch seconds) is what record ages are measured
    against. Counters go to `stats`.
    """

    def __init__(
        self,
        consumer: ConsumerSpec,
        function: Invoker,
        *,
        endpoint_url: str,
        region: str,
        stats: ConsumerStats | None = None,
        poll_interval_seconds: float = SHARD_POLL_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(consumer.mapping, KinesisMappingSpec):
            raise TypeError(f"{consumer.function.name}: not a Kinesis mapping: {consumer.mapping!r}")
        if consumer.mapping.starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise ValueError(f"unsupported StartingPosition {consumer.mapping.starting_position!r}")
        validate_patterns(consumer.mapping.filter_patterns)
        self.mapping: KinesisMappingSpec = consumer.mapping
        self.function_spec = consumer.function
        self.stats = stats or ConsumerStats()
        self.started = asyncio.Event()
        self._function = function
        self._region = region
        self._poll_interval = poll_interval_seconds
        self._clock = clock
        self._kinesis = aws_client("kinesis", endpoint_url, region)
        self._s3 = aws_client("s3", endpoint_url, region)
        account = self.mapping.stream_arn.split(":")[4]
        self._function_arn = f"arn:aws:lambda:{region}:{account}:function:{self.function_spec.name}"
        self._role_arn = execution_role_arn(self.function_spec.name)
        self._mapping_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.mapping.stream_arn}|{self.function_spec.name}")
        self._latest_iterator_age_ms: dict[str, float] = {}

    async def run(self) -> None:
        shard_ids = await self._shard_ids()
        ready = [asyncio.Event() for _ in shard_ids]
        async with asyncio.TaskGroup() as tasks:
            for shard_id, shard_ready in zip(shard_ids, ready, strict=True):
                lanes = [_Lane(f"{shard_id}/{index}") for index in range(self.mapping.parallelization_factor)]
                tasks.create_task(self._read_shard(shard_id, lanes, shard_ready))
                for lane in lanes:
                    tasks.create_task(self._drain_lane(lane))
            for shard_ready in ready:
                await shard_ready.wait()
            self.started.set()

    # -- reading ----------------------------------------------------------------------------------------------

    async def _shard_ids(self) -> list[str]:
        shard_ids: list[str] = []
        arguments: dict[str, Any] = {"StreamName": self.mapping.stream_name}
        while True:
            response = await asyncio.to_thread(self._kinesis.list_shards, **arguments)
            shard_ids.extend(shard["ShardId"] for shard in response["Shards"])
            if not response.get("NextToken"):
                return shard_ids
            arguments = {"NextToken": response["NextToken"]}

    async def _shard_iterator(self, shard_id: str, after_sequence_number: str | None) -> str:
        position: dict[str, str] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after_sequence_number}
            if after_sequence_number
            else {"ShardIteratorType": self.mapping.starting_position}
        )
        response = await asyncio.to_thread(
            self._kinesis.get_shard_iterator, StreamName=self.mapping.stream_name, ShardId=shard_id, **position
        )
        iterator: str = response["ShardIterator"]
        return iterator

    async def _read_shard(self, shard_id: str, lanes: list[_Lane], ready: asyncio.Event) -> None:
        last_read: str | None = None
        iterator: str | None = await self._shard_iterator(shard_id, None)
        ready.set()
        while iterator:
            room = SHARD_READ_AHEAD_RECORDS - sum(len(lane.records) for lane in lanes)
            if room <= 0:  # the lanes are behind (or blocked on a failing batch): stop reading ahead
                await asyncio.sleep(self._poll_interval)
                continue
            try:
                response = await asyncio.to_thread(
                    self._kinesis.get_records, ShardIterator=iterator, Limit=min(room, GET_RECORDS_LIMIT)
                )
            except (BotoCoreError, ClientError) as error:  # an expired iterator or the local AWS restarting
                logger.warning(
                    "%s %s: GetRecords failed, re-reading after %s: %s", self._name, shard_id, last_read, error
                )
                await asyncio.sleep(self._poll_interval)
                with contextlib.suppress(BotoCoreError, ClientError):  # still failing: the old iterator next round
                    iterator = await self._shard_iterator(shard_id, last_read)
                continue
            iterator = response.get("NextShardIterator")
            for raw in response["Records"]:
                record = self._stream_record(shard_id, raw)
                last_read = record.sequence_number
                if matches_any(self.mapping.filter_patterns, _filter_document(record, raw["Data"])):
                    lanes[_lane_index(record.partition_key, len(lanes))].add(record)
                else:
                    self.stats.filtered_out += 1
            if not response["Records"]:
                await asyncio.sleep(self._poll_interval)

    def _stream_record(self, shard_id: str, raw: dict[str, Any]) -> StreamRecord:
        arrival = raw["ApproximateArrivalTimestamp"].timestamp()
        sequence_number = raw["SequenceNumber"]
        event_record = {
            "kinesis": {
                "kinesisSchemaVersion": KINESIS_SCHEMA_VERSION,
                "partitionKey": raw["PartitionKey"],
                "sequenceNumber": sequence_number,
                "data": base64.b64encode(raw["Data"]).decode("ascii"),
                "approximateArrivalTimestamp": round(arrival, 3),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{sequence_number}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": self._role_arn,
            "awsRegion": self._region,
            "eventSourceARN": self.mapping.stream_arn,
        }
        return StreamRecord(shard_id, sequence_number, raw["PartitionKey"], arrival, event_record)

    # -- processing -------------------------------------------------------------------------------------------

    async def _drain_lane(self, lane: _Lane) -> None:
        while True:
            await self._process(lane, await self._next_batch(lane))

    async def _next_batch(self, lane: _Lane) -> list[StreamRecord]:
        """Wait for records, then up to the batching window for a full batch."""
        while not lane.records:
            await lane.wait_for_more()
        window_closes = time.monotonic() + self.mapping.batching_window_seconds
        while len(lane.records) < self.mapping.batch_size and (remaining := window_closes - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(lane.wait_for_more(), remaining)
            except TimeoutError:
                break
        candidates = list(itertools.islice(lane.records, self.mapping.batch_size))
        return candidates[: take_within_payload_limit([record.event_record for record in candidates], len(candidates))]

    async def _process(self, lane: _Lane, batch: list[StreamRecord]) -> None:
        """Invoke until every record of `batch` succeeded or was given up on; each part is a prefix of the lane."""
        # (records, failed invocations counted toward MaximumRetryAttempts), processed front to back.
        parts: collections.deque[tuple[list[StreamRecord], int]] = collections.deque([(batch, 0)])
        while parts:
            records, attempts = parts.popleft()
            records = await self._give_up_expired(lane, records, attempts)
            if not records:
                continue
            result, verdict = await self._invoke(lane, records)
            if verdict.succeeded:
                lane.consume(len(records))
                continue
            checkpoint = _lowest_reported_index(records, verdict)
            lane.consume(checkpoint)  # everything before the lowest reported failure succeeded
            remainder = records[checkpoint:]
            if self.mapping.bisect_on_error and checkpoint > 0:
                parts.appendleft((remainder, attempts))  # split at the reported record: not a retry
            elif self.mapping.bisect_on_error and len(remainder) > 1:
                middle = len(remainder) // 2
                parts.extendleft([(remainder[middle:], attempts), (remainder[:middle], attempts)])
            elif self._retries_exhausted(attempts + 1):
                await self._give_up(remainder, RETRY_ATTEMPTS_EXHAUSTED, attempts + 1, result)
                lane.consume(len(remainder))
            else:
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                parts.appendleft((remainder, attempts + 1))

    def _retries_exhausted(self, failed_invocations: int) -> bool:
        limit = self.mapping.maximum_retry_attempts
        return limit != -1 and failed_invocations > limit

    async def _give_up_expired(self, lane: _Lane, records: list[StreamRecord], attempts: int) -> list[StreamRecord]:
        """Send the records older than MaximumRecordAgeInSeconds to the on-failure destination; return the rest.
        Arrival times grow along a shard, so the expired records are a prefix."""
        maximum_age = self.mapping.maximum_record_age_seconds
        if maximum_age == -1:
            return records
        now = self._clock()
        expired = list(itertools.takewhile(lambda record: now - record.arrival > maximum_age, records))
        if expired:
            await self._give_up(expired, RECORD_AGE_EXCEEDED, attempts, None)
            lane.consume(len(expired))
        return records[len(expired) :]

    async def _invoke(self, lane: _Lane, records: list[StreamRecord]) -> tuple[InvocationResult, BatchVerdict]:
        self._note_iterator_age(lane, records[-1])
        self.stats.records_in_flight += len(records)
        try:
            result = await self._function.invoke({"Records": [record.event_record for record in records]})
        finally:
            self.stats.records_in_flight -= len(records)
        identifiers = {record.sequence_number for record in records}
        verdict = judge(result, identifiers, self.mapping.report_batch_item_failures)
        record_invocation(self.stats, result, verdict)
        if not verdict.succeeded:
            logger.info("%s %s: batch of %d failed: %s", self._name, lane.name, len(records), verdict.reason)
        return result, verdict

    def _note_iterator_age(self, lane: _Lane, last_record: StreamRecord) -> None:
        age_ms = max(0.0, (self._clock() - last_record.arrival) * 1000)
        self._latest_iterator_age_ms[lane.name] = age_ms
        self.stats.iterator_age_ms = max(self._latest_iterator_age_ms.values())
        self.stats.max_iterator_age_ms = max(self.stats.max_iterator_age_ms, age_ms)

    async def _give_up(
        self, records: list[StreamRecord], condition: str, invocations: int, last_result: InvocationResult | None
    ) -> None:
        bucket = self.mapping.on_failure_bucket
        if bucket is None:
            logger.warning(
                "%s: %d records dropped (%s), no on-failure destination", self._name, len(records), condition
            )
            self.stats.extra["discarded"] = self.stats.extra.get("discarded", 0.0) + len(records)
            return
        document = self._on_failure_document(records, condition, invocations, last_result)
        now = datetime.now(UTC)
        key = (
            f"aws/lambda/{self._mapping_id}/{records[0].shard_id}/{now:%Y/%m/%d}/{now:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
        )
        body = json.dumps(document).encode()
        await asyncio.to_thread(self._s3.put_object, Bucket=bucket, Key=key, Body=body)
        self.stats.sent_to_on_failure += len(records)

    def _on_failure_document(
        self, records: list[StreamRecord], condition: str, invocations: int, last_result: InvocationResult | None
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self._function_arn,
                "condition": condition,
                "approximateInvokeCount": invocations,
            },
            "version": "1.0",
            "timestamp": _iso(time.time()),
            "KinesisBatchInfo": {
                "shardId": records[0].shard_id,
                "startSequenceNumber": records[0].sequence_number,
                "endSequenceNumber": records[-1].sequence_number,
                "approximateArrivalOfFirstRecord": _iso(records[0].arrival),
                "approximateArrivalOfLastRecord": _iso(records[-1].arrival),
                "batchSize": len(records),
                "streamArn": self.mapping.stream_arn,
            },
            "payload": {"Records": [record.event_record for record in records]},
        }
        if last_result is not None:
            document["responseContext"] = {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if last_result.failed else "",
            }
        return document

    @property
    def _name(self) -> str:
        return f"{self.function_spec.name} <- {self.mapping.stream_name}"


def _lowest_reported_index(records: list[StreamRecord], verdict: BatchVerdict) -> int:
    """Where the lane's checkpoint goes after a failure: the lowest reported sequence number, or the batch's
    start when the whole batch failed."""
    if verdict.whole_batch_failed:
        return 0
    lowest = min(int(identifier) for identifier in verdict.reported_failures)
    return next(index for index, record in enumerate(records) if record.position == lowest)


def _lane_index(partition_key: str, lane_count: int) -> int:
    # Kinesis maps partition keys to shards by their MD5; the same hash keeps each key on one lane.
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big") % lane_count


def _filter_document(record: StreamRecord, data: bytes) -> dict[str, Any]:
    """What FilterCriteria patterns see: the record's metadata, and `data` only when it is JSON."""
    document = {key: value for key, value in record.event_record["kinesis"].items() if key != "data"}
    with contextlib.suppress(ValueError):  # includes UnicodeDecodeError: such data cannot match a pattern on `data`
        document["data"] = json.loads(data)
    return document


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
