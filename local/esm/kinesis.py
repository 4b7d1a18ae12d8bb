"""The Kinesis event source mapping, emulated over the local AWS's Kinesis API.

Shards are followed as Lambda follows them: ListShards at the start and every SHARD_DISCOVERY_INTERVAL_SECONDS
after, and a shard is read only once its parents (ParentShardId, AdjacentParentShardId) are finished, i.e.
closed, read to their end and every record of them done. Shards listed at the start begin at StartingPosition
(TRIM_HORIZON, LATEST, or AT_TIMESTAMP with StartingPositionTimestamp); shards a resharding creates later
begin at their start, so nothing written to them is missed.

Per shard, a reader task polls GetRecords (again at once while records keep coming, once per second when the
shard is idle, as Lambda does), drops the records FilterCriteria rejects, and hands the rest to the shard's
lanes. A lane is a run of records that must be processed in order: the whole shard, or with
ParallelizationFactor N one of N groups of partition keys (partition keys hashed as Kinesis hashes them), so a
shard has up to N batches in flight and each partition key stays in order. Each lane invokes the function with
one batch at a time and applies Lambda's error handling to it (each rule as AWS recorded it in LocalStack's
test_lambda_integration_kinesis snapshots):

- full success, including a null or empty response and an empty or null batchItemFailures: the checkpoint
  moves past the batch, after one invocation;
- ReportBatchItemFailures: the checkpoint moves to the LOWEST reported sequence number (compared as integers)
  and that record and every one after it is sent again, as a new batch with a fresh retry budget;
- a function error (exception, timeout, crash) or an invalid partial response fails the whole batch;
- BisectBatchOnFunctionError: a failed batch is split in two halves (with a partial response: at the reported
  sequence number) and the parts are retried in order. A split is not a retry;
- MaximumRetryAttempts counts the failed invocations of the batch being retried (function errors and partial
  failures that did not move the checkpoint; waiting for the function's concurrency is not one); -1 retries
  until the record is too old. Retries back off exponentially, RETRY_BACKOFF_BASE_SECONDS doubling up to
  RETRY_BACKOFF_CAP_SECONDS;
- MaximumRecordAgeInSeconds: before every invocation, records older than that are not sent;
- records given up on (RetryAttemptsExhausted, RecordAgeExceeded) go to the on-failure store (the mapping's S3
  on-failure destination) as one JSON object per batch, and the lane moves on:

    {"requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},  # at least 1
     "responseContext": {"statusCode", "executedVersion", "functionError"},   # when the function answered;
                                                                              # "Unhandled" if it raised, else null
     "version": "1.0", "timestamp": ISO-8601,
     "KinesisBatchInfo": {"shardId", "startSequenceNumber", "endSequenceNumber", "approximateArrivalOfFirstRecord",
                          "approximateArrivalOfLastRecord", "batchSize", "streamArn"},
     "payload": {"Records": [... the Kinesis event records, as the function received them ...]}}

  under the key aws/lambda/<mapping id>/<shard id>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>, as Lambda names them.

Checkpoints (local/esm/checkpoints.py) are kept per shard in a DynamoDB table of the local AWS when the runtime
names one (in memory otherwise): a restarted poller resumes after the last record done, and skips the shards it
finished. IteratorAge is measured as AWS
defines it: when a batch is sent, now minus the approximate arrival time of its last record.

Enhanced fan-out consumers are polled like shared-throughput ones: moto has no SubscribeToShard.
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
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Unpack

from botocore.exceptions import BotoCoreError, ClientError

from dispatcher.timestamps import rfc3339_from_epoch_seconds
from local.esm.base import (
    BatchVerdict,
    Invoker,
    MappingPoller,
    PollerOptions,
    aws_client,
    take_within_payload_limit,
)
from local.esm.checkpoints import SHARD_END, CheckpointStore, DynamoDbCheckpoints, InMemoryCheckpoints
from local.esm.filters import matches_any
from local.spec import ConsumerSpec, KinesisMappingSpec, execution_role_arn, function_arn
from local.workers import InvocationResult

logger = logging.getLogger(__name__)

SHARD_POLL_INTERVAL_SECONDS = 1.0  # Lambda polls an idle shard about once per second
SHARD_DISCOVERY_INTERVAL_SECONDS = 10.0  # how often ListShards looks for shards a resharding created
GET_RECORDS_LIMIT = 10_000  # Kinesis' maximum records per GetRecords call
SHARD_READ_AHEAD_RECORDS = 10_000  # records read but not yet processed, per shard, before the reader pauses
# Lambda backs off between retries of a failed batch: AWS invoked an always-failing batch 8 times in the 60 s
# before its record expired (LocalStack test_kinesis_maximum_record_age_exceeded[expire-while-retrying]).
# Doubling from the base up to the cap puts the attempts at 0, 1, 3, 7, 15, 27, 39, 51 s: 8 in that minute.
RETRY_BACKOFF_BASE_SECONDS = 1.0
RETRY_BACKOFF_CAP_SECONDS = 12.0
KINESIS_SCHEMA_VERSION = "1.0"
# The embedded AWS (moto) has no SubscribeToShard, so an enhanced fan-out consumer cannot be read through
# its own subscription locally; its mapping polls the stream with GetRecords as a shared-throughput one does.
FAN_OUT_POLLED_AS_SHARED = "enhanced fan-out polled as shared throughput: the local AWS has no SubscribeToShard"

RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"

Sleep = Callable[[float], Awaitable[object]]


def retry_backoff_seconds(retry: int) -> float:
    """The pause before the `retry`-th retry (from 1) of a failed batch."""
    doublings_to_cap = math.ceil(math.log2(RETRY_BACKOFF_CAP_SECONDS / RETRY_BACKOFF_BASE_SECONDS))
    return min(RETRY_BACKOFF_CAP_SECONDS, RETRY_BACKOFF_BASE_SECONDS * 2.0 ** min(retry - 1, doublings_to_cap))


@dataclass(frozen=True)
class StreamRecord:
    """One Kinesis record as the mapping handles it."""

    shard_id: str
    sequence_number: str
    partition_key: str
    arrival: float  # ApproximateArrivalTimestamp, epoch seconds
    event_record: dict[str, Any]  # the record as Lambda's Kinesis event carries it

    @property
    def ordinal(self) -> int:
        """Sequence numbers are decimal strings of up to 128-bit integers: order them as integers."""
        return int(self.sequence_number)


@dataclass
class Shard:
    """A shard as ListShards describes it; `finished` is set once it is closed, read to its end and every
    record of it is done, so that its children may be read."""

    shard_id: str
    parents: tuple[str, ...]  # ParentShardId and AdjacentParentShardId, those it has
    closed: bool  # it has an EndingSequenceNumber: nothing will be written to it any more
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class ShardProgress:
    """The records of one shard read and not yet done, in shard order, and the shard's checkpoint: the last
    record before the first one not done (with ParallelizationFactor above 1, lanes finish out of order)."""

    def __init__(self, checkpoint: str | None = None) -> None:
        self.checkpoint = checkpoint
        self.saved = checkpoint  # the checkpoint as the store last got it
        self.saving = asyncio.Lock()  # saves of a shard in order, so an older one never lands last
        self._done: collections.OrderedDict[str, bool] = collections.OrderedDict()

    def read(self, sequence_number: str) -> None:
        self._done[sequence_number] = False

    def finish(self, sequence_numbers: Iterable[str]) -> None:
        for sequence_number in sequence_numbers:
            self._done[sequence_number] = True
        while self._done:
            first, done = next(iter(self._done.items()))
            if not done:
                return
            self._done.popitem(last=False)
            self.checkpoint = first


class _Lane:
    """Records that must be processed in order, oldest first; a batch is always a prefix of them."""

    def __init__(self, name: str, shard_id: str, progress: ShardProgress) -> None:
        self.name = name
        self.shard_id = shard_id
        self.progress = progress
        self.records: collections.deque[StreamRecord] = collections.deque()
        self.closed = False  # the shard's reader reached the end: no record will be added
        self._grew = asyncio.Event()

    def add(self, record: StreamRecord) -> None:
        self.records.append(record)
        self._grew.set()

    def close(self) -> None:
        self.closed = True
        self._grew.set()

    def consume(self, count: int) -> None:
        for _ in range(count):
            self.records.popleft()

    async def wait_for_more(self) -> None:
        self._grew.clear()
        await self._grew.wait()


class KinesisPoller(MappingPoller[KinesisMappingSpec]):
    """The event source mapping of one consumer whose source is a Kinesis stream.

    `await run()` polls until cancelled; `started` is set once every shard that can be read at once has its
    iterator (records put after that are seen even with StartingPosition LATEST). `clock` (epoch seconds) is
    what record ages are measured against, `sleep` is how the mapping waits between retries of a failed batch
    (both injectable, so that tests need not wait out the backoff). Checkpoints go to `checkpoint_table` in
    the local AWS, or stay in memory without one. Counters go to `stats`.
    """

    mapping_type = KinesisMappingSpec

    def __init__(
        self,
        consumer: ConsumerSpec,
        function: Invoker,
        *,
        poll_interval_seconds: float = SHARD_POLL_INTERVAL_SECONDS,
        shard_discovery_interval_seconds: float = SHARD_DISCOVERY_INTERVAL_SECONDS,
        sleep: Sleep = asyncio.sleep,
        checkpoint_table: str | None = None,
        **options: Unpack[PollerOptions],
    ) -> None:
        super().__init__(consumer, function, **options)
        self._poll_interval = poll_interval_seconds
        self._discovery_interval = shard_discovery_interval_seconds
        self._sleep = sleep
        self._kinesis = aws_client("kinesis", self._endpoint_url, self._region)
        self._s3 = aws_client("s3", self._endpoint_url, self._region)
        self._function_arn = function_arn(self._region, self.function_spec.name)
        self._role_arn = execution_role_arn(self.function_spec.name)
        self.mapping_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.mapping.stream_arn}|{self.function_spec.name}"))
        self._checkpoints: CheckpointStore = (
            DynamoDbCheckpoints(checkpoint_table, self.mapping_id, endpoint_url=self._endpoint_url, region=self._region)
            if checkpoint_table
            else InMemoryCheckpoints()
        )
        self._shards: dict[str, Shard] = {}
        self._latest_iterator_age_ms: dict[str, float] = {}

    async def run(self) -> None:
        if self.mapping.fan_out_consumer:
            logger.warning("%s: consumer %s: %s", self._name, self.mapping.fan_out_consumer, FAN_OUT_POLLED_AS_SHARED)
        checkpoints = await self._checkpoints.load()
        listed = await self._list_shards()
        for shard in listed:
            self._shards[shard.shard_id] = shard
            if checkpoints.get(shard.shard_id) == SHARD_END:
                shard.finished.set()
        async with asyncio.TaskGroup() as tasks:
            readable_now = []
            for shard in listed:
                if shard.finished.is_set():
                    continue
                ready = asyncio.Event()
                position = self._position(checkpoints.get(shard.shard_id), self._starting_position())
                tasks.create_task(self._follow_shard(shard, position, ready))
                if not self._unfinished_parents(shard):
                    readable_now.append(ready)
            for ready in readable_now:
                await ready.wait()
            self.started.set()
            while True:
                await asyncio.sleep(self._discovery_interval)
                await self._discover_shards(tasks)

    # -- shards -----------------------------------------------------------------------------------------------

    async def _list_shards(self) -> list[Shard]:
        shards: list[Shard] = []
        arguments: dict[str, Any] = {"StreamName": self.mapping.stream_name}
        while True:
            response = await asyncio.to_thread(self._kinesis.list_shards, **arguments)
            for listed in response["Shards"]:
                parents = tuple(
                    listed[key] for key in ("ParentShardId", "AdjacentParentShardId") if listed.get(key) is not None
                )
                closed = "EndingSequenceNumber" in listed.get("SequenceNumberRange", {})
                shards.append(Shard(listed["ShardId"], parents, closed))
            if not response.get("NextToken"):
                return shards
            arguments = {"NextToken": response["NextToken"]}

    async def _discover_shards(self, tasks: asyncio.TaskGroup) -> None:
        """Note which shards were closed since, and follow the ones a resharding created: from their start,
        after their parents (Lambda reads a child shard only once its parents are done)."""
        try:
            listed = await self._list_shards()
        except (BotoCoreError, ClientError) as error:  # the local AWS restarting: look again next round
            logger.warning("%s: ListShards failed: %s", self._name, error)
            return
        for shard in listed:
            known = self._shards.get(shard.shard_id)
            if known is not None:
                known.closed = shard.closed
                continue
            self._shards[shard.shard_id] = shard
            logger.info("%s: new shard %s after %s", self._name, shard.shard_id, ", ".join(shard.parents) or "none")
            tasks.create_task(self._follow_shard(shard, {"ShardIteratorType": "TRIM_HORIZON"}, asyncio.Event()))

    def _unfinished_parents(self, shard: Shard) -> list[Shard]:
        """Parents no longer listed have left the stream's retention: nothing of them is left to read."""
        parents = (self._shards.get(parent_id) for parent_id in shard.parents)
        return [parent for parent in parents if parent is not None and not parent.finished.is_set()]

    async def _follow_shard(self, shard: Shard, position: dict[str, Any], ready: asyncio.Event) -> None:
        """Read and process the shard once its parents are finished, then mark it finished at its end."""
        for parent in self._unfinished_parents(shard):
            await parent.finished.wait()
        checkpoint = position.get("StartingSequenceNumber")
        progress = ShardProgress(checkpoint)
        lanes = [
            _Lane(f"{shard.shard_id}/{index}", shard.shard_id, progress)
            for index in range(self.mapping.parallelization_factor)
        ]
        async with asyncio.TaskGroup() as tasks:
            for lane in lanes:
                tasks.create_task(self._drain_lane(lane))
            await self._read_shard(shard, position, lanes, ready)
            for lane in lanes:
                lane.close()
        await self._checkpoints.save(shard.shard_id, SHARD_END)
        shard.finished.set()
        logger.info("%s: shard %s finished", self._name, shard.shard_id)

    def _starting_position(self) -> dict[str, Any]:
        if self.mapping.starting_position_timestamp is not None:
            timestamp = datetime.fromtimestamp(self.mapping.starting_position_timestamp, UTC)
            return {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": timestamp}
        return {"ShardIteratorType": self.mapping.starting_position}

    @staticmethod
    def _position(after_sequence_number: str | None, otherwise: dict[str, Any]) -> dict[str, Any]:
        if after_sequence_number is None:
            return otherwise
        return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after_sequence_number}

    # -- reading ----------------------------------------------------------------------------------------------

    async def _shard_iterator(self, shard_id: str, position: dict[str, Any]) -> str:
        response = await asyncio.to_thread(
            self._kinesis.get_shard_iterator, StreamName=self.mapping.stream_name, ShardId=shard_id, **position
        )
        iterator: str = response["ShardIterator"]
        return iterator

    async def _read_shard(
        self, shard: Shard, position: dict[str, Any], lanes: list[_Lane], ready: asyncio.Event
    ) -> None:
        """Read until the shard's end: GetRecords answers without a next iterator (AWS), or a closed shard
        answers with no records (moto keeps answering a closed shard with an iterator)."""
        progress = lanes[0].progress
        last_read: str | None = None
        iterator: str | None = await self._shard_iterator(shard.shard_id, position)
        ready.set()
        while iterator:
            room = SHARD_READ_AHEAD_RECORDS - sum(len(lane.records) for lane in lanes)
            if room <= 0:  # the lanes are behind (or blocked on a failing batch): stop reading ahead
                await asyncio.sleep(self._poll_interval)
                continue
            closed_before_reading = shard.closed
            try:
                response = await asyncio.to_thread(
                    self._kinesis.get_records, ShardIterator=iterator, Limit=min(room, GET_RECORDS_LIMIT)
                )
            except (BotoCoreError, ClientError) as error:  # an expired iterator or the local AWS restarting
                logger.warning(
                    "%s %s: GetRecords failed, re-reading after %s: %s", self._name, shard.shard_id, last_read, error
                )
                await asyncio.sleep(self._poll_interval)
                with contextlib.suppress(BotoCoreError, ClientError):  # still failing: the old iterator next round
                    iterator = await self._shard_iterator(shard.shard_id, self._position(last_read, position))
                continue
            iterator = response.get("NextShardIterator")
            for raw in response["Records"]:
                record = self._stream_record(shard.shard_id, raw)
                last_read = record.sequence_number
                progress.read(record.sequence_number)
                if matches_any(self.mapping.filter_patterns, _filter_document(record, raw["Data"])):
                    lanes[_lane_index(record.partition_key, len(lanes))].add(record)
                else:
                    self.stats.filtered_out += 1
                    progress.finish([record.sequence_number])
            await self._save_checkpoint(shard.shard_id, progress)
            if not response["Records"]:
                if closed_before_reading:
                    return
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

    async def _save_checkpoint(self, shard_id: str, progress: ShardProgress) -> None:
        async with progress.saving:
            position = progress.checkpoint
            if position is None or position == progress.saved:
                return
            await self._checkpoints.save(shard_id, position)
            progress.saved = position

    # -- processing -------------------------------------------------------------------------------------------

    async def _drain_lane(self, lane: _Lane) -> None:
        while batch := await self._next_batch(lane):
            await self._process(lane, batch)

    async def _next_batch(self, lane: _Lane) -> list[StreamRecord]:
        """Wait for records, then up to the batching window for a full batch; none once the lane is closed
        and empty."""
        while not lane.records:
            if lane.closed:
                return []
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
            result, verdict = await self._invoke_lane(lane, records)
            if verdict.succeeded:
                await self._complete(lane, records)
                continue
            checkpoint = _lowest_reported_index(records, verdict)
            await self._complete(lane, records[:checkpoint])  # they succeeded: the checkpoint moves past them
            remainder = records[checkpoint:]
            if checkpoint > 0:
                # What is left after a moved checkpoint is a new batch with a fresh retry budget, as on AWS: with
                # MaximumRetryAttempts 3 the reported record came back 4 more times, approximateInvokeCount 4
                # (LocalStack test_kinesis_report_batch_item_failures, snapshot keys kinesis_records and
                # sqs_payload). With bisection on, this is the split at the reported record: not a retry either.
                parts.appendleft((remainder, 0))
            elif self.mapping.bisect_on_error and len(remainder) > 1:
                middle = len(remainder) // 2
                parts.extendleft([(remainder[middle:], attempts), (remainder[:middle], attempts)])
            elif self._retries_exhausted(attempts + 1):
                await self._give_up(remainder, RETRY_ATTEMPTS_EXHAUSTED, attempts + 1, result)
                await self._complete(lane, remainder)
            else:
                await self._sleep(retry_backoff_seconds(attempts + 1))
                parts.appendleft((remainder, attempts + 1))

    async def _complete(self, lane: _Lane, records: list[StreamRecord]) -> None:
        """The records (a prefix of the lane) are done, delivered or given up on: the checkpoint may move."""
        lane.consume(len(records))
        lane.progress.finish(record.sequence_number for record in records)
        await self._save_checkpoint(lane.shard_id, lane.progress)

    def _retries_exhausted(self, failed_invocations: int) -> bool:
        limit = self.mapping.maximum_retry_attempts
        return limit != -1 and failed_invocations > limit

    async def _give_up_expired(self, lane: _Lane, records: list[StreamRecord], attempts: int) -> list[StreamRecord]:
        """Send the records older than MaximumRecordAgeInSeconds to the on-failure store; return the rest.
        Arrival times grow along a shard, so the expired records are a prefix."""
        maximum_age = self.mapping.maximum_record_age_seconds
        if maximum_age == -1:
            return records
        now = self._clock()
        expired = list(itertools.takewhile(lambda record: now - record.arrival > maximum_age, records))
        if expired:
            await self._give_up(expired, RECORD_AGE_EXCEEDED, attempts, None)
            await self._complete(lane, expired)
        return records[len(expired) :]

    async def _invoke_lane(self, lane: _Lane, records: list[StreamRecord]) -> tuple[InvocationResult, BatchVerdict]:
        self._note_iterator_age(lane, records[-1])
        event_records = [record.event_record for record in records]
        return await self._invoke(event_records, {record.sequence_number for record in records}, lane.name)

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
            logger.warning("%s: %d records dropped (%s), no on-failure store", self._name, len(records), condition)
            self.stats.extra["discarded"] = self.stats.extra.get("discarded", 0.0) + len(records)
            return
        document = self._on_failure_document(records, condition, invocations, last_result)
        now = datetime.now(UTC)
        key = (
            f"aws/lambda/{self.mapping_id}/{records[0].shard_id}/{now:%Y/%m/%d}/{now:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
        )
        body = json.dumps(document).encode()
        await asyncio.to_thread(self._s3.put_object, Bucket=bucket, Key=key, Body=body)
        self.stats.sent_to_on_failure_store += len(records)

    def _on_failure_document(
        self, records: list[StreamRecord], condition: str, invocations: int, last_result: InvocationResult | None
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self._function_arn,
                "condition": condition,
                # AWS writes 1 for records that expired before they were ever sent (LocalStack
                # test_kinesis_maximum_record_age_exceeded[expire-before-ingestion], record_age_exceeded_payload).
                "approximateInvokeCount": max(invocations, 1),
            },
            "version": "1.0",
            "timestamp": rfc3339_from_epoch_seconds(time.time()),
            "KinesisBatchInfo": {
                "shardId": records[0].shard_id,
                "startSequenceNumber": records[0].sequence_number,
                "endSequenceNumber": records[-1].sequence_number,
                "approximateArrivalOfFirstRecord": rfc3339_from_epoch_seconds(records[0].arrival),
                "approximateArrivalOfLastRecord": rfc3339_from_epoch_seconds(records[-1].arrival),
                "batchSize": len(records),
                "streamArn": self.mapping.stream_arn,
            },
            "payload": {"Records": [record.event_record for record in records]},
        }
        if last_result is not None:
            document["responseContext"] = {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                # null when the function answered, even with an invalid partial-batch response (LocalStack
                # test_kinesis_report_batch_item_failure_scenarios[empty_string_item_identifier_failure], sqs_payload).
                "functionError": "Unhandled" if last_result.failed else None,
            }
        return document


def _lowest_reported_index(records: list[StreamRecord], verdict: BatchVerdict) -> int:
    """Where the lane's checkpoint goes after a failure: the lowest reported sequence number, or the batch's
    start when the whole batch failed."""
    if verdict.whole_batch_failed:
        return 0
    lowest = min(int(identifier) for identifier in verdict.reported_failures)
    return next(index for index, record in enumerate(records) if record.ordinal == lowest)


def _lane_index(partition_key: str, lane_count: int) -> int:
    # Kinesis maps partition keys to shards by their MD5; the same hash keeps each key on one lane.
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big") % lane_count


def _filter_document(record: StreamRecord, data: bytes) -> dict[str, Any]:
    """What FilterCriteria patterns see: the record's metadata, and `data` only when it is JSON."""
    document = {key: value for key, value in record.event_record["kinesis"].items() if key != "data"}
    with contextlib.suppress(ValueError):  # includes UnicodeDecodeError: such data cannot match a pattern on `data`
        document["data"] = json.loads(data)
    return document
