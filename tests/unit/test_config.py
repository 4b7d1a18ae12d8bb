from __future__ import annotations

import json
from typing import Any

import pytest

from dispatcher.config import (
    DLQ_URL_ENV,
    IDEMPOTENCY_TABLE_ENV,
    SUBSCRIPTION_ENV,
    ConfigurationError,
    load_settings,
)

VALID: dict[str, Any] = {
    "name": "orders-to-ledger",
    "endpoint": "https://ledger.example.com/hooks",
    "signing_secret": "payments/ledger-hook",
}


def environ(subscription: Any) -> dict[str, str]:
    text = subscription if isinstance(subscription, str) else json.dumps(subscription)
    return {SUBSCRIPTION_ENV: text, IDEMPOTENCY_TABLE_ENV: "delivered-ids", DLQ_URL_ENV: "https://sqs/parked"}


def test_valid_subscription_gets_documented_defaults() -> None:
    # Given only the required fields
    # When the function parses its environment
    settings = load_settings(environ(VALID))
    # Then every other field has its documented default
    config = settings.subscription
    assert (config.ordering, config.max_in_flight, config.max_attempts) == ("partition-key", 16, 5)
    assert (config.request_timeout_seconds, config.rate_limit_per_second) == (10.0, None)
    assert (config.allow_private_cidrs, config.allow_http) == ((), False)
    assert (settings.idempotency_table, settings.dlq_url) == ("delivered-ids", "https://sqs/parked")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"colour": "blue"}, "DISPATCHER_SUBSCRIPTION.colour: unknown field"),
        ({"max_in_flight": 0}, "DISPATCHER_SUBSCRIPTION.max_in_flight: Input should be greater than or equal to 1"),
        ({"max_in_flight": 1001}, "DISPATCHER_SUBSCRIPTION.max_in_flight: Input should be less than or equal to 1000"),
        ({"max_attempts": 21}, "DISPATCHER_SUBSCRIPTION.max_attempts: Input should be less than or equal to 20"),
        (
            {"request_timeout_seconds": 0.05},
            "DISPATCHER_SUBSCRIPTION.request_timeout_seconds: Input should be greater than or equal to 0.1",
        ),
        ({"ordering": "strict"}, "DISPATCHER_SUBSCRIPTION.ordering: Input should be 'partition-key' or 'none'"),
        ({"rate_limit_per_second": 0}, "DISPATCHER_SUBSCRIPTION.rate_limit_per_second: Input should be greater than 0"),
        ({"allow_private_cidrs": ["10.0.0.1/8"]}, "DISPATCHER_SUBSCRIPTION.allow_private_cidrs.0"),
        ({"endpoint": "ftp://ledger.example.com"}, "DISPATCHER_SUBSCRIPTION.endpoint: Value error, must be an http(s)"),
        ({"endpoint": "https://user:pw@ledger.example.com"}, "must not carry credentials"),
        ({"name": "Orders To Ledger"}, "DISPATCHER_SUBSCRIPTION.name: String should match pattern"),
    ],
)
def test_invalid_field_fails_cold_start_naming_the_field(override: dict[str, Any], message: str) -> None:
    # Given a subscription with one bad field
    # When the function parses it
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ(VALID | override))
    # Then the error names the field and the reason
    assert message in str(error.value)


def test_plain_http_needs_allow_http() -> None:
    with pytest.raises(ConfigurationError, match="http:// needs allow_http: true"):
        load_settings(environ(VALID | {"endpoint": "http://ledger.internal/hooks"}))
    allowed = load_settings(environ(VALID | {"endpoint": "http://ledger.internal/hooks", "allow_http": True}))
    assert allowed.subscription.allow_http


def test_missing_variables_are_all_named() -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings({SUBSCRIPTION_ENV: json.dumps(VALID)})
    assert str(error.value) == f"missing environment variable(s): {IDEMPOTENCY_TABLE_ENV}, {DLQ_URL_ENV}"


def test_subscription_that_is_not_json_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="DISPATCHER_SUBSCRIPTION: Invalid JSON"):
        load_settings(environ("{name: orders"))


def test_several_bad_fields_are_reported_together() -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ(VALID | {"max_attempts": 0, "max_in_flight": 0}))
    assert "max_attempts" in str(error.value)
    assert "max_in_flight" in str(error.value)


def test_signing_secret_defaults_to_one_per_subscription() -> None:
    fields = {key: value for key, value in VALID.items() if key != "signing_secret"}
    settings = load_settings(environ(fields))
    assert settings.subscription.signing_secret == "callback-dispatcher/orders-to-ledger"
