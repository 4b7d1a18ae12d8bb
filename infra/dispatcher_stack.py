"""One environment of the dispatcher: the registry's sources, one consumer per subscription, monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack, Tags
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import constants
from infra.access_logs_bucket import AccessLogsBucket
from infra.delivered_ids_table import DeliveredIdsTable
from infra.monitoring import DispatcherMonitoring
from infra.naming import ResourceNames
from infra.parked_payload_bucket import ParkedPayloadBucket
from infra.registry import Registry
from infra.registry.limits import Environment
from infra.source_queue import SourceQueue
from infra.source_stream import SourceStream
from infra.subscription_consumer import SubscriptionConsumer


class DispatcherStack(Stack):
    """Composes the constructs; every resource decision lives in the construct that owns it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        registry: Registry,
        environment: Environment,
        function_code: lambda_.Code,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = ResourceNames(environment)
        removal_policy = constants.STATEFUL_REMOVAL_POLICY[environment]

        delivered_ids = DeliveredIdsTable(self, "DeliveredIds", names=names, removal_policy=removal_policy)
        access_logs = AccessLogsBucket(self, "AccessLogs", removal_policy=removal_policy)
        parked_payloads = ParkedPayloadBucket(
            self, "ParkedPayloads", access_logs=access_logs.bucket, removal_policy=removal_policy
        )
        streams = {
            f"stream/{definition.name}": SourceStream(
                self, f"Stream-{definition.name}", definition=definition, names=names, removal_policy=removal_policy
            )
            for definition in registry.sources.streams
        }
        queues = {
            f"queue/{definition.name}": SourceQueue(
                self,
                f"Queue-{definition.name}",
                definition=definition,
                # Validation guarantees at most one reader per queue.
                reader=next(iter(registry.subscriptions_of(f"queue/{definition.name}")), None),
                names=names,
                removal_policy=removal_policy,
            )
            for definition in registry.sources.queues
        }
        sources: dict[str, SourceStream | SourceQueue] = {**streams, **queues}

        consumers = [
            SubscriptionConsumer(
                self,
                f"Subscription-{subscription.name}",
                subscription=subscription,
                team=team.definition.team,
                source=sources[subscription.source],
                enhanced_fan_out=len(registry.subscriptions_of(subscription.source))
                > constants.SHARED_THROUGHPUT_MAX_CONSUMERS,
                function_code=function_code,
                delivered_ids=delivered_ids,
                parked_payloads=parked_payloads,
                access_logs=access_logs.bucket,
                names=names,
                removal_policy=removal_policy,
            )
            for team, subscription in registry.registrations()
        ]
        DispatcherMonitoring(
            self,
            "Monitoring",
            consumers=consumers,
            alert_emails={team.definition.team: team.definition.alerts_email for team in registry.teams},
            names=names,
            removal_policy=removal_policy,
        )
        Tags.of(self).add("service", constants.SERVICE_NAME)
        Tags.of(self).add("environment", environment)
