"""A subscription's retry lane (docs/retry-lanes.md): the FIFO queue where a record still failing at the end of
its invocation waits for its next round, read by the subscription's own function."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from dispatcher.config import RETRY_LANE_URL_ENV
from infra import constants
from infra.compliance import acknowledge
from infra.naming import ResourceNames
from infra.registry import limits
from infra.registry.model import RegisteredSubscription

# The lane's own name part: <environment>-<subscription>-retry-lane.fifo
RETRY_LANE_NAME = "retry-lane"


class RetryLane(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        subscription: RegisteredSubscription,
        function: lambda_.Function,
        role: iam.IRole,
        names: ResourceNames,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.subscription = subscription
        self.queue = self._build_queue(names, removal_policy)
        function.add_event_source(self._event_source())
        # SendMessageBatch needs sqs:SendMessage. Deferring (ChangeMessageVisibilityBatch) needs
        # sqs:ChangeMessageVisibility, which the mapping's consume grant (receive, defer, delete) already gives.
        self.queue.grant_send_messages(role)
        function.add_environment(RETRY_LANE_URL_ENV, self.queue.queue_url)

    def _build_queue(self, names: ResourceNames, removal_policy: RemovalPolicy) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "Queue",
            queue_name=names.queue_name(self.subscription.name, RETRY_LANE_NAME, fifo=True),
            fifo=True,
            # The function gives each message its deduplication id (the entry id), never its content.
            content_based_deduplication=False,
            # High-throughput FIFO: every key is its own message group, and a hand-over during a wide outage
            # sends as fast as the source delivers; deduplication per group suffices since an entry id
            # always lands in the same group.
            deduplication_scope=sqs.DeduplicationScope.MESSAGE_GROUP,
            fifo_throughput_limit=sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=constants.RETRY_LANE_RETENTION,
            # Lambda's advice for a queue it reads: at least six times the function timeout, so a message in a
            # running or retried invocation is not handed out again. Deferred messages set their own.
            visibility_timeout=Duration.seconds(
                constants.QUEUE_VISIBILITY_TIMEOUT_FACTOR * self.subscription.function_timeout_seconds
            ),
            removal_policy=removal_policy,
        )
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            "No redrive policy on purpose: the function defers a waiting record by leaving it in the lane, so every "
            "round and every early receive counts as a receive, and a maxReceiveCount would move records away "
            "mid-schedule and out of their key's order. The function itself parks a record whose schedule is "
            "exhausted, whose endpoint refused it for good, or whose lane message it cannot read, in the "
            "subscription's parked-records queue; the lane's age alarms.",
        )
        return queue

    def _event_source(self) -> event_sources.SqsEventSource:
        return event_sources.SqsEventSource(
            self.queue,
            batch_size=constants.RETRY_LANE_BATCH_SIZE,
            report_batch_item_failures=True,
            # Lane rounds share the function's reserved concurrency with its source; the mapping does not know
            # it, so it is capped there (SQS accepts no cap below 2).
            max_concurrency=max(self.subscription.reserved_concurrency, limits.SQS_MAXIMUM_CONCURRENCY_MIN),
        )
