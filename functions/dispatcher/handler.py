"""Lambda entry point: wire Powertools, parse the event, dispatch the batch, report partial failures.

Import-time work is only what a cold start must check: the configuration, so a bad
DISPATCHER_SUBSCRIPTION fails the cold start naming the field. AWS clients, the HTTP session and the
signing secret are built by the first invocation and reused while the environment stays warm.
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from dispatcher import metric_names
from dispatcher.config import METRICS_NAMESPACE, SERVICE_NAME, FunctionSettings, load_settings
from dispatcher.delivery import Dispatcher
from dispatcher.latency_histogram import latency_histogram
from dispatcher.outcomes import DeliveryStats
from dispatcher.records import parse_event
from dispatcher.retry_lane import LanePorts

settings = load_settings(os.environ)
logger = Logger(service=SERVICE_NAME)
logger.append_keys(subscription=settings.subscription.name)
copy_config_to_registered_loggers(source_logger=logger, include={"dispatcher"})
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
metrics.set_default_dimensions(subscription=settings.subscription.name)

_runtime: tuple[asyncio.AbstractEventLoop, Dispatcher] | None = None

# CPython's default (700) ran about 250 collections in a 5,000-record invocation, the full ones walking the
# environment's own objects again and again (modules, models, the HTTP session: about 100,000 that live as long
# as it does): a fifth of the invocation. Frozen, and with the young generation collected less often, about 15 ms.
YOUNG_COLLECTION_THRESHOLD = 10_000  # objects allocated (net) between collections of the young generation


def build_dispatcher(function_settings: FunctionSettings) -> Dispatcher:
    """The production wiring: aiohttp with the SSRF guard, DynamoDB, SQS (with S3 for large payloads),
    Secrets Manager, and the retry lane with its held keys when the subscription has a retry schedule."""
    from dispatcher.adapters.dynamodb import DynamoDbDeliveredIds
    from dispatcher.adapters.held_keys import DynamoDbHeldKeys
    from dispatcher.adapters.http import AiohttpSender
    from dispatcher.adapters.retry_lane import SqsRetryLane
    from dispatcher.adapters.s3 import S3PayloadStore
    from dispatcher.adapters.secrets import SecretsManagerSecret
    from dispatcher.adapters.sqs import SqsParkedRecords
    from dispatcher.guard import AddressPolicy

    subscription = function_settings.subscription
    lane_url = function_settings.retry_lane_url
    lane = None
    if lane_url:
        lane = LanePorts(
            queue_name=lane_url.rstrip("/").rsplit("/", 1)[-1],
            lane=SqsRetryLane(lane_url),
            held_keys=DynamoDbHeldKeys(function_settings.delivered_ids_table, subscription.name),
        )
    return Dispatcher(
        subscription,
        sender=AiohttpSender(AddressPolicy(subscription.allow_private_cidrs), subscription.max_in_flight),
        delivered_ids=DynamoDbDeliveredIds(function_settings.delivered_ids_table),
        parked_records=SqsParkedRecords(
            function_settings.parked_queue_url, S3PayloadStore(function_settings.payload_bucket)
        ),
        secret=SecretsManagerSecret(subscription.signing_secret),
        lane=lane,
    )


def _warm_runtime() -> tuple[asyncio.AbstractEventLoop, Dispatcher]:
    # One event loop for the life of the environment: the pooled HTTP session is bound to it.
    global _runtime
    if _runtime is None:
        _runtime = (asyncio.new_event_loop(), build_dispatcher(settings))
        # What the cold start built lives as long as the environment: no collection needs to look at it again.
        gc.freeze()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD)
    return _runtime


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    """The Lambda entry point: the environment's warm dispatcher, injected into process_batch."""
    loop, dispatcher = _warm_runtime()
    return process_batch(event, context, dispatcher, loop)


def process_batch(
    event: dict[str, Any], context: LambdaContext, dispatcher: Dispatcher, loop: asyncio.AbstractEventLoop
) -> dict[str, list[dict[str, str]]]:
    """One invocation with the dispatcher given (tests give theirs): parse, dispatch on `loop` (a lane round
    when the event comes from the subscription's retry lane), count and log the outcome, answer with the
    partial-failure report."""
    remaining_seconds = context.get_remaining_time_in_millis() / 1000
    if dispatcher.is_lane_event(event):
        logger.append_keys(source="retry-lane")
        lane_report = loop.run_until_complete(dispatcher.run_lane_round(event, remaining_seconds))
        publish(lane_report.stats)
        logger.info("lane round done", extra={"records": len(event["Records"]), **_summary(lane_report.stats)})
        return lane_report.response()
    batch = parse_event(event)
    logger.append_keys(source=batch.source_name)
    report = loop.run_until_complete(dispatcher.dispatch(batch, remaining_seconds, event["Records"]))
    publish(report.stats)
    logger.info(
        "batch dispatched",
        extra={"records": len(batch.records), **_summary(report.stats)},
    )
    return report.response()


def _summary(stats: DeliveryStats) -> dict[str, int]:
    return {
        "delivered": stats.delivered,
        "failed": stats.failed,
        "parked": stats.parked,
        "duplicates_skipped": stats.duplicates_skipped,
        "handed_to_retry_lane": stats.handed_to_lane,
    }


def publish(stats: DeliveryStats) -> None:
    counts = {
        metric_names.DELIVERED: stats.delivered,
        metric_names.DELIVERY_FAILED: stats.failed,
        metric_names.RETRIED: stats.retried,
        metric_names.DUPLICATES_SKIPPED: stats.duplicates_skipped,
        metric_names.PARKED: stats.parked,
        metric_names.HANDED_TO_RETRY_LANE: stats.handed_to_lane,
        metric_names.ENDPOINT_GONE: stats.endpoint_gone,
    }
    if stats.held_keys is not None:  # known only when the invocation read the held keys
        counts[metric_names.HELD_KEYS] = stats.held_keys
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if stats.oldest_lane_age_seconds is not None:  # a lane round that looked at a record
        metrics.add_metric(
            name=metric_names.RETRY_LANE_AGE, unit=MetricUnit.Seconds, value=stats.oldest_lane_age_seconds
        )
    for status_class, value in stats.status_classes.items():
        metrics.add_metric(name=f"{metric_names.STATUS_CLASS_PREFIX}{status_class}", unit=MetricUnit.Count, value=value)
    if stats.latencies_ms:
        # One histogram per invocation, not one add_metric per record: Powertools' add_metric takes single
        # numbers, so the value goes into its metric set in the form it serializes ("Value" as given).
        metrics.metric_set[metric_names.DELIVERY_LATENCY] = {
            "Unit": MetricUnit.Milliseconds.value,
            "StorageResolution": MetricResolution.Standard.value,
            "Value": latency_histogram(stats.latencies_ms),
        }
