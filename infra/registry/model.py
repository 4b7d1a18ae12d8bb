"""The registry's two file formats: `sources.yaml` (platform-owned) and `teams/<team>.yaml` (one per team).

`RegisteredSubscription` extends the function's own `SubscriptionConfig`, so a delivery field has one
definition, one default and one range for the validator, the JSON Schema and the running function.
Checks that need more than one field or more than one file live in `rules.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dispatcher.config import NAME_FRAGMENT, SubscriptionConfig
from infra.registry import limits
from infra.registry.timing import required_timeout_seconds

_QUEUE_NAME = rf"{NAME_FRAGMENT}(\.fifo)?"
SOURCE_NAME_PATTERN = rf"^{NAME_FRAGMENT}$"
QUEUE_NAME_PATTERN = rf"^{_QUEUE_NAME}$"
SOURCE_REFERENCE_PATTERN = rf"^(stream/{NAME_FRAGMENT}|queue/{_QUEUE_NAME})$"
TEAM_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
# Deliberately loose: SNS confirms the address by mail, this only catches typos such as a missing "@".
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

FIFO_SUFFIX = ".fifo"
STREAM_PREFIX = "stream/"
QUEUE_PREFIX = "queue/"
DEFAULT_STREAM_BATCH_SIZE = 100  # records, Lambda's default for Kinesis
DEFAULT_QUEUE_BATCH_SIZE = 10  # messages, Lambda's default for SQS (the largest without a batching window)
DEFAULT_ALARM_RETRY_AGE_SECONDS = 3600  # s; by then the default schedule's rounds at 5 and 35 minutes have failed


class _RegistryModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stream(_RegistryModel):
    """A Kinesis data stream the platform owns."""

    name: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN, description="Stream name, unprefixed.")]
    mode: Annotated[
        Literal["on-demand", "provisioned"],
        Field(description="Capacity mode; provisioned needs `shards`."),
    ] = "on-demand"
    shards: Annotated[
        int | None,
        Field(ge=1, le=limits.STREAM_SHARDS_MAX, description="Shard count; provisioned mode only."),
    ] = None
    retention_hours: Annotated[
        int,
        Field(
            ge=limits.STREAM_RETENTION_MIN_HOURS,
            le=limits.STREAM_RETENTION_MAX_HOURS,
            description="How long records stay in the stream, in hours.",
        ),
    ] = limits.STREAM_RETENTION_MIN_HOURS


class Queue(_RegistryModel):
    """An SQS queue the platform owns, with its redrive dead-letter queue."""

    name: Annotated[
        str,
        Field(pattern=QUEUE_NAME_PATTERN, description="Queue name, unprefixed; a .fifo suffix makes it FIFO."),
    ]
    fifo: Annotated[bool, Field(description="FIFO queue (implied by a .fifo name).")] = False
    max_receive_count: Annotated[
        int,
        Field(
            ge=limits.QUEUE_MAX_RECEIVE_COUNT_MIN,
            le=limits.QUEUE_MAX_RECEIVE_COUNT_MAX,
            description="Receives before a message moves to the queue's dead-letter queue.",
        ),
    ] = limits.QUEUE_MAX_RECEIVE_COUNT_MIN

    @property
    def is_fifo(self) -> bool:
        return self.fifo or self.name.endswith(FIFO_SUFFIX)

    @property
    def base_name(self) -> str:
        """The name without a .fifo suffix: AWS wants the suffix last, after the environment prefix."""
        return self.name.removesuffix(FIFO_SUFFIX)


class SourcesFile(_RegistryModel):
    """registry/sources.yaml: the streams and queues subscriptions read from."""

    streams: tuple[Stream, ...] = ()
    queues: tuple[Queue, ...] = ()

    def stream(self, name: str) -> Stream | None:
        return next((stream for stream in self.streams if stream.name == name), None)

    def queue(self, name: str) -> Queue | None:
        return next((queue for queue in self.queues if queue.name == name), None)


def _default_batch_size(fields: dict[str, Any]) -> int:
    return (
        DEFAULT_QUEUE_BATCH_SIZE
        if str(fields.get("source", "")).startswith(QUEUE_PREFIX)
        else (DEFAULT_STREAM_BATCH_SIZE)
    )


class RegisteredSubscription(SubscriptionConfig):
    """One callback endpoint fed by one source: the delivery settings plus how it is deployed."""

    source: Annotated[
        str,
        Field(
            pattern=SOURCE_REFERENCE_PATTERN,
            description="stream/<name> or queue/<name>, declared in registry/sources.yaml.",
        ),
    ]
    event_types: Annotated[
        tuple[Annotated[str, Field(min_length=1)], ...],
        Field(
            description='Deliver only records whose JSON payload field "type" is one of these '
            "(the event source mapping's filter; non-matching records are dropped for good). "
            "Empty: every record."
        ),
    ] = ()
    batch_size: Annotated[
        int,
        Field(
            ge=1,
            le=max(limits.KINESIS_BATCH_SIZE_MAX, limits.SQS_BATCH_SIZE_MAX),
            default_factory=_default_batch_size,
            description=f"Records per invocation. Default: {DEFAULT_STREAM_BATCH_SIZE} for streams, "
            f"{DEFAULT_QUEUE_BATCH_SIZE} for queues.",
        ),
    ]
    batching_window_seconds: Annotated[
        int,
        Field(
            ge=0,
            le=limits.BATCHING_WINDOW_MAX_SECONDS,
            description="Seconds the mapping waits to fill a batch.",
        ),
    ] = 0
    reserved_concurrency: Annotated[
        int,
        Field(
            ge=1,
            le=limits.RESERVED_CONCURRENCY_MAX,
            description="The function's reserved concurrency: the ceiling on load sent downstream.",
        ),
    ] = 5
    parallelization_factor: Annotated[
        int,
        Field(
            ge=1,
            le=limits.PARALLELIZATION_FACTOR_MAX,
            description="Streams only: concurrent batches per shard (order is still kept per partition key).",
        ),
    ] = 1
    max_record_age_seconds: Annotated[
        int,
        Field(
            description="Streams only: a record older than this leaves the stream for the failed-batch "
            f"bucket; -1: until it expires from the stream. Allowed: -1, or {limits.MAX_RECORD_AGE_MIN_SECONDS} "
            f"to {limits.MAX_RECORD_AGE_MAX_SECONDS}."
        ),
    ] = 86_400
    max_retry_attempts: Annotated[
        int,
        Field(
            ge=limits.STREAM_RETRY_ATTEMPTS_INFINITE,
            le=limits.STREAM_RETRY_ATTEMPTS_MAX,
            description="Streams only: retries of a batch whose invocation failed; -1: until the record "
            "expires. Records the function parks itself do not count.",
        ),
    ] = 10
    timeout_seconds: Annotated[
        int | None,
        Field(
            ge=1,
            le=limits.FUNCTION_MAX_TIMEOUT_SECONDS,
            description="Function timeout in seconds. Default: derived from the batch time estimate.",
        ),
    ] = None
    alarm_iterator_age_seconds: Annotated[
        int,
        Field(
            ge=1,
            description="Alarm when the oldest undelivered record is older than this many seconds.",
        ),
    ] = 300
    alarm_retry_age_seconds: Annotated[
        int,
        Field(
            # Below SQS's one-minute metric period a threshold says nothing sharper; no lane message lives
            # longer than SQS's 14-day retention, so a larger one could never fire.
            ge=limits.SQS_METRICS_PERIOD_SECONDS,
            le=limits.SQS_RETENTION_MAX_SECONDS,
            description="Alarm when the oldest record waiting in the retry lane is older than this many seconds "
            "(its key has been held that long). Only with a retry schedule.",
        ),
    ] = DEFAULT_ALARM_RETRY_AGE_SECONDS

    @property
    def is_stream(self) -> bool:
        return self.source.startswith(STREAM_PREFIX)

    @property
    def source_name(self) -> str:
        return self.source.split("/", 1)[1]

    @property
    def function_timeout_seconds(self) -> int:
        """The explicit timeout, or the shortest one that fits a worst-case batch."""
        return self.timeout_seconds or required_timeout_seconds(self.batch_size, self)

    def delivery_config(self) -> SubscriptionConfig:
        """Exactly the fields the function reads from DISPATCHER_SUBSCRIPTION."""
        return SubscriptionConfig.model_validate(self.model_dump(include=set(SubscriptionConfig.model_fields)))


class TeamFile(_RegistryModel):
    """registry/teams/<team>.yaml: one team's subscriptions; the file name is the team name."""

    team: Annotated[str, Field(pattern=TEAM_NAME_PATTERN, description="Team name; equals the file name.")]
    alerts_email: Annotated[
        str, Field(pattern=EMAIL_PATTERN, description="Where this team's alarms are mailed (via SNS).")
    ]
    subscriptions: tuple[RegisteredSubscription, ...] = ()
