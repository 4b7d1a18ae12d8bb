"""The whole dispatcher on one machine: the embedded AWS holding the synthesized `dev` template's data
plane, a signing secret per subscription, and per subscription its function workers and its poller."""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from dispatcher.adapters.held_keys import DynamoDbHeldKeys
from dispatcher.config import FunctionSettings, load_settings
from local import DEFAULT_PORT
from local.aws import LOCAL_REGION, EmbeddedAws
from local.esm import SqsPoller, create_poller
from local.esm.checkpoints import checkpoint_table_definition
from local.esm.kinesis import FAN_OUT_POLLED_AS_SHARED
from local.moto_sqs import oldest_sent_at
from local.spec import LOCAL_ACCOUNT_ID, ConsumerSpec, ConsumerStats, KinesisMappingSpec, SqsMappingSpec
from local.synth import synthesize
from local.template import StackTemplate
from local.workers import FunctionRunner

NAME_PREFIX = "dev"
# Blocking AWS calls run in the event loop's default executor, sized min(32, CPUs + 4) by asyncio: 6 threads on a
# 2-CPU machine. Every SQS poller (a retry lane's too, mostly waiting on an empty queue) holds one thread through
# each 1 s long poll, so the executor gets one thread per SQS poller, and these for everything else: the Kinesis
# pollers' calls, deletes, the status table's and the demo's reads.
THREADS_BESIDES_SQS_LONG_POLLS = 16
# Where the Kinesis pollers keep their shard checkpoints: a table of the embedded AWS that is not part of the
# template, as Lambda keeps a mapping's checkpoints on its own side.
CHECKPOINT_TABLE = "dispatcher-local-kinesis-checkpoints"


@dataclass(frozen=True)
class QueueCounts:
    """A queue's messages as SQS counts them now: visible, and held (received, not yet deleted or visible again)."""

    visible: int
    held: int

    @property
    def total(self) -> int:
        return self.visible + self.held


@dataclass(frozen=True)
class SubscriptionReadings:
    """What `dispatcher local` reads afresh for a subscription on every refresh (docs/retry-lanes.md): its
    parked-records queue now, and with a retry lane the keys held and the age of the oldest record in the lane."""

    parked: QueueCounts
    held_keys: int | None = None  # None: no retry lane
    oldest_in_lane_seconds: float | None = None  # None: no retry lane; 0 when it is empty


@dataclass
class RunningLane:
    """The poller of a subscription's retry lane: its own counters and task, the subscription's function."""

    stats: ConsumerStats
    task: asyncio.Task[None]


@dataclass
class RunningConsumer:
    spec: ConsumerSpec
    stats: ConsumerStats
    runner: FunctionRunner
    task: asyncio.Task[None]
    retry_lane: RunningLane | None = None

    @property
    def subscription(self) -> str:
        return self.spec.function.subscription

    @cached_property
    def settings(self) -> FunctionSettings:
        return function_settings(self.spec)

    @property
    def parked_records_url(self) -> str:
        return self.settings.parked_queue_url

    @property
    def all_stats(self) -> list[ConsumerStats]:
        """The counters of the source's mapping and, with a retry lane, of the lane's: one function's work."""
        return [self.stats] if self.retry_lane is None else [self.stats, self.retry_lane.stats]

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [self.task] if self.retry_lane is None else [self.task, self.retry_lane.task]

    @property
    def ordered(self) -> bool:
        """Whether the subscription promises order per partition key (always, for FIFO queues)."""
        mapping = self.spec.mapping
        if isinstance(mapping, SqsMappingSpec):
            return mapping.is_fifo
        return self.settings.subscription.ordering != "none"

    @property
    def fidelity_note(self) -> str | None:
        """Where this consumer's local mapping knowingly differs from Lambda's, for the status table."""
        mapping = self.spec.mapping
        if isinstance(mapping, KinesisMappingSpec) and mapping.fan_out_consumer:
            return FAN_OUT_POLLED_AS_SHARED
        return None


class LocalSystem:
    """Start with `await start()`, stop with `await stop()` (every worker is gone within seconds)."""

    def __init__(
        self,
        registry: Path,
        workdir: Path,
        *,
        port: int = DEFAULT_PORT,
        crash_probability: float = 0.0,
    ) -> None:
        self.registry = registry
        self.workdir = workdir
        self.aws = EmbeddedAws(port)
        self.crash_probability = crash_probability
        self.consumers: list[RunningConsumer] = []
        self.signing_secrets: dict[str, str] = {}
        self.source_dlq_urls: list[str] = []
        self._sqs_long_polls = 0  # how many SQS long polls the pollers can have waiting at once

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        template_path = await asyncio.to_thread(synthesize, self.registry, self.workdir / "cdk.out")
        template = StackTemplate.load(template_path)
        self.aws.start()
        physical, resolve = self.aws.create(template, NAME_PREFIX)
        specs = template.consumers(physical, resolve)
        self.source_dlq_urls = self._source_dlq_urls(template, physical.refs)
        secret_ids = {function_settings(spec).subscription.signing_secret for spec in specs}
        self.signing_secrets = self.aws.create_signing_secrets(secret_ids)
        self._create_checkpoint_table()
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        for spec in specs:
            runner = FunctionRunner(
                spec.function,
                crash_probability=self.crash_probability,
                log_path=logs / f"{spec.function.name}.log",
                region=LOCAL_REGION,
                environment_overrides=self.aws.environment(),
            )
            stats, task = self._start_poller(spec, runner)
            # The lane's rounds and the source share the function, so its reserved concurrency caps them together.
            lane = (
                None if spec.retry_lane is None else RunningLane(*self._start_poller(spec.reading_retry_lane(), runner))
            )
            self.consumers.append(RunningConsumer(spec, stats, runner, task, lane))
        # The pollers' tasks first run at the caller's next await: the executor is in place before their first call.
        threads = self._sqs_long_polls + THREADS_BESIDES_SQS_LONG_POLLS
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="local-aws"))

    def _start_poller(self, spec: ConsumerSpec, runner: FunctionRunner) -> tuple[ConsumerStats, asyncio.Task[None]]:
        stats = ConsumerStats()
        poller = create_poller(
            spec,
            runner,
            endpoint_url=self.aws.endpoint_url,
            region=LOCAL_REGION,
            stats=stats,
            checkpoint_table=CHECKPOINT_TABLE,
        )
        if isinstance(poller, SqsPoller):
            self._sqs_long_polls += poller.concurrency
        return stats, asyncio.create_task(poller.run(), name=f"poller-{spec.function.name}-{spec.mapping.source_name}")

    async def stop(self) -> None:
        tasks = [task for consumer in self.consumers for task in consumer.tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(consumer.runner.close() for consumer in self.consumers), return_exceptions=True)
        self.aws.stop()

    def _create_checkpoint_table(self) -> None:
        dynamodb = self.aws.client("dynamodb")
        with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):  # kept from an earlier start
            dynamodb.create_table(**checkpoint_table_definition(CHECKPOINT_TABLE))

    def secret_of(self, consumer: RunningConsumer) -> str:
        return self.signing_secrets[consumer.settings.subscription.signing_secret]

    def on_failure_store_buckets(self) -> list[str]:
        """The S3 buckets the Kinesis mappings write the records they give up on to (their on-failure stores)."""
        return sorted(
            {
                consumer.spec.mapping.on_failure_bucket
                for consumer in self.consumers
                if isinstance(consumer.spec.mapping, KinesisMappingSpec) and consumer.spec.mapping.on_failure_bucket
            }
        )

    def queue_depth(self, queue_url: str) -> int:
        return self.queue_counts(queue_url).total

    def queue_counts(self, queue_url: str) -> QueueCounts:
        """One GetQueueAttributes call (blocking: from the event loop, run it in a thread)."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return QueueCounts(
            visible=int(attributes["ApproximateNumberOfMessages"]),
            held=int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def readings(self) -> dict[str, SubscriptionReadings]:
        """By subscription, what its parked-records queue holds now (what a redrive would find, unlike the
        cumulative ConsumerStats.parked) and, with a retry lane, its held keys and oldest record's age (blocking:
        a few calls a subscription)."""
        return {consumer.subscription: self._readings_of(consumer) for consumer in self.consumers}

    def _readings_of(self, consumer: RunningConsumer) -> SubscriptionReadings:
        parked = self.queue_counts(consumer.parked_records_url)
        lane = consumer.spec.retry_lane
        if lane is None:
            return SubscriptionReadings(parked)
        oldest = oldest_sent_at(LOCAL_ACCOUNT_ID, LOCAL_REGION, lane.queue_name)
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest)
        return SubscriptionReadings(parked, held_keys=self.held_keys(consumer), oldest_in_lane_seconds=age)

    def held_keys(self, consumer: RunningConsumer) -> int:
        """How many keys of the subscription are held, read as its function reads them (one consistent GetItem of
        the held-keys item; blocking)."""
        held = DynamoDbHeldKeys(
            consumer.settings.delivered_ids_table, consumer.subscription, client_factory=lambda: self._dynamodb
        )
        return len(held.read())

    @cached_property
    def _dynamodb(self) -> Any:
        return self.aws.client("dynamodb")

    @cached_property
    def _sqs(self) -> Any:
        """One client for the counts the status table reads every refresh: making one costs more than a call."""
        return self.aws.client("sqs")

    @staticmethod
    def _source_dlq_urls(template: StackTemplate, refs: dict[str, str]) -> list[str]:
        """The source DLQs: the queues that source queues redrive to after maxReceiveCount."""
        urls = []
        for queue in template.of_type("AWS::SQS::Queue"):
            target: Any = queue.properties.get("RedrivePolicy", {}).get("deadLetterTargetArn")
            if isinstance(target, dict) and "Fn::GetAtt" in target:
                urls.append(refs[target["Fn::GetAtt"][0]])
        return urls


def function_settings(spec: ConsumerSpec) -> FunctionSettings:
    """The function's environment read with the function's own model (DISPATCHER_SUBSCRIPTION included);
    raises ConfigurationError naming every field at fault."""
    return load_settings(spec.function.environment)
