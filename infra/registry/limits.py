"""AWS service limits and function-contract numbers the registry is validated against, each with its unit.

Plain Python on purpose: `dispatcher validate` and the function-side tooling import the validator without
starting the CDK's node runtime. The constructs read the same numbers from here, so a check and the
resource it protects cannot drift apart. Sources: the Lambda, Kinesis and SQS developer guides.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Environment = Literal["dev", "staging", "prod"]
ENVIRONMENTS: Final[tuple[Environment, ...]] = get_args(Environment)
# The environment where plain http:// endpoints and private address ranges pass without a warning.
PERMISSIVE_ENVIRONMENT: Final[Environment] = "dev"

# --- Lambda -------------------------------------------------------------------------------------------
FUNCTION_MAX_TIMEOUT_SECONDS: Final = 900  # s, Lambda's hard limit
# The function stops starting HTTP attempts when less than this remains of its timeout: it needs the time
# to park unfinished records and write its delivered-ids entries.
FUNCTION_SHUTDOWN_RESERVE_SECONDS: Final = 3  # s
RESERVED_CONCURRENCY_MAX: Final = 1_000  # concurrent executions, the default account quota

# --- Event source mappings ----------------------------------------------------------------------------
KINESIS_BATCH_SIZE_MAX: Final = 10_000  # records
SQS_BATCH_SIZE_MAX: Final = 10_000  # messages
SQS_BATCH_SIZE_WITHOUT_WINDOW_MAX: Final = 10  # messages; above this Lambda needs a batching window
SQS_BATCH_SIZE_NEEDS_WINDOW_SECONDS: Final = 1  # s, the smallest window Lambda accepts for large batches
SQS_FIFO_BATCH_SIZE_MAX: Final = 10  # messages
BATCHING_WINDOW_MAX_SECONDS: Final = 300  # s
PARALLELIZATION_FACTOR_MAX: Final = 10  # concurrent batches per shard
MAX_RECORD_AGE_INFINITE: Final = -1  # "until the record expires from the stream"
MAX_RECORD_AGE_MIN_SECONDS: Final = 60  # s
MAX_RECORD_AGE_MAX_SECONDS: Final = 604_800  # s (7 days)
STREAM_RETRY_ATTEMPTS_INFINITE: Final = -1  # "until the record expires"
STREAM_RETRY_ATTEMPTS_MAX: Final = 10_000  # retries
SQS_MAXIMUM_CONCURRENCY_MIN: Final = 2  # concurrent invocations, ScalingConfig.MaximumConcurrency
SQS_MAXIMUM_CONCURRENCY_MAX: Final = 1_000  # concurrent invocations

# --- Sources ------------------------------------------------------------------------------------------
STREAM_RETENTION_MIN_HOURS: Final = 24  # h
STREAM_RETENTION_MAX_HOURS: Final = 8_760  # h (365 days)
STREAM_SHARDS_MAX: Final = 500  # shards, the default provisioned-mode quota per stream in most regions
QUEUE_MAX_RECEIVE_COUNT_MIN: Final = 5  # receives; fewer dead-letters messages a throttled poller never saw
QUEUE_MAX_RECEIVE_COUNT_MAX: Final = 1_000  # receives
SQS_RETENTION_MAX_SECONDS: Final = 1_209_600  # s (14 days), the longest SQS keeps a message
SQS_METRICS_PERIOD_SECONDS: Final = 60  # s, how often SQS publishes a queue's CloudWatch metrics
