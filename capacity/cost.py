"""The price of a million deliveries: what `make bench` measured of one warm invocation through the Lambda
handler, scaled to a subscription's batch size, concurrency of requests, endpoint latency, memory and
expected failure rate, at the prices of `capacity.prices`. Beside it, what EventBridge Pipes with an API
destination would charge for the same records.

Per invocation (a batch):
  billed seconds = own time x CPU share + ceil(batch_size / max_in_flight) x record_latency
    (or, when slower, the time the rate limit's token bucket takes to let the batch through)
    own time: the handler's time beyond waiting for the endpoint, measured per record by `make bench`;
    CPU share: Lambda gives a function one vCPU at LAMBDA_MB_PER_VCPU and proportionally less below it,
    while the benchmark had a whole core, so the own time is stretched by LAMBDA_MB_PER_VCPU / memory
  Lambda  = billed seconds x memory in GB x price per GB-s + price per request
  DynamoDB = the reads measured per batch (Kinesis: one strongly consistent GetItem; SQS: none unless
    Lambda re-sends) at one read unit each
  SQS     = the function's own requests measured per batch, plus for an SQS source the poller's
    ReceiveMessage and DeleteMessageBatch, ten messages each
  Logs    = the bytes the handler wrote per batch, measured, plus Lambda's own platform records
  KMS     = the KMS requests measured per batch (none: the function calls no KMS; the services' AWS managed
    keys are refreshed per key and time, not per record, and the source's own charges are left out as
    they are the same for Pipes)
A share `failure_rate` of the batches is sent again by Lambda (a partial failure, a timeout): each costs one
more invocation, and its delivered ids one DynamoDB write (Kinesis) or the lookups of its messages (SQS).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from capacity.prices import BYTES_PER_GB, PER_MILLION, PRICES, PriceTable

MEASUREMENT_PATH = Path(__file__).with_name("measured.json")  # written by `make bench`, committed
MB_PER_GB = 1024  # Lambda's memory setting is in MB; its price is per GB-second of 1,024 MB
LAMBDA_MB_PER_VCPU = 1769  # AWS: "at 1,769 MB, a function has the equivalent of one vCPU"
BILLED_DURATION_STEP_SECONDS = 0.001  # Lambda bills duration rounded up to the millisecond
# Lambda's platform.start and platform.report records (JSON log format) in the function's log group.
LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION = 500
SQS_MESSAGES_PER_REQUEST = 10  # ReceiveMessage and DeleteMessageBatch take at most ten messages
SQS_POLLER_REQUESTS_PER_ROUND = 2  # one ReceiveMessage and one DeleteMessageBatch
# After a Kinesis partial failure, one item lists the delivered records after the checkpoint (about half the
# batch), each by its sequence number: a write unit per KB.
DELIVERED_ID_BYTES = 60
DYNAMODB_WRITE_UNIT_BYTES = 1024
DEFAULT_FAILURE_RATE = 0.01  # a share of batches Lambda sends again
# infra.constants.FUNCTION_MEMORY_MB, which tests/capacity keeps equal: importing infra.constants loads the CDK.
FUNCTION_MEMORY_MB = 512
DYNAMODB_READS = ("dynamodb GetItem", "dynamodb BatchGetItem")
DYNAMODB_WRITES = ("dynamodb PutItem", "dynamodb UpdateItem", "dynamodb BatchWriteItem")


class MeasurementError(Exception):
    """No usable measurement to price with; says what to run."""


class SourceKind(Enum):
    KINESIS = "kinesis"
    SQS_STANDARD = "sqs"
    SQS_FIFO = "sqs-fifo"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One warm invocation through `dispatcher.handler.handler`, as `make bench` measured it."""

    batch_size: int
    max_in_flight: int
    endpoint_latency_seconds: float
    function_seconds: float  # the handler call, the best of the measured invocations
    aws_requests: dict[str, float]  # "<service> <Operation>": requests per invocation
    log_bytes: float  # bytes written to stdout per invocation (what CloudWatch Logs ingests)
    machine: str
    measured_on: str  # ISO date

    @property
    def waiting_seconds(self) -> float:
        return math.ceil(self.batch_size / self.max_in_flight) * self.endpoint_latency_seconds

    @property
    def own_seconds_per_record(self) -> float:
        """The handler's time beyond waiting for the endpoint, per record (on the benchmark's machine)."""
        return max(0.0, self.function_seconds - self.waiting_seconds) / self.batch_size

    def requests(self, operations: tuple[str, ...]) -> float:
        return sum(self.aws_requests.get(operation, 0.0) for operation in operations)

    def requests_of(self, service: str) -> float:
        return sum(count for name, count in self.aws_requests.items() if name.split(" ", 1)[0] == service)

    def save(self, path: Path | None = None) -> None:
        path = MEASUREMENT_PATH if path is None else path
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_measurement(path: Path | None = None) -> Measurement:
    """The measurement at `path` (default: MEASUREMENT_PATH, the one `make bench` writes)."""
    path = MEASUREMENT_PATH if path is None else path
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
        return Measurement(**document)
    except FileNotFoundError:
        raise MeasurementError(f"no benchmark measurement at {path}: run `make bench` first") from None
    except (ValueError, TypeError) as error:
        raise MeasurementError(f"{path} is not a measurement `make bench` wrote ({error}): run it again") from None


@dataclass(frozen=True, slots=True)
class Workload:
    """What is priced: one subscription's batches."""

    batch_size: int
    max_in_flight: int
    record_latency_seconds: float
    memory_mb: int
    failure_rate: float = DEFAULT_FAILURE_RATE
    source: SourceKind = SourceKind.KINESIS
    rate_limit_per_second: float | None = None  # per invocation: a token bucket with a second's burst

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure rate must be between 0 and 1, got {self.failure_rate}")
        if self.memory_mb < 1 or self.batch_size < 1 or self.max_in_flight < 1:
            raise ValueError("memory, batch size and max_in_flight must be at least 1")


@dataclass(frozen=True, slots=True)
class CostPerMillion:
    """US dollars per million records delivered, by service."""

    billed_seconds: float  # per invocation
    lambda_duration: float
    lambda_requests: float
    dynamodb: float
    sqs: float
    logs: float
    kms: float
    managed_path: float  # EventBridge Pipes + API destinations for the same records

    @property
    def total(self) -> float:
        return self.lambda_duration + self.lambda_requests + self.dynamodb + self.sqs + self.logs + self.kms

    @property
    def share_of_managed_path(self) -> float:
        return self.total / self.managed_path


def cost_per_million(workload: Workload, measured: Measurement, prices: PriceTable = PRICES) -> CostPerMillion:
    batches = PER_MILLION / workload.batch_size
    invocations = batches * (1 + workload.failure_rate)
    resent = batches * workload.failure_rate
    cpu_stretch = max(1.0, LAMBDA_MB_PER_VCPU / workload.memory_mb)
    delivering = math.ceil(workload.batch_size / workload.max_in_flight) * workload.record_latency_seconds
    if workload.rate_limit_per_second is not None:
        limit = workload.rate_limit_per_second
        delivering = max(delivering, (workload.batch_size - limit) / limit)  # after the first second's burst
    seconds = measured.own_seconds_per_record * workload.batch_size * cpu_stretch + delivering
    billed = math.ceil(seconds / BILLED_DURATION_STEP_SECONDS) * BILLED_DURATION_STEP_SECONDS
    gb_seconds = billed * workload.memory_mb / MB_PER_GB

    if workload.source is SourceKind.KINESIS:
        reads = invocations * measured.requests(DYNAMODB_READS)
        resent_item_units = math.ceil(workload.batch_size / 2 * DELIVERED_ID_BYTES / DYNAMODB_WRITE_UNIT_BYTES)
        writes = invocations * measured.requests(DYNAMODB_WRITES) + resent * resent_item_units
        dynamodb_units = (
            reads * prices.dynamodb_usd_per_read_request_unit + writes * prices.dynamodb_usd_per_write_request_unit
        )
        sqs_requests = invocations * measured.requests_of("sqs")
    else:
        dynamodb_units = resent * workload.batch_size * prices.dynamodb_usd_per_read_request_unit
        polling = SQS_POLLER_REQUESTS_PER_ROUND * math.ceil(workload.batch_size / SQS_MESSAGES_PER_REQUEST)
        sqs_requests = invocations * (polling + measured.requests_of("sqs"))
    fifo = workload.source is SourceKind.SQS_FIFO
    sqs_price = prices.sqs_fifo_usd_per_request if fifo else prices.sqs_standard_usd_per_request
    log_bytes = invocations * (measured.log_bytes + LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION)
    return CostPerMillion(
        billed_seconds=billed,
        lambda_duration=invocations * gb_seconds * prices.lambda_arm64_usd_per_gb_second,
        lambda_requests=invocations * prices.lambda_usd_per_request,
        dynamodb=dynamodb_units,
        sqs=sqs_requests * sqs_price,
        logs=log_bytes / BYTES_PER_GB * prices.cloudwatch_logs_usd_per_gb_ingested,
        kms=invocations * measured.requests_of("kms") * prices.kms_usd_per_request,
        managed_path=managed_path_per_million(prices),
    )


def managed_path_per_million(prices: PriceTable = PRICES) -> float:
    """EventBridge Pipes reading the source and an API destination POSTing each record: one Pipes request and
    one API destination invocation per record of up to 64 KB (retries extra)."""
    return PER_MILLION * (prices.eventbridge_pipes_usd_per_request + prices.api_destinations_usd_per_invocation)
