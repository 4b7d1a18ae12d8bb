"""The benchmark's harness on a tiny run: the Lambda handler reached through its entry point, with its AWS and
its endpoint in processes of their own, measured as the cost figure needs it. No timing is asserted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import cost_figure, workload
from bench.aws_process import AwsProcess
from bench.endpoint import EndpointProcess
from bench.lambda_function import LambdaFunction
from capacity import cost


@pytest.fixture(scope="module")
def helpers() -> Iterator[tuple[AwsProcess, EndpointProcess]]:
    with AwsProcess() as aws, EndpointProcess() as endpoint:
        yield aws, endpoint


def test_an_invocation_is_measured_as_lambda_bills_it(helpers: tuple[AwsProcess, EndpointProcess]) -> None:
    # Given the handler with its table, queues, bucket and secret in the benchmark's moto
    aws, endpoint = helpers
    with LambdaFunction(aws, endpoint.url(0)) as function:
        function.invoke(workload.kinesis_event(5))  # the first invocation also fetches the signing secret

        # When a warm invocation delivers 20 records it has never seen
        invocation = function.invoke(workload.kinesis_event(20, first=5))

    # Then all are delivered, with the one delivered-ids read of a Kinesis batch, and what went to stdout is
    # counted: Powertools' "batch dispatched" line and one EMF document
    assert invocation.response == {"batchItemFailures": []}
    assert invocation.aws_requests == {"dynamodb GetItem": 1}
    assert invocation.log_events == 2
    assert invocation.log_bytes > 0
    assert invocation.seconds > 0


def test_the_cost_figure_writes_the_measurement_plan_reads(
    helpers: tuple[AwsProcess, EndpointProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a short cost run writing its measurement into tmp_path
    aws, endpoint = helpers
    monkeypatch.setattr(cost_figure, "INVOCATIONS", 2)
    monkeypatch.setattr(cost, "MEASUREMENT_PATH", tmp_path / "measured.json")

    # When figure (e) runs
    figures = cost_figure.run(aws, endpoint)

    # Then it judges the price against the goal beside the managed path, and plan can read what it measured
    assert [figure.name for figure in figures] == [
        "(e) dispatcher: US$ per million deliveries",
        "(e) baseline: EventBridge Pipes + API destinations",
        "(e) measured per invocation",
    ]
    assert figures[0].target == "<= $0.06"
    assert figures[0].passed is not None
    assert figures[1].value == "$0.60"
    measured = cost.load_measurement()
    assert measured.batch_size == cost_figure.BATCH
    assert measured.aws_requests == {"dynamodb GetItem": 1.0}
    assert measured.log_bytes > 0
