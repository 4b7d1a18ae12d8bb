"""The post-deploy smoke check against an in-process moto: a canary put on the stream, its delivery read back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import yaml
from moto import mock_aws

from infra.registry import Registry, load_registry
from pipeline.smoke_check import CanaryRoute, SmokeCheckError, canary_route, run_smoke_check
from tests.fake_aws import use_fake_aws

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_logs import CloudWatchLogsClient

REGION = "eu-west-1"
ROUTE = CanaryRoute(stream="staging-canary", log_group="/aws/lambda/staging-canary")
CANARY = {"name": "canary", "source": "stream/canary", "endpoint": "https://canary.platform.example.com/hook"}
SOURCES = {"streams": [{"name": "canary"}, {"name": "orders"}]}


def registry(tmp_path: Path, *subscriptions: dict[str, Any]) -> Registry:
    (tmp_path / "teams").mkdir()
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(SOURCES), encoding="utf-8")
    document = {"team": "platform", "alerts_email": "platform@example.com", "subscriptions": list(subscriptions)}
    (tmp_path / "teams" / "platform.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return load_registry(tmp_path, "staging").registry


def test_the_route_is_the_environments_canary_stream_and_function_log(tmp_path: Path) -> None:
    assert canary_route(registry(tmp_path, CANARY), "staging") == ROUTE


def test_a_registry_without_the_canary_says_how_to_register_it(tmp_path: Path) -> None:
    orders = {**CANARY, "name": "orders-hook", "source": "stream/orders"}

    with pytest.raises(SmokeCheckError, match=r"read by the subscription 'canary' alone \(found: none\).*docs/"):
        canary_route(registry(tmp_path, orders), "staging")


def test_a_second_reader_of_the_canary_stream_is_refused(tmp_path: Path) -> None:
    eavesdropper = {**CANARY, "name": "eavesdropper"}

    with pytest.raises(SmokeCheckError, match=r"found: canary, eavesdropper"):
        canary_route(registry(tmp_path, CANARY, eavesdropper), "staging")


class FakeFunction:
    """Stands in for the canary function: on the first poll it logs what one invocation would."""

    def __init__(self, logs: CloudWatchLogsClient, kinesis: KinesisClient, batch: dict[str, Any]) -> None:
        self.logs, self.kinesis, self.batch = logs, kinesis, batch
        self.polls = 0
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.polls += 1
        if self.polls == 1:
            stream = self.kinesis.describe_stream(StreamName=ROUTE.stream)["StreamDescription"]
            iterator = self.kinesis.get_shard_iterator(
                StreamName=ROUTE.stream, ShardId=stream["Shards"][0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            records = self.kinesis.get_records(ShardIterator=iterator)["Records"]
            self.received = [json.loads(record["Data"]) for record in records]
            lines = ["START RequestId: 1", json.dumps({"message": "batch dispatched", **self.batch})]
            self.logs.put_log_events(
                logGroupName=ROUTE.log_group,
                logStreamName="2026/11/27/[$LATEST]1",
                logEvents=[{"timestamp": int(time.time() * 1000), "message": line} for line in lines],
            )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[KinesisClient, CloudWatchLogsClient]]:
    use_fake_aws(monkeypatch, tmp_path, REGION, None)
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name=REGION)
        logs = boto3.client("logs", region_name=REGION)
        kinesis.create_stream(StreamName=ROUTE.stream, ShardCount=1)
        logs.create_log_group(logGroupName=ROUTE.log_group)
        logs.create_log_stream(logGroupName=ROUTE.log_group, logStreamName="2026/11/27/[$LATEST]1")
        yield kinesis, logs


def test_a_delivered_canary_passes(aws: tuple[KinesisClient, CloudWatchLogsClient]) -> None:
    kinesis, logs = aws
    function = FakeFunction(logs, kinesis, {"records": 1, "delivered": 1, "failed": 0, "parked": 0})

    event, batch = run_smoke_check(
        ROUTE,
        "https://github.com/o/r/actions/runs/1",
        kinesis=kinesis,
        logs=logs,
        clock=function.clock,
        sleep=function.sleep,
    )

    assert function.received == [event]
    assert event["type"] == "dispatcher.canary"
    assert event["pipeline_run"] == "https://github.com/o/r/actions/runs/1"
    assert batch["delivered"] == 1


def test_a_parked_canary_fails_at_once(aws: tuple[KinesisClient, CloudWatchLogsClient]) -> None:
    kinesis, logs = aws
    function = FakeFunction(logs, kinesis, {"records": 1, "delivered": 0, "failed": 0, "parked": 1})

    with pytest.raises(SmokeCheckError, match="refused the canary for good"):
        run_smoke_check(ROUTE, "local", kinesis=kinesis, logs=logs, clock=function.clock, sleep=function.sleep)
    assert function.polls == 1


def test_a_canary_still_failing_at_the_deadline_fails_reporting_what_the_function_logged(
    aws: tuple[KinesisClient, CloudWatchLogsClient],
) -> None:
    kinesis, logs = aws
    function = FakeFunction(logs, kinesis, {"records": 1, "delivered": 0, "failed": 1, "parked": 0})

    with pytest.raises(SmokeCheckError, match=r"within 60 s of the canary; batches that failed to deliver: .*failed"):
        run_smoke_check(
            ROUTE, "local", kinesis=kinesis, logs=logs, timeout_seconds=60, clock=function.clock, sleep=function.sleep
        )


def test_a_function_that_never_ran_is_reported_as_such(aws: tuple[KinesisClient, CloudWatchLogsClient]) -> None:
    kinesis, logs = aws
    clock = iter(range(0, 1000, 10))

    with pytest.raises(SmokeCheckError, match="the function never ran"):
        run_smoke_check(
            ROUTE,
            "local",
            kinesis=kinesis,
            logs=logs,
            timeout_seconds=30,
            clock=lambda: next(clock),
            sleep=lambda _: None,
        )


def test_a_missing_stream_fails_naming_it(aws: tuple[KinesisClient, CloudWatchLogsClient]) -> None:
    kinesis, logs = aws

    with pytest.raises(SmokeCheckError, match="could not put the canary on prod-canary"):
        run_smoke_check(
            CanaryRoute("prod-canary", ROUTE.log_group), "local", kinesis=kinesis, logs=logs, sleep=lambda _: None
        )
