"""Figure (e): the price of a million deliveries, from invocations of the Lambda handler measured here:
100-record batches against the 20 ms endpoint, the handler's time, its AWS requests and the bytes it logs.

The handler's time is the best of INVOCATIONS, as in (a) and (b): the least disturbed invocation says best
what the code costs, and a Lambda function does not share its CPU share with other processes as this machine
does. The measurement is written to capacity/measured.json, which `dispatcher plan` prices subscriptions with.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections import Counter

from bench import workload
from bench.aws_process import AwsProcess
from bench.endpoint import EndpointProcess
from bench.lambda_function import LambdaFunction
from bench.report import Figure, emit, ms, progress, section
from capacity.cost import (
    FUNCTION_MEMORY_MB,
    MEASUREMENT_PATH,
    Measurement,
    Workload,
    cost_per_million,
    managed_path_per_million,
)
from capacity.prices import PRICES

BATCH = 100
LATENCY_MS = 20
INVOCATIONS = 15  # measured, after one warm-up
TARGET_USD_PER_MILLION = 0.06
FIRST_POSITION = 10_000_000  # far from the positions (a) and (b) use, so no record is seen twice


def run(aws: AwsProcess, endpoint: EndpointProcess) -> list[Figure]:
    section(
        f"(e) price of a million deliveries: {BATCH}-record Kinesis batches through the Lambda handler, "
        f"endpoint answers after {LATENCY_MS} ms, {workload.MAX_IN_FLIGHT} in flight, {FUNCTION_MEMORY_MB} MB arm64, "
        f"{PRICES.region} prices of {PRICES.dated.isoformat()}"
    )
    measured = measure(aws, endpoint)
    measured.save()
    cost = cost_per_million(Workload(BATCH, workload.MAX_IN_FLIGHT, LATENCY_MS / 1000, FUNCTION_MEMORY_MB), measured)
    requests = ", ".join(f"{count:g} {name}" for name, count in sorted(measured.aws_requests.items())) or "none"
    return [
        emit(
            Figure(
                "(e) dispatcher: US$ per million deliveries",
                f"${cost.total:.4f}",
                f"<= ${TARGET_USD_PER_MILLION}",
                cost.total <= TARGET_USD_PER_MILLION,
                f"Lambda ${cost.lambda_duration:.4f} + ${cost.lambda_requests:.4f} requests, DynamoDB "
                f"${cost.dynamodb:.4f}, SQS ${cost.sqs:.4f}, Logs ${cost.logs:.4f}, KMS ${cost.kms:.4f}",
            )
        ),
        emit(
            Figure(
                "(e) baseline: EventBridge Pipes + API destinations",
                f"${managed_path_per_million():.2f}",
                detail=f"the dispatcher costs {cost.share_of_managed_path:.0%} of it",
            )
        ),
        emit(
            Figure(
                "(e) measured per invocation",
                ms(measured.function_seconds),
                detail=f"best of {INVOCATIONS}; {measured.log_bytes:,.0f} bytes logged; AWS requests: {requests}; "
                f"billed on Lambda as {ms(cost.billed_seconds)} (own time x {FUNCTION_MEMORY_MB} MB's CPU share); "
                f"written to {MEASUREMENT_PATH.name}",
            )
        ),
    ]


def measure(aws: AwsProcess, endpoint: EndpointProcess) -> Measurement:
    durations: list[float] = []
    requests: Counter[str] = Counter()
    log_bytes = 0
    with LambdaFunction(aws, endpoint.url(LATENCY_MS)) as function:
        progress("warming up")
        function.invoke(workload.kinesis_event(BATCH, FIRST_POSITION))
        for run in range(INVOCATIONS):
            invocation = function.invoke(workload.kinesis_event(BATCH, FIRST_POSITION + (run + 1) * BATCH))
            if invocation.response["batchItemFailures"]:
                raise RuntimeError(f"the handler reported failures: {invocation.response}")
            durations.append(invocation.seconds)
            requests.update(invocation.aws_requests)
            log_bytes += invocation.log_bytes
    return Measurement(
        batch_size=BATCH,
        max_in_flight=workload.MAX_IN_FLIGHT,
        endpoint_latency_seconds=LATENCY_MS / 1000,
        function_seconds=min(durations),
        aws_requests={name: count / INVOCATIONS for name, count in requests.items()},
        log_bytes=log_bytes / INVOCATIONS,
        machine=machine_description(),
        measured_on=datetime.datetime.now(datetime.UTC).date().isoformat(),
    )


def machine_description() -> str:
    """CPU model and count, and the Python the benchmark ran on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{os.cpu_count()} x {model}, Python {platform.python_version()}"
