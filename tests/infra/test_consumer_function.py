"""Each subscription's function: runtime, sizing, concurrency, timeout, logs and the environment contract."""

from __future__ import annotations

from dispatcher.config import (
    DLQ_URL_ENV,
    IDEMPOTENCY_TABLE_ENV,
    PAYLOAD_BUCKET_ENV,
    RETRY_LANE_URL_ENV,
    SUBSCRIPTION_ENV,
    SubscriptionConfig,
)
from tests.infra.conftest import Resources


def test_the_function_runs_python_3_13_on_arm_with_the_registry_concurrency_and_a_derived_timeout(
    resources: Resources,
) -> None:
    # Given events-to-alpha: 200 records, 50 in flight, 3 attempts of 4 s, reserved concurrency 7
    # When its function is read from the template
    _, function = resources.function("events-to-alpha")

    # Then the timeout fits a worst-case batch: 4 rounds x 3 attempts x 4 s + 3 s to park what failed
    assert function["Timeout"] == 51
    assert function["ReservedConcurrentExecutions"] == 7
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "dispatcher.handler.handler"
    assert function["MemorySize"] == 512


def test_the_function_environment_is_exactly_the_contract_the_function_parses(resources: Resources) -> None:
    # Given events-to-alpha's function
    _, function = resources.function("events-to-alpha")
    variables = function["Environment"]["Variables"]
    table_id, _ = resources.named("AWS::DynamoDB::Table", "TableName", "prod-dispatcher-delivered-ids")
    parked_id, _ = resources.named("AWS::SQS::Queue", "QueueName", "prod-events-to-alpha-parked")
    lane_id, _ = resources.retry_lane_of("events-to-alpha")

    # When the function parses DISPATCHER_SUBSCRIPTION with its own model
    delivery = SubscriptionConfig.model_validate_json(variables[SUBSCRIPTION_ENV])

    # Then it sees the registered delivery settings, the table, its own parked-records queue, the payload bucket
    # and its own retry lane
    assert delivery == SubscriptionConfig(
        name="events-to-alpha",
        endpoint="https://alpha.example.com/events",
        max_in_flight=50,
        request_timeout_seconds=4,
        max_attempts=3,
        signing_secret="alpha/events-hook",
        retry_schedule_seconds=(60, 600),
    )
    assert variables[IDEMPOTENCY_TABLE_ENV] == {"Ref": table_id}
    assert variables[DLQ_URL_ENV] == {"Ref": parked_id}
    assert variables[PAYLOAD_BUCKET_ENV] == {"Ref": resources.parked_payload_bucket_id()}
    assert variables[RETRY_LANE_URL_ENV] == {"Ref": lane_id}
    assert set(variables) == {
        SUBSCRIPTION_ENV,
        IDEMPOTENCY_TABLE_ENV,
        DLQ_URL_ENV,
        PAYLOAD_BUCKET_ENV,
        RETRY_LANE_URL_ENV,
    }


def test_the_function_logs_to_its_own_group_with_retention(resources: Resources) -> None:
    _, function = resources.function("jobs-to-beta")
    log_group_id, log_group = resources.named("AWS::Logs::LogGroup", "LogGroupName", "/aws/lambda/prod-jobs-to-beta")

    assert function["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": log_group_id}}
    assert log_group["RetentionInDays"] == 90


def test_each_subscription_parks_records_in_its_own_encrypted_queue_kept_14_days(resources: Resources) -> None:
    for name in ("events-to-alpha", "events-to-beta", "events-to-gamma", "audit-to-beta", "jobs-to-beta"):
        _, parked = resources.named("AWS::SQS::Queue", "QueueName", f"prod-{name}-parked")
        assert parked["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert parked["SqsManagedSseEnabled"] is True
