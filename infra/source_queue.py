"""An SQS queue declared in registry/sources.yaml, with the dead-letter queue its redrive policy feeds."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants
from infra.naming import ResourceNames
from infra.registry.model import Queue, RegisteredSubscription

# A queue nobody reads yet keeps SQS's default until a subscription sets it from its function timeout.
UNREAD_QUEUE_VISIBILITY_TIMEOUT = Duration.seconds(30)


def visibility_timeout_for(subscription: RegisteredSubscription) -> Duration:
    """Long enough that a message in a running (or retried) invocation is not handed out again."""
    return Duration.seconds(
        constants.QUEUE_VISIBILITY_TIMEOUT_FACTOR * subscription.function_timeout_seconds
        + subscription.batching_window_seconds
    )


class SourceQueue(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definition: Queue,
        reader: RegisteredSubscription | None,
        names: ResourceNames,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.definition = definition
        fifo = definition.is_fifo or None  # CloudFormation rejects FifoQueue: false
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=names.queue_name(definition.base_name, "dlq", fifo=definition.is_fifo),
            fifo=fifo,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=constants.DEAD_LETTER_RETENTION,
            removal_policy=removal_policy,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=names.queue_name(definition.base_name, fifo=definition.is_fifo),
            fifo=fifo,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=constants.SOURCE_QUEUE_RETENTION,
            visibility_timeout=visibility_timeout_for(reader) if reader else UNREAD_QUEUE_VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=definition.max_receive_count, queue=self.dead_letter_queue
            ),
            removal_policy=removal_policy,
        )
