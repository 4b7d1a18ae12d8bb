"""The price of a million deliveries from the benchmark's measurement, service by service, and the managed
path it is compared with."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capacity.cost import (
    FUNCTION_MEMORY_MB,
    LAMBDA_MB_PER_VCPU,
    Measurement,
    MeasurementError,
    SourceKind,
    Workload,
    cost_per_million,
    load_measurement,
    managed_path_per_million,
)
from capacity.prices import PRICES

# 100 records, 32 in flight, 20 ms endpoint: 4 rounds = 80 ms waiting; 129 ms in all, so 0.49 ms per record
MEASURED = Measurement(
    batch_size=100,
    max_in_flight=32,
    endpoint_latency_seconds=0.02,
    function_seconds=0.129,
    aws_requests={"dynamodb GetItem": 1.0},
    log_bytes=3_000.0,
    machine="test machine",
    measured_on="2026-11-27",
)
BENCH_WORKLOAD = Workload(batch_size=100, max_in_flight=32, record_latency_seconds=0.02, memory_mb=512, failure_rate=0)
BATCHES_PER_MILLION = 10_000  # of 100 records


def test_the_price_of_the_benchmarks_batches_is_worked_out_service_by_service() -> None:
    # When a million records go out in the benchmark's batches (no failures)
    cost = cost_per_million(BENCH_WORKLOAD, MEASURED)

    # Then Lambda bills the own time stretched to 512 MB's share of a vCPU, plus the four 20 ms rounds, per ms
    own_seconds = 0.049 * LAMBDA_MB_PER_VCPU / 512
    assert cost.billed_seconds == pytest.approx(math.ceil((own_seconds + 0.08) * 1000) / 1000)
    gb_seconds = cost.billed_seconds * 512 / 1024
    assert cost.lambda_duration == pytest.approx(BATCHES_PER_MILLION * gb_seconds * 0.0000133334)
    assert cost.lambda_requests == pytest.approx(BATCHES_PER_MILLION * 0.20 / 1e6)
    # and DynamoDB one read unit per batch, Logs the bytes logged plus Lambda's platform records
    assert cost.dynamodb == pytest.approx(BATCHES_PER_MILLION * 0.125 / 1e6)
    assert cost.logs == pytest.approx(BATCHES_PER_MILLION * (3_000 + 500) / 1e9 * 0.50)
    assert cost.sqs == 0
    assert cost.kms == 0
    assert cost.total == pytest.approx(
        cost.lambda_duration + cost.lambda_requests + cost.dynamodb + cost.logs, rel=1e-12
    )
    # and the goal holds: at most 6 cents, a tenth of the managed path's 60
    assert cost.total <= 0.06
    assert cost.managed_path == pytest.approx(0.60)
    assert cost.share_of_managed_path < 0.1


def test_batches_sent_again_cost_an_invocation_each_and_their_delivered_ids_a_write() -> None:
    # Given one batch in ten sent again by Lambda
    clean = cost_per_million(BENCH_WORKLOAD, MEASURED)
    failing = cost_per_million(dataclasses.replace(BENCH_WORKLOAD, failure_rate=0.1), MEASURED)

    # Then Lambda and the reads cost 10% more, and each re-sent batch writes its delivered ids (3 KB: 3 units)
    assert failing.lambda_duration == pytest.approx(clean.lambda_duration * 1.1)
    assert failing.lambda_requests == pytest.approx(clean.lambda_requests * 1.1)
    writes = BATCHES_PER_MILLION * 0.1 * 3
    assert failing.dynamodb == pytest.approx(clean.dynamodb * 1.1 + writes * 0.625 / 1e6)


@pytest.mark.parametrize(
    ("source", "price_per_request"), [(SourceKind.SQS_STANDARD, 0.40), (SourceKind.SQS_FIFO, 0.50)]
)
def test_an_sqs_source_pays_the_pollers_requests_ten_messages_each(
    source: SourceKind, price_per_request: float
) -> None:
    # When the batches come from a queue
    cost = cost_per_million(dataclasses.replace(BENCH_WORKLOAD, source=source), MEASURED)

    # Then each batch of 100 costs ten receives and ten batch deletes, and no delivered-ids read
    assert cost.sqs == pytest.approx(BATCHES_PER_MILLION * 20 * price_per_request / 1e6)
    assert cost.dynamodb == 0


def test_a_rate_limit_slower_than_the_endpoint_is_what_lambda_bills() -> None:
    # Given 100 records a batch limited to 50 per second (a second's burst, then 50 more at 50/s)
    limited = dataclasses.replace(BENCH_WORKLOAD, rate_limit_per_second=50.0)

    # Then the batch takes at least the second the bucket needs, not the four 20 ms rounds
    assert cost_per_million(limited, MEASURED).billed_seconds >= 1.0
    assert cost_per_million(BENCH_WORKLOAD, MEASURED).billed_seconds < 1.0


@given(
    first=st.floats(min_value=0.0, max_value=1.0),
    second=st.floats(min_value=0.0, max_value=1.0),
    latency=st.floats(min_value=0.001, max_value=30.0),
    batch_size=st.integers(min_value=1, max_value=10_000),
)
def test_more_failures_never_cost_less(first: float, second: float, latency: float, batch_size: int) -> None:
    # Given the same batches with two failure rates
    workload = Workload(batch_size, 32, latency, FUNCTION_MEMORY_MB)
    lower, higher = sorted((first, second))

    # Then the higher rate costs at least as much
    cheaper = cost_per_million(dataclasses.replace(workload, failure_rate=lower), MEASURED)
    dearer = cost_per_million(dataclasses.replace(workload, failure_rate=higher), MEASURED)
    assert dearer.total >= cheaper.total * (1 - 1e-12)


def test_the_managed_path_is_pipes_and_api_destinations_per_record() -> None:
    assert managed_path_per_million() == pytest.approx(0.40 + 0.20)


def test_the_price_table_is_dated() -> None:
    assert PRICES.dated.year >= 2025
    assert PRICES.region == "us-east-1"


def test_the_default_memory_is_the_deployed_functions() -> None:
    from infra import constants

    assert constants.FUNCTION_MEMORY_MB == FUNCTION_MEMORY_MB


def test_a_measurement_survives_its_file(tmp_path: Path) -> None:
    path = tmp_path / "measured.json"
    MEASURED.save(path)
    assert load_measurement(path) == MEASURED


def test_without_a_measurement_the_error_says_to_run_the_benchmark(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError, match="run `make bench` first"):
        load_measurement(tmp_path / "absent.json")


@pytest.mark.parametrize("text", ["not json", '{"batch_size": 100}', "[]"])
def test_a_file_that_is_no_measurement_is_refused_by_name(tmp_path: Path, text: str) -> None:
    path = tmp_path / "measured.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MeasurementError, match=r"measured.json is not a measurement `make bench` wrote"):
        load_measurement(path)


def test_unreasonable_workloads_are_refused() -> None:
    with pytest.raises(ValueError, match="failure rate must be between 0 and 1"):
        dataclasses.replace(BENCH_WORKLOAD, failure_rate=1.5)
