"""What the local runtime needs to know about each deployed function and its event source mapping.

Read from the synthesized CloudFormation template (local/template.py), so what runs locally is what
`cdk deploy` would create. Defaults are Lambda's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_HANDLER = "dispatcher.handler.handler"
LOCAL_ACCOUNT_ID = "123456789012"  # moto's default account: the ARNs the embedded AWS hands out use it too


def function_arn(region: str, function_name: str) -> str:
    """A local function's ARN, as Lambda's context and the Kinesis on-failure store name it."""
    return f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{function_name}"


def execution_role_arn(function_name: str) -> str:
    """A local function's execution role, as Kinesis events name it in invokeIdentityArn."""
    return f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/{function_name}-role"


@dataclass(frozen=True)
class FunctionSpec:
    """One deployed consumer function."""

    name: str  # the function name, environment-prefixed
    subscription: str  # the registry's subscription name
    environment: dict[str, str]  # the function's environment variables from the template
    timeout_seconds: float
    reserved_concurrency: int  # caps the number of concurrent workers
    memory_mb: int = 512
    handler: str = DEFAULT_HANDLER


STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")


@dataclass(frozen=True)
class KinesisMappingSpec:
    stream_name: str
    stream_arn: str
    batch_size: int = 100
    batching_window_seconds: float = 0.0
    parallelization_factor: int = 1
    bisect_on_error: bool = False
    maximum_retry_attempts: int = -1  # -1: until the record expires
    maximum_record_age_seconds: int = -1  # -1: until the record expires
    starting_position: str = "TRIM_HORIZON"
    starting_position_timestamp: float | None = None  # epoch seconds; with AT_TIMESTAMP only, as Lambda requires
    on_failure_bucket: str | None = None  # S3 on-failure destination: keeps the records themselves
    filter_patterns: tuple[dict[str, Any], ...] = ()
    report_batch_item_failures: bool = True
    fan_out_consumer: str | None = None  # the enhanced fan-out consumer's name, when the mapping reads through one

    @property
    def source_name(self) -> str:
        return self.stream_name

    def __post_init__(self) -> None:
        if self.starting_position not in STARTING_POSITIONS:
            raise ValueError(
                f"StartingPosition {self.starting_position!r} is not one of {', '.join(STARTING_POSITIONS)}"
            )
        if self.starting_position == "AT_TIMESTAMP" and self.starting_position_timestamp is None:
            raise ValueError("StartingPosition AT_TIMESTAMP needs a StartingPositionTimestamp")
        if self.starting_position != "AT_TIMESTAMP" and self.starting_position_timestamp is not None:
            raise ValueError(f"StartingPositionTimestamp is only valid with AT_TIMESTAMP, not {self.starting_position}")


@dataclass(frozen=True)
class SqsMappingSpec:
    queue_name: str
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    batching_window_seconds: float = 0.0
    maximum_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency
    filter_patterns: tuple[dict[str, Any], ...] = ()
    report_batch_item_failures: bool = True

    @property
    def source_name(self) -> str:
        return self.queue_name

    @property
    def is_fifo(self) -> bool:
        return self.queue_name.endswith(".fifo")


MappingSpec = KinesisMappingSpec | SqsMappingSpec


@dataclass(frozen=True)
class ConsumerSpec:
    """A function and the mapping that feeds it from its source: one per registered subscription. `retry_lane` is
    the mapping of the subscription's retry lane (docs/retry-lanes.md) to the same function, when it has one."""

    function: FunctionSpec
    mapping: MappingSpec
    retry_lane: SqsMappingSpec | None = None

    def reading_retry_lane(self) -> ConsumerSpec:
        """The consumer as the retry lane's poller sees it: the same function, fed by the lane's mapping."""
        if self.retry_lane is None:
            raise ValueError(f"{self.function.name}: no retry lane")
        return ConsumerSpec(self.function, self.retry_lane)


@dataclass
class ConsumerStats:
    """Live counters of one consumer, for the status table and the demo report.

    Delivery counts come from the function's own EMF metrics (parsed from the worker's output), so
    they are what CloudWatch would show; the rest is what the mapping itself measures.
    """

    invocations: int = 0
    function_errors: int = 0  # invocations that raised or timed out (whole-batch failures)
    timeouts: int = 0
    records_in_flight: int = 0
    records_reported_failed: int = 0  # batchItemFailures entries
    delivered: int = 0  # EMF Delivered
    delivery_failed: int = 0  # EMF DeliveryFailed
    parked: int = 0  # EMF Parked: records the dispatcher set aside in its parked-records queue
    retried: int = 0  # EMF Retried
    duplicates_skipped: int = 0  # EMF DuplicatesSkipped
    sent_to_on_failure_store: int = 0  # Kinesis records the mapping wrote to its on-failure store (S3)
    moved_to_source_dlq: int = 0  # SQS messages the source queue moves to its source DLQ after maxReceiveCount
    filtered_out: int = 0  # records a FilterCriteria pattern rejected
    iterator_age_ms: float = 0.0  # Kinesis: last record of the last batch, as AWS defines IteratorAge
    max_iterator_age_ms: float = 0.0
    oldest_message_age_seconds: float = 0.0  # SQS ApproximateAgeOfOldestMessage
    extra: dict[str, float] = field(default_factory=dict)
