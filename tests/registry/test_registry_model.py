"""Defaults, the function contract and environment warnings of a registered subscription."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from dispatcher.config import (
    DLQ_URL_ENV,
    IDEMPOTENCY_TABLE_ENV,
    PAYLOAD_BUCKET_ENV,
    RETRY_LANE_URL_ENV,
    SUBSCRIPTION_ENV,
    SubscriptionConfig,
    load_settings,
)
from infra.registry import RegisteredSubscription, load_registry
from infra.registry.limits import Environment
from tests.registry.builders import fifo_subscription, queue_subscription, stream_subscription, team
from tests.registry.conftest import RegistryWriter


def test_name_source_and_endpoint_are_enough_for_every_kind_of_source(write_registry: RegistryWriter) -> None:
    # Given one minimal subscription per kind of source
    root = write_registry(
        team(
            "payments",
            stream_subscription(name="from-stream"),
            queue_subscription(name="from-queue"),
            fifo_subscription(name="from-fifo"),
        )
    )

    # When the registry is loaded
    registry = load_registry(root, "prod").registry

    # Then the documented defaults apply, with the batch size Lambda uses for each kind of source
    by_name = {subscription.name: subscription for _, subscription in registry.registrations()}
    assert by_name["from-stream"].batch_size == 100
    assert by_name["from-queue"].batch_size == 10
    assert by_name["from-fifo"].batch_size == 10
    assert by_name["from-stream"].signing_secret == "callback-dispatcher/from-stream"
    assert by_name["from-stream"].reserved_concurrency == 5
    assert by_name["from-stream"].max_record_age_seconds == 86_400
    assert by_name["from-stream"].event_types == ()


def test_the_derived_function_timeout_fits_a_worst_case_batch_and_the_shutdown_reserve() -> None:
    # Given 100 records, 10 in flight, 3 attempts of at most 5 s each
    subscription = RegisteredSubscription.model_validate(
        stream_subscription(batch_size=100, max_in_flight=10, max_attempts=3, request_timeout_seconds=5)
    )

    # Then the function may run 10 rounds x 3 attempts x 5 s, plus 3 s to park what failed
    assert subscription.function_timeout_seconds == 153


def test_an_explicit_function_timeout_wins_when_it_is_long_enough() -> None:
    subscription = RegisteredSubscription.model_validate(stream_subscription(timeout_seconds=600))

    assert subscription.function_timeout_seconds == 600


def test_the_function_reads_back_exactly_the_delivery_settings_of_the_registration() -> None:
    # Given a registration with deployment fields the function does not know
    subscription = RegisteredSubscription.model_validate(
        stream_subscription(
            batch_size=500,
            reserved_concurrency=3,
            max_in_flight=40,
            rate_limit_per_second=25,
            allow_private_cidrs=["10.8.0.0/16"],
            endpoint="https://10.8.1.2/hook",
        )
    )

    # When its delivery settings go through the function's environment contract
    environment = {
        SUBSCRIPTION_ENV: subscription.delivery_config().model_dump_json(),
        IDEMPOTENCY_TABLE_ENV: "prod-dispatcher-delivered-ids",
        DLQ_URL_ENV: "https://sqs.eu-west-1.amazonaws.com/123456789012/prod-hook-parked",
        PAYLOAD_BUCKET_ENV: "prod-parked-payloads",
        RETRY_LANE_URL_ENV: "https://sqs.eu-west-1.amazonaws.com/123456789012/prod-hook-retry-lane.fifo",
    }
    settings = load_settings(environment)

    # Then the function sees the same delivery settings and none of the deployment ones
    assert settings.subscription == SubscriptionConfig(
        name="hook",
        endpoint="https://10.8.1.2/hook",
        max_in_flight=40,
        rate_limit_per_second=25,
        signing_secret="callback-dispatcher/hook",
        allow_private_cidrs=(ip_network("10.8.0.0/16"),),
    )


@pytest.mark.parametrize(("environment", "expected_count"), [("dev", 0), ("staging", 2), ("prod", 2)])
def test_http_and_private_ranges_are_legal_but_warned_about_outside_dev(
    write_registry: RegistryWriter, environment: Environment, expected_count: int
) -> None:
    # Given an internal endpoint on plain http inside an allowed private range
    root = write_registry(
        team(
            "payments",
            stream_subscription(endpoint="http://10.8.1.2/hook", allow_http=True, allow_private_cidrs=["10.8.0.0/16"]),
        )
    )

    # When the registry is loaded for an environment
    loaded = load_registry(root, environment)

    # Then it is valid everywhere, and outside dev both choices are flagged for a second look
    assert len(loaded.warnings) == expected_count
    if expected_count:
        assert [str(warning) for warning in loaded.warnings] == [
            "registry/teams/payments.yaml: subscription 'hook': allow_http: is true in "
            f"{environment}: records and signatures travel unencrypted",
            "registry/teams/payments.yaml: subscription 'hook': allow_private_cidrs: lets the endpoint reach "
            f"private addresses (10.8.0.0/16) in {environment}",
        ]
