"""`dispatcher demo`: the whole system locally, with a demo receiver, N events and an account of each.

Three subscriptions of a demo registry (a Kinesis stream with several partition keys read in order, a
standard queue read without order, a FIFO queue read in order per group) are synthesized as the `dev`
environment, run on the embedded AWS, and fed N events. The demo then accounts for every event: it
reached the receiver (verified, deduped) or was set aside with its payload: parked by the dispatcher, or in a
source DLQ or an on-failure store. Nothing else is fine.

Every subscription has a retry lane with a short schedule (rounds a few real seconds apart, long enough to
outlast the key outage), so records that fail for a while are delivered late, in order, within the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dispatcher.config import MAX_RETRY_ROUNDS
from local.receiver import DemoReceiver, FaultKnobs
from local.runtime import LocalSystem, RunningConsumer, SubscriptionReadings
from local.spec import KinesisMappingSpec
from producer import Event, KinesisProducer, SqsProducer
from redrive.parked import StoredPayload, parked_payload

DEFAULT_EVENTS = 2_000
DEFAULT_POISON_RATE = 0.005  # events the receiver refuses for good (422): they must end up parked
PARTITION_KEYS = 8  # customers: records of one key must arrive in order
STREAM = "demo-events"
STANDARD_QUEUE = "demo-jobs"
FIFO_QUEUE = "demo-orders.fifo"
PRODUCE_CHUNK = 250  # events per producer call, so progress shows while producing
PROGRESS_INTERVAL_SECONDS = 0.5
# With --crash-rate a FIFO batch waits out its visibility timeout (6x the function timeout), as on AWS.
DEFAULT_TIMEOUT_SECONDS = 900.0
REQUEST_TIMEOUT_SECONDS = 1.0  # the demo subscriptions' request timeout; the receiver's stall outlasts it
RECEIVER_STALL_SECONDS = 1.5
DLQ_READ_VISIBILITY_SECONDS = 30  # hides a message while the demo reads the queue through, then shown again
SQS_BATCH_LIMIT = 10  # entries per ChangeMessageVisibilityBatch
DEFAULT_OUTAGE_SECONDS = 10.0  # how long the key outage lasts from the first request the receiver gets
MAX_OUTAGE_SECONDS = 3600.0  # the demo runs minutes; its retry schedule must outlast the outage
DEMO_RETRY_ROUND_SECONDS = 2  # the demo's retry lanes: a round every few real seconds
SPARE_RETRY_ROUNDS = 3  # rounds after the outage ended, so a record outlasts it and is delivered, not parked
# Beyond --timeout: producing, and reading what was set aside after the wait. A demo still running then is stuck
# somewhere no timeout of its own covers, and ends naming what each of its tasks waits on.
STUCK_AFTER_TIMEOUT_SECONDS = 120.0
STOP_SECONDS = 60.0  # stopping the local system (pollers, workers, the embedded AWS) takes seconds, never this
STACKS_TAKEN_SECONDS = 0.1  # between taking a stuck demo's task stacks and cancelling its work


@dataclass(frozen=True)
class DemoOptions:
    events: int = DEFAULT_EVENTS
    fail_rate: float = 0.0
    timeout_rate: float = 0.0
    latency_ms: float = 0.0
    crash_rate: float = 0.0
    poison_rate: float = DEFAULT_POISON_RATE
    aws_port: int = 0  # 0: any free port
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    seed: int | None = None
    key_outage_rate: float = 0.0  # share of the partition keys whose events the receiver answers 503 ...
    outage_seconds: float = DEFAULT_OUTAGE_SECONDS  # ... for this long from the first request the receiver gets


@dataclass
class DemoReport:
    produced: int = 0
    delivered: int = 0  # unique events the receiver accepted
    duplicates_absorbed: int = 0  # POSTs of an event the receiver already had
    retries: int = 0  # HTTP retries inside invocations (the function's Retried metric)
    parked: int = 0  # events set aside with their payload: parked, or in a source DLQ or an on-failure store
    lost: int = 0  # produced - delivered - parked
    out_of_order: int = 0  # accepted on an ordered subscription after one of its key that was produced later
    stale_by_sequence: int = 0  # what the receiver took for stale by dispatch-sequence (a real one would drop it)
    payload_mismatches: int = 0  # delivered or parked with a payload other than the one produced
    max_iterator_age_ms: float = 0.0
    key_outage_refusals: int = 0  # 503s the receiver answered to the events of the keys in its outage
    max_held_keys: int = 0  # the most keys held in the retry lanes at once, of all subscriptions
    max_oldest_in_lane_seconds: float = 0.0  # the oldest record waiting in a retry lane, the most seen
    events_per_second: float = 0.0
    elapsed_seconds: float = 0.0
    timed_out: bool = False
    by_subscription: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.out_of_order == 0
            and self.stale_by_sequence == 0
            and self.payload_mismatches == 0
            and not self.timed_out
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


ProgressCallback = Callable[[str, int, int], None]  # (phase, done, total)


def demo_events(count: int, poison_rate: float, seed: int | None) -> list[dict[str, Any]]:
    """Events spread over the three sources: half on the stream, a quarter on each queue."""
    chooser = random.Random(seed)
    events = []
    for number in range(count):
        lane = number % 4
        destination = STREAM if lane < 2 else STANDARD_QUEUE if lane == 2 else FIFO_QUEUE
        event: dict[str, Any] = {
            "id": f"demo-{number:07d}",
            "type": "demo.created",
            "destination": destination,
            "customer": f"customer-{number // 4 % PARTITION_KEYS}",  # every source sees every key
            "number": number,
        }
        if chooser.random() < poison_rate:
            event["poison"] = True
        events.append(event)
    return events


def outage_keys(rate: float, seed: int | None) -> frozenset[str]:
    """The partition keys in the key outage: a share `rate` of the demo's keys (at least one when it is above 0)."""
    customers = [f"customer-{number}" for number in range(PARTITION_KEYS)]
    count = max(1, round(rate * PARTITION_KEYS)) if rate > 0 else 0
    return frozenset(random.Random(seed).sample(customers, count))


def demo_retry_schedule(outage_seconds: float) -> list[int]:
    """The demo subscriptions' retry_schedule_seconds: rounds DEMO_RETRY_ROUND_SECONDS apart that last beyond the
    outage by SPARE_RETRY_ROUNDS, the waits stretched when that many rounds would be more than the registry takes."""
    rounds = _ceiling_division(outage_seconds, DEMO_RETRY_ROUND_SECONDS) + SPARE_RETRY_ROUNDS
    if rounds <= MAX_RETRY_ROUNDS:
        return [DEMO_RETRY_ROUND_SECONDS] * rounds
    return [_ceiling_division(outage_seconds, MAX_RETRY_ROUNDS - SPARE_RETRY_ROUNDS)] * MAX_RETRY_ROUNDS


def _ceiling_division(seconds: float, divisor: int) -> int:
    """The ceiling of seconds / divisor, by floor division: math.ceil(seconds / divisor) rounds the smallest
    positive quotients (underflowing to 0.0) down to 0."""
    return int(-(-seconds // divisor))


def write_demo_registry(root: Path, receiver: DemoReceiver, outage_seconds: float = DEFAULT_OUTAGE_SECONDS) -> Path:
    """The demo registry: one team, three subscriptions pointing at the receiver, with retry lanes whose schedule
    outlasts a key outage of `outage_seconds`."""
    registry = root / "registry"
    (registry / "teams").mkdir(parents=True, exist_ok=True)
    sources = {
        "streams": [{"name": STREAM, "mode": "provisioned", "shards": 2, "retention_hours": 24}],
        "queues": [{"name": STANDARD_QUEUE, "max_receive_count": 5}, {"name": FIFO_QUEUE, "max_receive_count": 5}],
    }
    loopback = {"allow_http": True, "allow_private_cidrs": ["127.0.0.0/8", "::1/128"]}
    common = {
        "request_timeout_seconds": REQUEST_TIMEOUT_SECONDS,
        "max_attempts": 3,
        "retry_schedule_seconds": demo_retry_schedule(outage_seconds),
        **loopback,
    }
    subscriptions = [
        {
            "name": "demo-events-ordered",
            "source": f"stream/{STREAM}",
            "batch_size": 100,
            "reserved_concurrency": 2,
            "ordering": "partition-key",
            "max_in_flight": 16,
            "max_record_age_seconds": 3600,
            **common,
        },
        {
            "name": "demo-jobs",
            "source": f"queue/{STANDARD_QUEUE}",
            "batch_size": 10,
            "reserved_concurrency": 4,
            "ordering": "none",
            "max_in_flight": 10,
            **common,
        },
        {
            "name": "demo-orders-fifo",
            "source": f"queue/{FIFO_QUEUE}",
            "batch_size": 10,
            "reserved_concurrency": 2,
            "ordering": "partition-key",
            "max_in_flight": 10,
            **common,
        },
    ]
    for subscription in subscriptions:
        # A host name, not a literal address: the registry refuses literal loopback endpoints.
        subscription["endpoint"] = f"http://localhost:{receiver.port}/hooks/{subscription['name']}"
        subscription["signing_secret"] = f"demo/{subscription['name']}"
    (registry / "sources.yaml").write_text(yaml.safe_dump(sources, sort_keys=False))
    team = {"team": "demo", "alerts_email": "demo@example.com", "subscriptions": subscriptions}
    (registry / "teams" / "demo.yaml").write_text(yaml.safe_dump(team, sort_keys=False))
    return registry


T = TypeVar("T")


class DemoStuckError(RuntimeError):
    """A part of the demo did not end within its limit; the message says where each task was waiting."""


async def within(seconds: float, work: Coroutine[Any, Any, T], what: str) -> T:
    """`await work`, or DemoStuckError once `seconds` passed, naming where every task of the loop was waiting at
    that moment (taken before the work is cancelled, which unwinds its stack): a stuck demo explains itself."""
    loop = asyncio.get_running_loop()
    waits: list[str] = []
    # At the limit the stacks are taken; a moment later the work is cancelled (its own timer, run after this one).
    taking = loop.call_later(seconds, lambda: waits.extend(_task_waits(loop)))
    limit = asyncio.timeout(seconds + STACKS_TAKEN_SECONDS)
    try:
        async with limit:
            return await work
    except TimeoutError:
        if not limit.expired():
            raise  # a TimeoutError of the work's own
        raise DemoStuckError(
            f"{what} did not end within {seconds:g} s; where each task was waiting:\n" + "\n".join(waits)
        ) from None
    finally:
        taking.cancel()


def _task_waits(loop: asyncio.AbstractEventLoop) -> list[str]:
    """One entry per task of `loop`: its name and the coroutines it is suspended in, outermost first, followed
    through what each awaits (Task.get_stack shows the outermost only)."""
    waits = []
    for task in asyncio.all_tasks(loop):
        lines = [f"  task {task.get_name()}:"]
        # The innermost awaits a future, whose wrapper names nothing: the frames say where.
        awaited: Any = task.get_coro()
        while awaited is not None and hasattr(awaited, "cr_frame"):
            frame = awaited.cr_frame
            if frame is not None:
                lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
            awaited = awaited.cr_await
        waits.append("\n".join(lines))
    return sorted(waits)


class Demo:
    def __init__(self, options: DemoOptions, workdir: Path, on_progress: ProgressCallback | None = None) -> None:
        self.options = options
        self.workdir = workdir
        self.on_progress = on_progress or (lambda phase, done, total: None)
        faults = FaultKnobs(
            fail_rate=options.fail_rate,
            timeout_rate=options.timeout_rate,
            latency_ms=options.latency_ms,
            stall_seconds=RECEIVER_STALL_SECONDS,
            outage_keys=outage_keys(options.key_outage_rate, options.seed),
            outage_seconds=options.outage_seconds,
        )
        self.receiver = DemoReceiver(faults, seed=options.seed)
        self.system: LocalSystem | None = None

    async def run(self) -> DemoReport:
        self.receiver.start()
        try:
            registry = write_demo_registry(self.workdir, self.receiver, self.options.outage_seconds)
            self.system = LocalSystem(
                registry, self.workdir, port=self.options.aws_port, crash_probability=self.options.crash_rate
            )
            self.on_progress("starting the local system", 0, 1)
            await self.system.start()
            for consumer in self.system.consumers:
                self.receiver.register(consumer.subscription, self.system.secret_of(consumer), ordered=consumer.ordered)
            limit = self.options.timeout_seconds + STUCK_AFTER_TIMEOUT_SECONDS
            return await within(limit, self._produce_and_account(self.system), "the demo")
        finally:
            if self.system is not None:
                await within(STOP_SECONDS, self.system.stop(), "stopping the local system")
            self.receiver.stop()

    async def _produce_and_account(self, system: LocalSystem) -> DemoReport:
        events = demo_events(self.options.events, self.options.poison_rate, self.options.seed)
        produced = {event["id"]: event for event in events}
        started = time.monotonic()
        self.receiver.start_key_outage()
        lanes = LaneHighs()
        watching = asyncio.create_task(lanes.watch(system))
        try:
            parked, timed_out = await self._wait_for_every_event(system, events, produced, started)
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        elapsed = time.monotonic() - started
        return self._report(system, produced, parked, elapsed, timed_out, lanes)

    async def _wait_for_every_event(
        self, system: LocalSystem, events: list[dict[str, Any]], produced: dict[str, Any], started: float
    ) -> tuple[dict[str, Any], bool]:
        """Produce the events and wait until each is delivered or set aside (or the timeout): the payloads set
        aside, and whether the wait timed out."""
        await self._produce(system, events)
        deadline = started + self.options.timeout_seconds
        timed_out = False
        while True:
            parked = await asyncio.to_thread(lambda: dict(_parked_payloads(system)))
            accounted = self._delivered_ids(produced) | (parked.keys() & produced.keys())
            self.on_progress("delivering", len(accounted), len(produced))
            if len(accounted) >= len(produced):
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
        return parked, timed_out

    async def _produce(self, system: LocalSystem, events: list[dict[str, Any]]) -> None:
        aws = system.aws
        producers: dict[str, KinesisProducer | SqsProducer] = {
            STREAM: KinesisProducer(f"dev-{STREAM}", partition_key_field="customer", client=aws.client("kinesis")),
            STANDARD_QUEUE: SqsProducer(f"dev-{STANDARD_QUEUE}", client=aws.client("sqs")),
            FIFO_QUEUE: SqsProducer(f"dev-{FIFO_QUEUE}", group_id_field="customer", client=aws.client("sqs")),
        }
        sent = 0
        for start in range(0, len(events), PRODUCE_CHUNK):
            chunk = events[start : start + PRODUCE_CHUNK]
            for destination, producer in producers.items():
                batch: list[Event] = [event for event in chunk if event["destination"] == destination]
                if batch:
                    await asyncio.to_thread(producer.send, batch)
            sent += len(chunk)
            self.on_progress("producing", sent, len(events))

    def _delivered_ids(self, produced: dict[str, Any]) -> set[str]:
        accepted: set[str] = set()
        for ledger in self.receiver.ledgers.values():
            accepted.update(ledger.accepted)
        return accepted & produced.keys()

    def _report(
        self,
        system: LocalSystem,
        produced: dict[str, dict[str, Any]],
        parked_payloads: dict[str, Any],
        elapsed: float,
        timed_out: bool,
        lanes: LaneHighs,
    ) -> DemoReport:
        delivered_ids = self._delivered_ids(produced)
        parked_ids = parked_payloads.keys() & produced.keys() - delivered_ids
        mismatches = self._delivered_payload_mismatches(produced)
        mismatches += sum(1 for event_id in parked_ids if parked_payloads[event_id] != produced[event_id])
        totals = self.receiver.totals()
        report = DemoReport(
            produced=len(produced),
            delivered=len(delivered_ids),
            duplicates_absorbed=totals["duplicates"],
            retries=sum(stats.retried for consumer in system.consumers for stats in consumer.all_stats),
            parked=len(parked_ids),
            lost=len(produced.keys() - delivered_ids - parked_ids),
            out_of_order=sum(
                accepted_out_of_produced_order(ledger.accepted, produced)
                for ledger in self.receiver.ledgers.values()
                if ledger.ordered
            ),
            stale_by_sequence=totals["out_of_order"],
            payload_mismatches=mismatches,
            max_iterator_age_ms=_max_iterator_age_ms(system),
            key_outage_refusals=totals["outage_refusals"],
            max_held_keys=lanes.held_keys,
            max_oldest_in_lane_seconds=lanes.oldest_in_lane_seconds,
            events_per_second=len(produced) / elapsed if elapsed > 0 else 0.0,
            elapsed_seconds=elapsed,
            timed_out=timed_out,
        )
        report.by_subscription = {consumer.subscription: _consumer_counts(consumer) for consumer in system.consumers}
        return report

    def _delivered_payload_mismatches(self, produced: dict[str, dict[str, Any]]) -> int:
        """How many produced events the receiver accepted with a body other than the one produced."""
        return sum(
            1
            for ledger in self.receiver.ledgers.values()
            for webhook_id, body in ledger.accepted.items()
            if webhook_id in produced and json.loads(body) != produced[webhook_id]
        )


@dataclass
class LaneHighs:
    """The highest readings of the retry lanes seen while the demo ran: held keys (all subscriptions together) and
    the age of the oldest record in a lane."""

    held_keys: int = 0
    oldest_in_lane_seconds: float = 0.0

    async def watch(self, system: LocalSystem) -> None:
        """Read the lanes every PROGRESS_INTERVAL_SECONDS until cancelled."""
        while True:
            self.seen(await asyncio.to_thread(system.readings))
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)

    def seen(self, readings: dict[str, SubscriptionReadings]) -> None:
        held = sum(reading.held_keys or 0 for reading in readings.values())
        oldest = max((reading.oldest_in_lane_seconds or 0.0 for reading in readings.values()), default=0.0)
        self.held_keys = max(self.held_keys, held)
        self.oldest_in_lane_seconds = max(self.oldest_in_lane_seconds, oldest)


def accepted_out_of_produced_order(accepted: Iterable[str], produced: dict[str, dict[str, Any]]) -> int:
    """How many events (webhook ids, in the order the receiver took them) were taken after an event of the same
    key that was produced later: a later event went out while an earlier one was still undelivered, which an
    ordered subscription never does. Judged by the order the demo produced its events in, so it holds even if
    the sequence numbers the receiver compares were wrong. Parked events are never taken, so they never count."""
    newest: dict[str, int] = {}  # key -> the highest event number taken so far
    late = 0
    for webhook_id in accepted:
        event = produced.get(webhook_id)
        if event is None:
            continue
        key, number = event["customer"], event["number"]
        if number < newest.get(key, number):
            late += 1
        else:
            newest[key] = number
    return late


def _max_iterator_age_ms(system: LocalSystem) -> float:
    kinesis_consumers = [c for c in system.consumers if isinstance(c.spec.mapping, KinesisMappingSpec)]
    return max((consumer.stats.max_iterator_age_ms for consumer in kinesis_consumers), default=0.0)


def _consumer_counts(consumer: RunningConsumer) -> dict[str, int]:
    """The function's counts over its source's mapping and its retry lane's."""
    stats = consumer.all_stats
    return {
        "invocations": sum(counts.invocations for counts in stats),
        "function_errors": sum(counts.function_errors for counts in stats),
        "delivered": sum(int(counts.delivered) for counts in stats),
        "parked": sum(int(counts.parked) for counts in stats),
        "retried": sum(int(counts.retried) for counts in stats),
        "duplicates_skipped": sum(int(counts.duplicates_skipped) for counts in stats),
    }


def _parked_payloads(system: LocalSystem) -> Iterable[tuple[str, Any]]:
    """(event id, payload) of everything set aside (parked-records queues, source DLQs, on-failure stores), read
    without removing it."""
    sqs, s3 = system.aws.client("sqs"), system.aws.client("s3")

    def read_stored(stored: StoredPayload) -> bytes:
        payload: bytes = s3.get_object(Bucket=stored.bucket, Key=stored.key)["Body"].read()
        return payload

    for consumer in system.consumers:
        for body in _read_all(sqs, consumer.parked_records_url):
            yield _identified(parked_payload(json.loads(body), read_stored)[0])
    for url in system.source_dlq_urls:
        for body in _read_all(sqs, url):
            yield _identified(body.encode())
    s3 = system.aws.client("s3")
    for bucket in system.on_failure_store_buckets():
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                document = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
                for record in document["payload"]["Records"]:
                    yield _identified(base64.b64decode(record["kinesis"]["data"]))


def _identified(payload: bytes) -> tuple[str, Any]:
    document = json.loads(payload)
    return str(document.get("id")), document


def _read_all(sqs: Any, queue_url: str) -> list[str]:
    """Every message's body; the messages stay in the queue, visible again at once."""
    bodies: list[str] = []
    handles: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=DLQ_READ_VISIBILITY_SECONDS
        ).get("Messages", [])
        if not messages:
            break
        bodies.extend(message["Body"] for message in messages)
        handles.extend(message["ReceiptHandle"] for message in messages)
    for start in range(0, len(handles), SQS_BATCH_LIMIT):
        entries = [
            {"Id": str(number), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for number, handle in enumerate(handles[start : start + SQS_BATCH_LIMIT])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
    return bodies
