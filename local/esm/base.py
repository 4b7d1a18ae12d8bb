"""What the Kinesis and SQS pollers share: the constructor's preamble, the function they invoke, how a response
is judged, the counters an invocation updates, and the AWS clients (always pointed at the local AWS endpoint
given to the poller)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Generic, NotRequired, Protocol, TypedDict, TypeVar, Unpack

from dispatcher import metric_names
from local.esm.filters import validate_patterns
from local.spec import ConsumerSpec, ConsumerStats, MappingSpec
from local.workers import InvocationResult

logger = logging.getLogger(__name__)

# Lambda's cap on a synchronous invocation's request payload: a batch stops growing before it.
INVOCATION_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
# The local AWS answers in milliseconds; a call slower than this means it is gone, not busy.
AWS_CONNECT_TIMEOUT_SECONDS = 2
AWS_READ_TIMEOUT_SECONDS = 30  # above the longest SQS long poll the pollers ask for
AWS_MAX_ATTEMPTS = 3
PLACEHOLDER_CREDENTIAL = "local"
# EMF metric names the dispatcher function publishes -> the ConsumerStats counter each one adds to.
EMF_METRIC_COUNTERS = {
    metric_names.DELIVERED: "delivered",
    metric_names.DELIVERY_FAILED: "delivery_failed",
    metric_names.PARKED: "parked",
    metric_names.RETRIED: "retried",
    metric_names.DUPLICATES_SKIPPED: "duplicates_skipped",
}


class Invoker(Protocol):
    """What a poller invokes: a FunctionRunner, or a scripted fake in tests."""

    async def invoke(self, event: dict[str, Any]) -> InvocationResult: ...


@dataclass(frozen=True)
class BatchVerdict:
    """How the mapping reads one invocation: whole batch failed, some items reported failed, or success."""

    whole_batch_failed: bool = False
    reported_failures: frozenset[str] = frozenset()
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return not self.whole_batch_failed and not self.reported_failures


SUCCESS = BatchVerdict()


def judge(result: InvocationResult, identifiers: Collection[str], report_batch_item_failures: bool) -> BatchVerdict:
    """Apply Lambda's partial-batch-response rules to one invocation of a batch whose item identifiers are
    `identifiers` (Kinesis sequence numbers or SQS message ids).

    A function error (exception, timeout, crash) fails the whole batch. Without ReportBatchItemFailures the
    response is ignored. With it: a null or empty response or batchItemFailures list is full success; a
    response that is not an object, a batchItemFailures that is not a list, an item without the
    `itemIdentifier` key, an empty or null identifier, or one that is not in the batch fails the whole batch.
    """
    if result.failed:
        return BatchVerdict(whole_batch_failed=True, reason=result.error)
    if not report_batch_item_failures:
        return SUCCESS
    try:
        return BatchVerdict(reported_failures=_reported_failures(result.response, identifiers))
    except InvalidPartialResponseError as invalid:
        return BatchVerdict(whole_batch_failed=True, reason=str(invalid))


class InvalidPartialResponseError(ValueError):
    """A ReportBatchItemFailures response Lambda rejects: the whole batch counts as failed."""


def _reported_failures(response: object, identifiers: Collection[str]) -> frozenset[str]:
    if response is None:
        return frozenset()
    if not isinstance(response, dict):
        raise InvalidPartialResponseError(f"response is not a JSON object: {response!r}")
    failures = response.get("batchItemFailures")
    if failures is None:
        return frozenset()
    if not isinstance(failures, list):
        raise InvalidPartialResponseError(f"batchItemFailures is not a list: {failures!r}")
    return frozenset(_reported_identifier(item, identifiers) for item in failures)


def _reported_identifier(item: object, identifiers: Collection[str]) -> str:
    if not isinstance(item, dict) or "itemIdentifier" not in item:
        raise InvalidPartialResponseError(f"batch item failure without itemIdentifier: {item!r}")
    identifier = item["itemIdentifier"]
    if not isinstance(identifier, str) or not identifier:
        raise InvalidPartialResponseError(f"empty or null itemIdentifier: {identifier!r}")
    if identifier not in identifiers:
        raise InvalidPartialResponseError(f"itemIdentifier not in the batch: {identifier!r}")
    return identifier


def record_invocation(stats: ConsumerStats, result: InvocationResult, verdict: BatchVerdict) -> None:
    """Count one invocation: its errors, the items it reported failed, and the function's own EMF metrics."""
    stats.invocations += 1
    if result.failed:
        stats.function_errors += 1
    if result.timed_out:
        stats.timeouts += 1
    stats.records_reported_failed += len(verdict.reported_failures)
    for name, value in result.metrics.items():
        counter = EMF_METRIC_COUNTERS.get(name)
        if counter is None:
            stats.extra[name] = stats.extra.get(name, 0.0) + value
        else:
            setattr(stats, counter, getattr(stats, counter) + int(value))


def take_within_payload_limit(event_records: list[dict[str, Any]], batch_size: int) -> int:
    """How many of the leading records fit one invocation: at most `batch_size`, and under Lambda's payload
    cap (always at least one, so an oversize record still reaches the function and fails there)."""
    size = 0
    for count, record in enumerate(event_records[:batch_size]):
        size += len(json.dumps(record))
        if size > INVOCATION_PAYLOAD_LIMIT_BYTES and count > 0:
            return count
    return min(batch_size, len(event_records))


def aws_client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for the local AWS. The endpoint is always the one given, so nothing can reach real AWS by
    accident. Credentials come from the environment as usual; without any, placeholder ones: the local AWS
    accepts every key."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=AWS_CONNECT_TIMEOUT_SECONDS,
        read_timeout=AWS_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": AWS_MAX_ATTEMPTS},
    )
    session = boto3.session.Session()
    if session.get_credentials() is None:
        session = boto3.session.Session(
            aws_access_key_id=PLACEHOLDER_CREDENTIAL, aws_secret_access_key=PLACEHOLDER_CREDENTIAL
        )
    return session.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint_url, region_name=region, config=config
    )


MappingT = TypeVar("MappingT", bound=MappingSpec)


class PollerOptions(TypedDict):
    """What every poller is given besides its consumer and function: the local AWS's endpoint and region, where
    its counters go (fresh ones if not given), and the clock (epoch seconds) ages are measured against."""

    endpoint_url: str
    region: str
    stats: NotRequired[ConsumerStats | None]
    clock: NotRequired[Callable[[], float]]


class MappingPoller(Generic[MappingT]):
    """The part of an event source mapping that does not depend on its source: checking the consumer's mapping,
    and the step every batch goes through (records in flight -> invoke -> judge -> count).

    A subclass names the mapping it polls in `mapping_type`; `started` is the subclass's to set.
    """

    mapping_type: type[MappingT]

    def __init__(self, consumer: ConsumerSpec, function: Invoker, **options: Unpack[PollerOptions]) -> None:
        mapping = consumer.mapping
        if not isinstance(mapping, self.mapping_type):
            raise TypeError(f"{consumer.function.name}: not a {self.mapping_type.__name__}: {mapping!r}")
        validate_patterns(mapping.filter_patterns)
        self.mapping: MappingT = mapping
        self.function_spec = consumer.function
        self.stats = options.get("stats") or ConsumerStats()
        self.started = asyncio.Event()
        self._function = function
        self._endpoint_url = options["endpoint_url"]
        self._region = options["region"]
        self._clock = options.get("clock", time.time)
        self._name = f"{consumer.function.name} <- {mapping.source_name}"

    async def _invoke(
        self, event_records: list[dict[str, Any]], identifiers: Collection[str], lane: str | None = None
    ) -> tuple[InvocationResult, BatchVerdict]:
        """Invoke the function with one batch (`identifiers`: its records' item identifiers), judge the
        response and count the invocation; `lane` names the batch's lane of a shard in the log."""
        self.stats.records_in_flight += len(event_records)
        try:
            result = await self._function.invoke({"Records": event_records})
        finally:
            self.stats.records_in_flight -= len(event_records)
        verdict = judge(result, identifiers, self.mapping.report_batch_item_failures)
        record_invocation(self.stats, result, verdict)
        origin = f"{self._name} {lane}" if lane else self._name
        if verdict.whole_batch_failed:
            logger.info("%s: batch of %d failed: %s", origin, len(event_records), verdict.reason)
        elif verdict.reported_failures:
            failed, size = len(verdict.reported_failures), len(event_records)
            logger.info("%s: %d of a batch of %d reported failed", origin, failed, size)
        return result, verdict
