from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dispatcher.config import (
    DLQ_URL_ENV,
    IDEMPOTENCY_TABLE_ENV,
    PAYLOAD_BUCKET_ENV,
    RETRY_LANE_URL_ENV,
    SUBSCRIPTION_ENV,
    ConfigurationError,
    load_settings,
)
from tests.hostile_spellings import fullwidth, ideographic

VALID: dict[str, Any] = {
    "name": "orders-to-ledger",
    "endpoint": "https://ledger.example.com/hooks",
    "signing_secret": "payments/ledger-hook",
}


LANE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-to-ledger-retry-lane.fifo"


def environ(subscription: Any) -> dict[str, str]:
    text = subscription if isinstance(subscription, str) else json.dumps(subscription)
    return {
        SUBSCRIPTION_ENV: text,
        IDEMPOTENCY_TABLE_ENV: "delivered-ids",
        DLQ_URL_ENV: "https://sqs/parked",
        PAYLOAD_BUCKET_ENV: "parked-payloads",
        RETRY_LANE_URL_ENV: LANE_URL,
    }


def test_valid_subscription_gets_documented_defaults() -> None:
    # Given only the required fields
    # When the function parses its environment
    settings = load_settings(environ(VALID))
    # Then every other field has its documented default
    config = settings.subscription
    assert (config.ordering, config.max_in_flight, config.max_attempts) == ("partition-key", 16, 5)
    assert (config.request_timeout_seconds, config.rate_limit_per_second) == (10.0, None)
    assert (config.allow_private_cidrs, config.allow_http) == ((), False)
    assert (settings.delivered_ids_table, settings.parked_queue_url) == ("delivered-ids", "https://sqs/parked")
    assert settings.payload_bucket == "parked-payloads"
    assert config.retry_schedule_seconds == (300, 1800, 7200, 18000, 36000, 36000)
    assert settings.retry_lane_url == LANE_URL


def test_a_retry_schedule_needs_its_lane_and_an_empty_one_has_none() -> None:
    # Given the default retry schedule but no lane in the environment
    without_lane = environ(VALID)
    del without_lane[RETRY_LANE_URL_ENV]
    # Then the cold start fails naming the variable and why it is needed
    with pytest.raises(ConfigurationError, match=f"missing environment variable {RETRY_LANE_URL_ENV}"):
        load_settings(without_lane)
    # And with the schedule [] there is no lane, even if the variable is set
    assert load_settings(environ(VALID | {"retry_schedule_seconds": []})).retry_lane_url is None


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
        (
            {"endpoint": "ftp://ledger.example.com"},
            "DISPATCHER_SUBSCRIPTION.endpoint: Value error, URL must be http(s)",
        ),
        (
            {"endpoint": "https://user:pw@ledger.example.com"},
            "DISPATCHER_SUBSCRIPTION.endpoint: Value error, URL carries user info",
        ),
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
    assert str(error.value) == (
        f"missing environment variable(s): {IDEMPOTENCY_TABLE_ENV}, {DLQ_URL_ENV}, {PAYLOAD_BUCKET_ENV}"
    )


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


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        (f"http://{fullwidth('127.0.0.1')}:9001/x", "normalise to the address 127.0.0.1"),
        (f"http://{ideographic('169.254.169.254')}/", "normalise to the address 169.254.169.254"),
        ("http://[fd00:ec2::254%251]/", "carries an IPv6 zone id"),
        ("http://2130706433/", "host '2130706433' is an IPv4 address in a form other than four decimal octets"),
        ("http://127.1/", "host '127.1' is an IPv4 address in a form other than four decimal octets"),
        ("https://ledger.example.com/#top", "URL must not have a #fragment"),
    ],
)
def test_an_endpoint_the_guard_would_refuse_fails_cold_start_naming_the_form(endpoint: str, reason: str) -> None:
    # Given an endpoint in a form the SSRF guard refuses, with its plain-http and private ranges allowed
    fields = VALID | {"endpoint": endpoint, "allow_http": True, "allow_private_cidrs": ["0.0.0.0/0", "::/0"]}

    # When the function parses it
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ(fields))

    # Then the error names the field and the form
    assert f"{SUBSCRIPTION_ENV}.endpoint: Value error, " in str(error.value)
    assert reason in str(error.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"endpoint": "https://user:hunter2@ledger.example.com/hooks?token=sekrit"},
        {"endpoint": "http://ledger.example.com/hooks?token=sekrit"},  # model-level check: http without allow_http
        {"endpoint": "https://ledger.example.com/hooks?token=sekrit#x", "max_attempts": 0},
        {"endpoint": "https://user:hunter2@\u2100.example/hooks?token=sekrit"},  # the parser's own message quotes it
        {"signing_secret": "whsec_hunter2+sekrit/AAAAAAAAAAAAAAAAAAAAAA=="},
        {"signing_secret": "hunter2 sekrit"},
    ],
)
def test_configuration_errors_never_quote_credentials_query_strings_or_secrets(fields: dict[str, Any]) -> None:
    # Given a subscription whose wrong fields carry a password, a query token or a secret value
    # When the function parses it
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ(VALID | fields))

    # Then the error names the field but quotes none of them
    message = str(error.value)
    assert next(iter(fields)) in message
    assert "hunter2" not in message
    assert "sekrit" not in message


def test_a_document_that_is_not_json_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ('{"endpoint": "https://user:hunter2@ledger.example.com/", '))
    assert "Invalid JSON" in str(error.value)
    assert "hunter2" not in str(error.value)


SECRET_BYTES = bytes(range(7, 7 + 32))


@pytest.mark.parametrize(
    "pasted",
    [
        "whsec_" + base64.b64encode(SECRET_BYTES).decode(),
        "WHSEC_" + base64.b64encode(SECRET_BYTES).decode(),
        base64.b64encode(SECRET_BYTES).decode(),
        base64.urlsafe_b64encode(SECRET_BYTES[:24]).decode(),
    ],
)
def test_a_pasted_signing_secret_is_refused_saying_where_it_belongs(pasted: str) -> None:
    # Given a secret value where the secret's name belongs
    # When the function parses it
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ(VALID | {"signing_secret": pasted}))

    # Then it is refused, says where the secret goes, and does not repeat it
    assert str(error.value) == (
        f"{SUBSCRIPTION_ENV}.signing_secret: Value error, looks like a secret value, not a secret's name: "
        "store the signing secret in Secrets Manager and reference it here by name or ARN"
    )


@pytest.mark.parametrize(
    "reference",
    [
        "payments/ledger-hook",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:payments/ledger-hook-AbC123",
        "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:ledger-Xy12Zq",
        "TeamAlpha/ServiceBeta/WebhookSigningKey01",  # mixed case and digits, but not base64
        "payments/ledger/hook/signing/secret/v1",  # decodes as base64, but has no capitals
    ],
)
def test_secret_names_and_arns_are_accepted(reference: str) -> None:
    settings = load_settings(environ(VALID | {"signing_secret": reference}))
    assert settings.subscription.signing_secret == reference


def test_a_signing_secret_that_is_neither_a_name_nor_an_arn_is_refused() -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ(VALID | {"signing_secret": "payments ledger hook"}))
    assert str(error.value) == (
        f"{SUBSCRIPTION_ENV}.signing_secret: Value error, is neither a Secrets Manager secret name "
        "(up to 512 of A-Z a-z 0-9 /_+=.@-) nor its ARN: store the signing secret in Secrets Manager and "
        "reference it here by name or ARN"
    )


SECRET_TOKENS = st.text(st.sampled_from(string.ascii_letters + string.digits), min_size=12, max_size=24)
BAD_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "max_attempts": st.just(0),
        "allow_private_cidrs": st.just(["10.0.0.1/8"]),
        "colour": st.just("blue"),
    },
)


@pytest.mark.adversarial
@given(
    token=SECRET_TOKENS,
    host=st.sampled_from(
        ["ledger.example.com", "127.1", "[fd00:ec2::254%251]", fullwidth("127.0.0.1"), "[]", "\u2100"]
    ),
    where=st.sampled_from(["password", "query", "secret", "user"]),
    bad_fields=BAD_FIELDS,
)
def test_no_configuration_error_quotes_a_credential(
    token: str, host: str, where: str, bad_fields: dict[str, Any]
) -> None:
    # Given a subscription carrying a credential (in the endpoint's user info or query, or pasted as the
    # signing secret) next to any mix of other mistakes. A token that the error's own wording contains
    # whatever the credential (Hypothesis draws words like "SUBSCRIPTION" from the source) cannot tell
    # quoting from wording, so it is measured against the error for a credential of another spelling.
    assume(token not in configuration_error(CREDENTIAL_STAND_IN, host, where, bad_fields))

    # When the function parses it (http:// without allow_http: wrong at least for that)
    message = configuration_error(token, host, where, bad_fields)

    # Then whatever is wrong, the error does not quote the credential
    assert token not in message


CREDENTIAL_STAND_IN = "Zx7Qw3Rt9Yp2"


def configuration_error(token: str, host: str, where: str, bad_fields: dict[str, Any]) -> str:
    endpoint = {
        "password": f"http://ledger:{token}@{host}/hooks",
        "user": f"http://{token}@{host}/hooks",
        "query": f"http://{host}/hooks?token={token}",
        "secret": f"http://{host}/hooks",
    }[where]
    signing_secret = f"whsec_{token}" if where == "secret" else VALID["signing_secret"]
    fields = VALID | {"endpoint": endpoint, "signing_secret": signing_secret} | bad_fields
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ(fields))
    return str(error.value)
