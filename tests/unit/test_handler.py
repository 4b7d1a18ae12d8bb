"""The Lambda entry point: cold-start configuration, the partial-batch response and EMF metrics."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools import Metrics

from dispatcher.config import ConfigurationError
from dispatcher.records import UnsupportedEventError
from tests.events import event, kinesis_record, sequence_number
from tests.unit.conftest import Harness, subscription


class Context:
    function_name = "dev-orders-to-ledger"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:dev-orders-to-ledger"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


FUNCTIONS_ROOT = Path(__file__).parents[2] / "functions"
SUBSCRIPTION = {"name": "orders-to-ledger", "endpoint": "https://ledger.example.com/h", "signing_secret": "s"}
LANE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-to-ledger-retry-lane.fifo"


def fresh_handler_module() -> ModuleType:
    sys.modules.pop("dispatcher.handler", None)
    return importlib.import_module("dispatcher.handler")


Invocation = Callable[[dict[str, Any], Context], dict[str, list[dict[str, str]]]]


@contextmanager
def invocation_with(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invocation]:
    """process_batch with the harness's dispatcher injected, its metrics flushed as the entry point does."""
    monkeypatch.setenv("DISPATCHER_SUBSCRIPTION", json.dumps(SUBSCRIPTION))
    monkeypatch.setenv("DISPATCHER_IDEMPOTENCY_TABLE", "delivered-ids")
    monkeypatch.setenv("DISPATCHER_DLQ_URL", "https://sqs.eu-west-1.amazonaws.com/123456789012/parked")
    monkeypatch.setenv("DISPATCHER_PAYLOAD_BUCKET", "parked-payloads")
    monkeypatch.setenv("DISPATCHER_RETRY_LANE_URL", LANE_URL)
    module = fresh_handler_module()
    loop = asyncio.new_event_loop()
    metrics: Metrics = module.metrics

    @metrics.log_metrics
    def invoke(event: dict[str, Any], context: Context) -> dict[str, list[dict[str, str]]]:
        response: dict[str, list[dict[str, str]]] = module.process_batch(event, context, harness.dispatcher, loop)
        return response

    yield invoke
    loop.close()
    sys.modules.pop("dispatcher.handler", None)


@pytest.fixture
def invoke_with_harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Invocation, Harness]]:
    harness = Harness(subscription(name="orders-to-ledger"))
    with invocation_with(harness, monkeypatch) as invoke:
        yield invoke, harness


def test_invalid_configuration_fails_the_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_SUBSCRIPTION", json.dumps(SUBSCRIPTION | {"max_in_flight": "many"}))
    monkeypatch.setenv("DISPATCHER_IDEMPOTENCY_TABLE", "delivered-ids")
    monkeypatch.setenv("DISPATCHER_DLQ_URL", "https://sqs/parked")
    monkeypatch.setenv("DISPATCHER_PAYLOAD_BUCKET", "parked-payloads")
    with pytest.raises(ConfigurationError, match=r"DISPATCHER_SUBSCRIPTION\.max_in_flight"):
        fresh_handler_module()
    sys.modules.pop("dispatcher.handler", None)


def test_import_loads_no_aws_sdk_or_http_client() -> None:
    # Given a fresh interpreter with the function's environment
    environment = os.environ | {
        "DISPATCHER_SUBSCRIPTION": json.dumps(SUBSCRIPTION),
        "DISPATCHER_IDEMPOTENCY_TABLE": "delivered-ids",
        "DISPATCHER_DLQ_URL": "https://sqs/parked",
        "DISPATCHER_PAYLOAD_BUCKET": "parked-payloads",
        "DISPATCHER_RETRY_LANE_URL": LANE_URL,
        "PYTHONPATH": str(FUNCTIONS_ROOT),
    }
    # When it imports the handler (a cold start's init phase)
    # (Powertools itself imports the bare `botocore` package to tag its user agent: no client machinery.)
    heavy = (
        "boto3",
        "botocore.client",
        "aiohttp",
        "dispatcher.adapters.http",
        "dispatcher.adapters.dynamodb",
        "dispatcher.adapters.retry_lane",
        "dispatcher.adapters.held_keys",
    )
    probe = f"import sys, dispatcher.handler; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True)
    # Then neither the AWS SDK's clients nor the HTTP client were loaded: the first invocation builds them
    assert loaded.stdout.strip() == "[]"


def test_handler_reports_partial_failures_and_emits_metrics(
    invoke_with_harness: tuple[Invocation, Harness], capsys: pytest.CaptureFixture[str]
) -> None:
    invoke, harness = invoke_with_harness
    harness.endpoint.answers["orders:" + sequence_number(1)] = [500, 500, 500]
    harness.endpoint.answers["orders:" + sequence_number(2)] = [404]
    response = invoke(
        event(kinesis_record(0, {}, "a"), kinesis_record(1, {}, "b"), kinesis_record(2, {}, "c")), Context()
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence_number(1)}]}
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    metrics = {key: value for blob in emf for key, value in blob.items() if not key.startswith("_")}
    assert metrics["Delivered"] == [1.0]
    assert metrics["DeliveryFailed"] == [1.0]
    assert metrics["Parked"] == [1.0]
    assert metrics["Retried"] == [2.0]
    assert metrics["subscription"] == "orders-to-ledger"
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CallbackDispatcher"
    (dimension_set,) = emf[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert sorted(dimension_set) == ["service", "subscription"]


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_event_that_is_not_a_batch_raises(invoke_with_harness: tuple[Invocation, Harness]) -> None:
    invoke, _ = invoke_with_harness
    with pytest.raises(UnsupportedEventError):
        invoke({"source": "aws.events"}, Context())


def emf_metrics(stdout: str) -> dict[str, Any]:
    emf = [json.loads(line) for line in stdout.splitlines() if '"_aws"' in line]
    return {key: value for blob in emf for key, value in blob.items() if not key.startswith("_")}


def test_the_lane_metrics_are_published_and_a_lane_event_is_a_lane_round(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a subscription with a retry lane, and an endpoint that answers 503 to key "b", then 410
    harness = Harness(subscription(name="orders-to-ledger", retry_schedule_seconds=[60]), lane=True)
    harness.endpoint.answers["orders:" + sequence_number(1)] = [503, 503, 503, 410]
    with invocation_with(harness, monkeypatch) as invoke:
        # When a source batch leaves key "b" failing
        response = invoke(event(kinesis_record(0, {}, "a"), kinesis_record(1, {}, "b")), Context())
        # Then it is not reported but handed to the lane, and the metrics say so with the held keys
        assert response == {"batchItemFailures": []}
        source_metrics = emf_metrics(capsys.readouterr().out)
        assert (source_metrics["HandedToRetryLane"], source_metrics["HeldKeys"]) == ([1.0], [1.0])
        # When the lane's mapping invokes the function with the lane's batch once its round is due
        harness.clock.advance(60)
        lane_event = harness.lane.receive_event()
        assert lane_event is not None
        response = invoke(lane_event, Context())
    # Then it is a lane round: the record is POSTed, parked on the 410, and EndpointGone counts it
    assert response == {"batchItemFailures": []}
    lane_metrics = emf_metrics(capsys.readouterr().out)
    assert (lane_metrics["Parked"], lane_metrics["EndpointGone"], lane_metrics["HeldKeys"]) == ([1.0], [1.0], [0.0])
    assert harness.endpoint.requests[-1].headers["dispatch-retry-round"] == "1"
