"""One registered subscription deployed: its throttled function, its role, its mapping, its parked records and,
with a retry schedule, its retry lane."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from dispatcher.config import DLQ_URL_ENV, IDEMPOTENCY_TABLE_ENV, PAYLOAD_BUCKET_ENV, SUBSCRIPTION_ENV
from infra import constants
from infra.compliance import acknowledge
from infra.delivered_ids_table import DeliveredIdsTable
from infra.failed_batch_bucket import FailedBatchBucket
from infra.naming import ResourceNames
from infra.parked_payload_bucket import ParkedPayloadBucket
from infra.registry import limits
from infra.registry.model import RegisteredSubscription
from infra.retry_lane import RetryLane
from infra.source_queue import SourceQueue
from infra.source_stream import SourceStream

# Secrets Manager appends six random characters to a secret's name in its ARN; "?" matches exactly one.
SECRET_ARN_SUFFIX = "-??????"


class SubscriptionConsumer(Construct):
    """The function reading one source for one subscription, and everything only it may touch."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        subscription: RegisteredSubscription,
        team: str,
        source: SourceStream | SourceQueue,
        enhanced_fan_out: bool,
        function_code: lambda_.Code,
        delivered_ids: DeliveredIdsTable,
        parked_payloads: ParkedPayloadBucket,
        access_logs: s3.IBucket,
        names: ResourceNames,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.subscription = subscription
        self.team = team
        self.source = source
        self.function_name = names.name(subscription.name)

        self.role = self._build_role()
        self.parked_records = self._build_parked_records_queue(names, removal_policy)
        self.log_group = self._build_log_group(names.environment, removal_policy)
        self.function = self._build_function(function_code, delivered_ids, parked_payloads)
        self._grant_runtime_access(delivered_ids, parked_payloads)
        self.failed_batches: FailedBatchBucket | None = None
        if isinstance(source, SourceStream):
            self.failed_batches = FailedBatchBucket(
                self, "FailedBatches", access_logs=access_logs, removal_policy=removal_policy
            )
            self.function.add_event_source(
                self._stream_event_source(source, enhanced_fan_out, self.failed_batches, names)
            )
        else:
            self.function.add_event_source(self._queue_event_source(source))
        self.retry_lane: RetryLane | None = None
        if subscription.retry_schedule_seconds:
            self.retry_lane = RetryLane(
                self,
                "RetryLane",
                subscription=subscription,
                function=self.function,
                role=self.role,
                names=names,
                removal_policy=removal_policy,
            )
            delivered_ids.grant_held_keys_item(self.role, subscription.name)

    def _build_role(self) -> iam.Role:
        # Its own role: a leaked or buggy function can reach its own source, items, secret and queue only.
        return iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Dispatcher for subscription {self.subscription.name} ({self.team})",
        )

    def _build_parked_records_queue(self, names: ResourceNames, removal_policy: RemovalPolicy) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "ParkedRecords",
            queue_name=names.name(self.subscription.name, "parked"),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=constants.DEAD_LETTER_RETENTION,
            removal_policy=removal_policy,
        )
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            "This queue is itself where the function parks the records that can never succeed; nothing polls "
            "it automatically, so it needs no dead-letter queue of its own. Its depth alarms.",
        )
        return queue

    def _build_log_group(self, environment: limits.Environment, removal_policy: RemovalPolicy) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{self.function_name}",
            retention=constants.LOG_RETENTION[environment],
            removal_policy=removal_policy,
        )

    def _build_function(
        self, function_code: lambda_.Code, delivered_ids: DeliveredIdsTable, parked_payloads: ParkedPayloadBucket
    ) -> lambda_.Function:
        subscription = self.subscription
        function = lambda_.Function(
            self,
            "Function",
            function_name=self.function_name,
            description=f"Delivers {subscription.source} to {subscription.name} ({self.team})",
            code=function_code,
            handler=constants.HANDLER,
            runtime=constants.FUNCTION_RUNTIME,
            architecture=constants.FUNCTION_ARCHITECTURE,
            memory_size=constants.FUNCTION_MEMORY_MB,
            timeout=Duration.seconds(subscription.function_timeout_seconds),
            reserved_concurrent_executions=subscription.reserved_concurrency,
            role=self.role,
            log_group=self.log_group,
            logging_format=constants.FUNCTION_LOG_FORMAT,
            environment={
                SUBSCRIPTION_ENV: subscription.delivery_config().model_dump_json(),
                IDEMPOTENCY_TABLE_ENV: delivered_ids.table.table_name,
                DLQ_URL_ENV: self.parked_records.queue_url,
                PAYLOAD_BUCKET_ENV: parked_payloads.bucket.bucket_name,
            },
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            f"Pinned to {constants.FUNCTION_RUNTIME.name}: the asset's compiled dependencies are built for "
            "exactly this runtime, so a runtime upgrade is a deliberate change of both.",
        )
        return function

    def _grant_runtime_access(self, delivered_ids: DeliveredIdsTable, parked_payloads: ParkedPayloadBucket) -> None:
        self.log_group.grant_write(self.role)
        self.parked_records.grant_send_messages(self.role)
        parked_payloads.grant_park(self.role, self.subscription.name)
        delivered_ids.grant_subscription_items(self.role, self.subscription.name)
        secret = self.subscription.signing_secret
        secret_arn = secret if secret.startswith("arn:") else self._secret_arn_by_name(secret)
        self.role.add_to_policy(iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret_arn]))

    def _secret_arn_by_name(self, name: str) -> str:
        """The signing secret is created outside this app; the registry names it (or gives its full ARN)."""
        return Stack.of(self).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{name}{SECRET_ARN_SUFFIX}",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _filters(self, payload_field: str) -> list[Mapping[str, Any]] | None:
        """Records whose JSON field "type" is one of event_types; Lambda drops the rest for good."""
        if not self.subscription.event_types:
            return None
        return [
            lambda_.FilterCriteria.filter(
                {payload_field: {constants.EVENT_TYPE_FIELD: lambda_.FilterRule.or_(*self.subscription.event_types)}}
            )
        ]

    def _stream_event_source(
        self,
        source: SourceStream,
        enhanced_fan_out: bool,
        failed_batches: FailedBatchBucket,
        names: ResourceNames,
    ) -> lambda_.IEventSource:
        subscription = self.subscription
        settings: dict[str, Any] = {
            "starting_position": lambda_.StartingPosition.TRIM_HORIZON,
            "batch_size": subscription.batch_size,
            "max_batching_window": Duration.seconds(subscription.batching_window_seconds),
            "parallelization_factor": subscription.parallelization_factor,
            # Split a failing batch to isolate a poison record instead of blocking the shard on it.
            "bisect_batch_on_error": True,
            "report_batch_item_failures": True,
            "retry_attempts": _unless_infinite(subscription.max_retry_attempts, limits.STREAM_RETRY_ATTEMPTS_INFINITE),
            "max_record_age": _seconds_unless_infinite(subscription.max_record_age_seconds),
            "on_failure": failed_batches.on_failure_destination(),
            "filters": self._filters("data"),
        }
        if enhanced_fan_out:
            consumer = kinesis.StreamConsumer(
                self, "FanOutConsumer", stream=source.stream, stream_consumer_name=names.name(subscription.name)
            )
            return event_sources.KinesisConsumerEventSource(consumer, **settings)
        return event_sources.KinesisEventSource(source.stream, **settings)

    def _queue_event_source(self, source: SourceQueue) -> lambda_.IEventSource:
        subscription = self.subscription
        window = subscription.batching_window_seconds
        return event_sources.SqsEventSource(
            source.queue,
            batch_size=subscription.batch_size,
            max_batching_window=Duration.seconds(window) if window else None,
            report_batch_item_failures=True,
            # The mapping does not know the reserved concurrency: above it, it would invoke into throttles.
            max_concurrency=subscription.reserved_concurrency,
            filters=self._filters("body"),
        )


def _unless_infinite(value: int, infinite: int) -> int | None:
    """CDK expresses AWS's "-1 = forever" by leaving the setting out."""
    return None if value == infinite else value


def _seconds_unless_infinite(seconds: int) -> Duration | None:
    limit = _unless_infinite(seconds, limits.MAX_RECORD_AGE_INFINITE)
    return None if limit is None else Duration.seconds(limit)
