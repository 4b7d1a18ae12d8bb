"""The whole dispatcher on one machine: the embedded AWS holding the synthesized `dev` template's data
plane, a signing secret per subscription, and per subscription its function workers and its poller."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.config import DLQ_URL_ENV, SUBSCRIPTION_ENV
from local.aws import DEFAULT_PORT, LOCAL_REGION, EmbeddedAws
from local.esm import create_poller
from local.esm.checkpoints import checkpoint_table_definition
from local.esm.kinesis import FAN_OUT_POLLED_AS_SHARED
from local.spec import ConsumerSpec, ConsumerStats, KinesisMappingSpec, SqsMappingSpec
from local.synth import synthesize
from local.template import StackTemplate
from local.workers import FunctionRunner

NAME_PREFIX = "dev"
# Where the Kinesis pollers keep their shard checkpoints: a table of the embedded AWS that is not part of the
# template, as Lambda keeps a mapping's checkpoints on its own side.
CHECKPOINT_TABLE = "dispatcher-local-kinesis-checkpoints"


@dataclass
class RunningConsumer:
    spec: ConsumerSpec
    stats: ConsumerStats
    runner: FunctionRunner
    task: asyncio.Task[None]

    @property
    def subscription(self) -> str:
        return self.spec.function.subscription

    @property
    def parked_records_url(self) -> str:
        return self.spec.function.environment[DLQ_URL_ENV]

    @property
    def ordered(self) -> bool:
        """Whether the subscription promises order per partition key (always, for FIFO queues)."""
        mapping = self.spec.mapping
        if isinstance(mapping, SqsMappingSpec):
            return mapping.is_fifo
        return bool(json.loads(self.spec.function.environment[SUBSCRIPTION_ENV]).get("ordering") != "none")

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
        self.source_dead_letter_urls: list[str] = []

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        template_path = await asyncio.to_thread(synthesize, self.registry, self.workdir / "cdk.out")
        template = StackTemplate.load(template_path)
        self.aws.start()
        physical, resolve = self.aws.create(template, NAME_PREFIX)
        specs = template.consumers(physical, resolve)
        self.source_dead_letter_urls = self._source_dead_letter_urls(template, physical.refs)
        secret_ids = {json.loads(spec.function.environment[SUBSCRIPTION_ENV])["signing_secret"] for spec in specs}
        self.signing_secrets = self.aws.create_signing_secrets(secret_ids)
        self._create_checkpoint_table()
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        for spec in specs:
            stats = ConsumerStats()
            runner = FunctionRunner(
                spec.function,
                crash_probability=self.crash_probability,
                log_path=logs / f"{spec.function.name}.log",
                region=LOCAL_REGION,
                environment_overrides=self.aws.environment(),
            )
            poller = create_poller(
                spec,
                runner,
                endpoint_url=self.aws.endpoint_url,
                region=LOCAL_REGION,
                stats=stats,
                checkpoint_table=CHECKPOINT_TABLE,
            )
            task = asyncio.create_task(poller.run(), name=f"poller-{spec.function.name}")
            self.consumers.append(RunningConsumer(spec, stats, runner, task))

    async def stop(self) -> None:
        for consumer in self.consumers:
            consumer.task.cancel()
        for consumer in self.consumers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consumer.task
        await asyncio.gather(*(consumer.runner.close() for consumer in self.consumers), return_exceptions=True)
        self.aws.stop()

    def _create_checkpoint_table(self) -> None:
        dynamodb = self.aws.client("dynamodb")
        with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):  # kept from an earlier start
            dynamodb.create_table(**checkpoint_table_definition(CHECKPOINT_TABLE))

    def secret_of(self, consumer: RunningConsumer) -> str:
        secret_id = json.loads(consumer.spec.function.environment[SUBSCRIPTION_ENV])["signing_secret"]
        return self.signing_secrets[secret_id]

    def on_failure_buckets(self) -> list[str]:
        return sorted(
            {
                consumer.spec.mapping.on_failure_bucket
                for consumer in self.consumers
                if isinstance(consumer.spec.mapping, KinesisMappingSpec) and consumer.spec.mapping.on_failure_bucket
            }
        )

    def queue_depth(self, queue_url: str) -> int:
        attributes = self.aws.client("sqs").get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    @staticmethod
    def _source_dead_letter_urls(template: StackTemplate, refs: dict[str, str]) -> list[str]:
        """The queues that source queues redrive to after maxReceiveCount."""
        urls = []
        for queue in template.of_type("AWS::SQS::Queue"):
            target: Any = queue.properties.get("RedrivePolicy", {}).get("deadLetterTargetArn")
            if isinstance(target, dict) and "Fn::GetAtt" in target:
                urls.append(refs[target["Fn::GetAtt"][0]])
        return urls
