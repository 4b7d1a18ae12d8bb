"""Each validation rule, shown failing with the exact message a service team reads.

Every message names the file, the subscription (or source) and the field, then the reason and what
would be accepted.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.registry import RegistryError, load_registry
from tests.hostile_spellings import fullwidth, ideographic
from tests.registry.builders import (
    Document,
    fifo_subscription,
    problems_in,
    queue_subscription,
    stream_subscription,
    team,
)
from tests.registry.conftest import RegistryWriter

AT = "registry/teams/payments.yaml: subscription 'hook': "

SINGLE_SUBSCRIPTION_CASES: list[tuple[str, Document, str]] = [
    (
        "unknown source",
        stream_subscription(source="stream/payments"),
        AT + "source: 'stream/payments' is not declared in registry/sources.yaml; "
        "allowed: stream/orders, queue/billing-callbacks, queue/refunds.fifo",
    ),
    (
        "malformed source reference",
        stream_subscription(source="kinesis/orders"),
        AT + "source: 'kinesis/orders' has the wrong form; "
        r"allowed: match ^(stream/[a-z0-9][a-z0-9-]{0,47}|queue/[a-z0-9][a-z0-9-]{0,47}(\.fifo)?)$",
    ),
    (
        "plain http without allow_http",
        stream_subscription(endpoint="http://hooks.example.com/orders"),
        AT + "endpoint: http:// needs allow_http: true (https is required otherwise)",
    ),
    (
        "not an http url",
        stream_subscription(endpoint="ftp://hooks.example.com/orders"),
        AT + "endpoint: URL must be http(s), got scheme 'ftp'",
    ),
    (
        "literal private address",
        stream_subscription(endpoint="https://10.20.0.5/hook"),
        AT + "endpoint: 10.20.0.5 is a private address and not in allow_private_cidrs; "
        "allowed: a public address or DNS name, or a private one inside allow_private_cidrs",
    ),
    (
        "private address outside the allowed range",
        stream_subscription(endpoint="https://10.20.0.5/hook", allow_private_cidrs=["10.30.0.0/16"]),
        AT + "endpoint: 10.20.0.5 is a private address and not in allow_private_cidrs; "
        "allowed: a public address or DNS name, or a private one inside allow_private_cidrs",
    ),
    (
        "loopback address",
        stream_subscription(endpoint="https://127.0.0.1:8443/hook"),
        AT + "endpoint: 127.0.0.1 is a loopback address and not in allow_private_cidrs; "
        "allowed: a public address or DNS name, or a private one inside allow_private_cidrs",
    ),
    (
        "loopback name",
        stream_subscription(endpoint="https://localhost/hook"),
        AT + "endpoint: 'localhost' resolves to 127.0.0.1 is a loopback address and not in allow_private_cidrs; "
        "allowed: a public address or DNS name, or a private one inside allow_private_cidrs",
    ),
    (
        "loopback hidden in an IPv4-mapped IPv6 address",
        stream_subscription(endpoint="https://[::ffff:127.0.0.1]/hook"),
        AT + "endpoint: ::ffff:7f00:1 (127.0.0.1) is a loopback address and not in allow_private_cidrs; "
        "allowed: a public address or DNS name, or a private one inside allow_private_cidrs",
    ),
    (
        "link-local address",
        stream_subscription(endpoint="https://169.254.10.1/hook"),
        AT + "endpoint: 169.254.10.1 is a link-local address and not in allow_private_cidrs; "
        "allowed: a public address or DNS name, or a private one inside allow_private_cidrs",
    ),
    (
        "metadata address, even when its range is allowed",
        stream_subscription(
            endpoint="http://169.254.169.254/latest", allow_http=True, allow_private_cidrs=["169.254.0.0/16"]
        ),
        AT + "endpoint: 169.254.169.254 is a cloud metadata address (always refused); "
        "allowed: a public address or DNS name, or a private one inside allow_private_cidrs",
    ),
    (
        "IPv6 metadata address",
        stream_subscription(endpoint="https://[fd00:ec2::254]/latest"),
        AT + "endpoint: fd00:ec2::254 is a cloud metadata address (always refused); "
        "allowed: a public address or DNS name, or a private one inside allow_private_cidrs",
    ),
    (
        "loopback spelled in fullwidth digits, even with loopback allowed",
        stream_subscription(
            endpoint=f"https://{fullwidth('127.0.0.1')}:9001/hook", allow_private_cidrs=["127.0.0.0/8"]
        ),
        AT + f"endpoint: host '{fullwidth('127.0.0.1')}' is written with non-ASCII characters that normalise to "
        "the address 127.0.0.1",
    ),
    (
        "metadata address spelled with ideographic full stops",
        stream_subscription(endpoint=f"https://{ideographic('169.254.169.254')}/latest"),
        AT + f"endpoint: host '{ideographic('169.254.169.254')}' is written with non-ASCII characters that "
        "normalise to the address 169.254.169.254",
    ),
    (
        "IPv6 zone id",
        stream_subscription(endpoint="https://[fd00:ec2::254%251]/latest", allow_private_cidrs=["fd00::/8"]),
        AT + "endpoint: host [fd00:ec2::254%251] carries an IPv6 zone id; zone ids are refused",
    ),
    (
        "IPv4 written as one integer",
        stream_subscription(endpoint="https://2130706433/hook", allow_private_cidrs=["127.0.0.0/8"]),
        AT + "endpoint: host '2130706433' is an IPv4 address in a form other than four decimal octets "
        "(integer, octal, hex, short and trailing-dot forms are read differently by different parsers)",
    ),
    (
        "user info in the endpoint, not quoted",
        stream_subscription(endpoint="https://ledger:hunter2@hooks.example.com/orders?token=sekrit"),
        AT + "endpoint: URL carries user info (user:password@host); credentials do not belong in the URL",
    ),
    (
        "a pasted signing secret, not quoted",
        stream_subscription(signing_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        AT + "signing_secret: looks like a secret value, not a secret's name: "
        "store the signing secret in Secrets Manager and reference it here by name or ARN",
    ),
    (
        "Kinesis batch size above 10000",
        stream_subscription(batch_size=10_001),
        AT + "batch_size: 10001 is out of range; allowed: 1 to 10000",
    ),
    (
        "batch size below 1",
        queue_subscription(batch_size=0),
        AT + "batch_size: 0 is out of range; allowed: 1 to 10000",
    ),
    (
        "SQS batch above 10 without a batching window",
        queue_subscription(batch_size=50, max_in_flight=10),
        AT + "batching_window_seconds: 0 is too short for batch_size 50: SQS batches above 10 need a "
        "batching window; allowed: 1 to 300",
    ),
    (
        "batching window above 300 s",
        stream_subscription(batching_window_seconds=301),
        AT + "batching_window_seconds: 301 is out of range; allowed: 0 to 300",
    ),
    (
        "FIFO batch above 10",
        fifo_subscription(batch_size=20, max_in_flight=10),
        AT + "batch_size: 20 is too large for a FIFO queue; allowed: 1 to 10",
    ),
    (
        "FIFO batching window",
        fifo_subscription(batching_window_seconds=5, max_in_flight=10),
        AT + "batching_window_seconds: 5 is set but FIFO queues do not support a batching window; allowed: 0",
    ),
    (
        "parallelization factor above 10",
        stream_subscription(parallelization_factor=11),
        AT + "parallelization_factor: 11 is out of range; allowed: 1 to 10",
    ),
    (
        "stream-only setting on a queue",
        queue_subscription(parallelization_factor=2),
        AT + "parallelization_factor: applies to stream sources only; allowed: omit it for a queue",
    ),
    (
        "maximum record age between -1 and 60 s",
        stream_subscription(max_record_age_seconds=30),
        AT + "max_record_age_seconds: 30 is out of range; allowed: -1 (until the record expires) or 60 to 604800",
    ),
    (
        "maximum record age above 7 days",
        stream_subscription(max_record_age_seconds=604_801),
        AT + "max_record_age_seconds: 604801 is out of range; allowed: -1 (until the record expires) or 60 to 604800",
    ),
    (
        "SQS maximum concurrency below 2",
        queue_subscription(reserved_concurrency=1),
        AT + "reserved_concurrency: 1 is below the SQS mapping's minimum maximum concurrency; "
        "allowed: 2 to 1000 for a queue",
    ),
    (
        "max_in_flight above 1000",
        stream_subscription(max_in_flight=1001, batch_size=2000),
        AT + "max_in_flight: 1001 is out of range; allowed: 1 to 1000",
    ),
    (
        "max_in_flight below 1",
        stream_subscription(max_in_flight=0),
        AT + "max_in_flight: 0 is out of range; allowed: 1 to 1000",
    ),
    (
        "max_in_flight above the batch size",
        stream_subscription(max_in_flight=32, batch_size=20),
        AT + "max_in_flight: 32 is above batch_size 20; the extra request slots could never be used; allowed: 1 to 20",
    ),
    (
        "max_attempts above 20",
        stream_subscription(max_attempts=21),
        AT + "max_attempts: 21 is out of range; allowed: 1 to 20",
    ),
    (
        "max_attempts below 1",
        stream_subscription(max_attempts=0),
        AT + "max_attempts: 0 is out of range; allowed: 1 to 20",
    ),
    (
        "request timeout below 0.1 s",
        stream_subscription(request_timeout_seconds=0.05),
        AT + "request_timeout_seconds: 0.05 is out of range; allowed: 0.1 to 60",
    ),
    (
        "request timeout above 60 s",
        stream_subscription(request_timeout_seconds=61),
        AT + "request_timeout_seconds: 61 is out of range; allowed: 0.1 to 60",
    ),
    (
        "ordering none on a FIFO queue",
        fifo_subscription(ordering="none", max_in_flight=10),
        AT + "ordering: 'none' contradicts the FIFO queue's per-message-group order; "
        "allowed: 'partition-key' (ordered per message group)",
    ),
    (
        "explicit function timeout shorter than a batch needs",
        stream_subscription(
            batch_size=100, max_in_flight=10, max_attempts=2, request_timeout_seconds=5, timeout_seconds=60
        ),
        AT + "timeout_seconds: 60 is shorter than the 103 s a batch needs (a worst-case batch takes "
        "ceil(batch_size / max_in_flight) x max_attempts x request_timeout_seconds = 100 s, plus 3 s to park "
        "what failed); allowed: 103 to 900, or omit it to derive it",
    ),
    (
        "rate limit making a batch slower than the timeout",
        stream_subscription(
            batch_size=100, max_in_flight=100, max_attempts=2, rate_limit_per_second=1, timeout_seconds=60
        ),
        AT + "timeout_seconds: 60 is shorter than the 203 s a batch needs (a worst-case batch takes "
        "batch_size x max_attempts / rate_limit_per_second = 200 s, plus 3 s to park what failed); "
        "allowed: 203 to 900, or omit it to derive it",
    ),
    (
        "batch that no Lambda timeout can fit",
        stream_subscription(batch_size=1000, max_in_flight=10, max_attempts=5, request_timeout_seconds=10),
        AT + "batch_size: 1000 needs a 5003 s function timeout (a worst-case batch takes "
        "ceil(batch_size / max_in_flight) x max_attempts x request_timeout_seconds = 5000 s, plus 3 s to park "
        "what failed), beyond Lambda's 900 s maximum; allowed: a smaller batch_size, max_attempts or "
        "request_timeout_seconds, or a larger max_in_flight",
    ),
    (
        "unknown field",
        stream_subscription(batchsize=10),
        AT + "batchsize: unknown field; allowed: name, endpoint, ordering, max_in_flight, request_timeout_seconds, "
        "max_attempts, rate_limit_per_second, signing_secret, allow_private_cidrs, allow_http, "
        "retry_schedule_seconds, source, event_types, batch_size, batching_window_seconds, reserved_concurrency, "
        "parallelization_factor, max_record_age_seconds, max_retry_attempts, timeout_seconds, "
        "alarm_iterator_age_seconds, alarm_retry_age_seconds",
    ),
    (
        "invalid ordering",
        stream_subscription(ordering="strict"),
        AT + "ordering: 'strict' is not an option; allowed: 'partition-key' or 'none'",
    ),
]


@pytest.mark.parametrize(
    ("subscription", "expected"),
    [pytest.param(subscription, expected, id=case) for case, subscription, expected in SINGLE_SUBSCRIPTION_CASES],
)
def test_a_wrong_setting_is_reported_with_file_subscription_field_reason_and_range(
    write_registry: RegistryWriter, subscription: Document, expected: str
) -> None:
    # Given a registry whose only subscription breaks one rule
    root = write_registry(team("payments", subscription))

    # When it is validated
    problems = problems_in(root)

    # Then exactly that rule is reported, in words the team can act on
    assert problems == [expected]


@pytest.mark.parametrize(
    "endpoint", ["http://localhost:8080/hook", "http://127.0.0.1:8080/hook", "http://10.20.0.5/hook"]
)
def test_a_private_endpoint_inside_allow_private_cidrs_is_accepted(
    write_registry: RegistryWriter, endpoint: str
) -> None:
    # Given an internal endpoint whose range the team allowed explicitly (the function's SSRF policy agrees)
    subscription = stream_subscription(
        endpoint=endpoint, allow_http=True, allow_private_cidrs=["127.0.0.0/8", "10.20.0.0/16"]
    )
    root = write_registry(team("payments", subscription))

    # When it is loaded
    loaded = load_registry(root, "dev")

    # Then it is valid
    assert [registered.endpoint for _, registered in loaded.registry.registrations()] == [endpoint]


def test_a_subscription_name_used_twice_across_teams_is_reported_where_it_repeats(
    write_registry: RegistryWriter,
) -> None:
    # Given two teams that both register "hook"
    root = write_registry(team("fulfilment", stream_subscription()), team("payments", stream_subscription()))

    # When the registry is validated
    problems = problems_in(root)

    # Then the second occurrence is reported, naming the file of the first
    assert problems == [
        AT + "name: is already used by a subscription in registry/teams/fulfilment.yaml; "
        "allowed: names unique across all teams"
    ]


def test_a_second_subscription_on_a_queue_is_reported(write_registry: RegistryWriter) -> None:
    # Given two subscriptions reading the same queue (SQS hands each message to one reader)
    root = write_registry(team("payments", queue_subscription(name="first-reader"), queue_subscription(name="hook")))

    # When the registry is validated
    problems = problems_in(root)

    # Then the second reader is reported
    assert problems == [
        AT + "source: queue/billing-callbacks is already read by subscription 'first-reader'; a queue delivers "
        "each message to one reader only; allowed: one subscription per queue (declare another queue, or use a "
        "stream for fan-out)"
    ]


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        pytest.param(
            {"streams": [{"name": "orders"}, {"name": "orders"}]},
            ["registry/sources.yaml: stream 'orders': name: is declared 2 times; allowed: unique names"],
            id="duplicate stream",
        ),
        pytest.param(
            {"streams": [{"name": "orders", "mode": "provisioned"}]},
            ["registry/sources.yaml: stream 'orders': shards: is required in provisioned mode; allowed: 1 to 500"],
            id="provisioned stream without shards",
        ),
        pytest.param(
            {"streams": [{"name": "orders", "shards": 4}]},
            [
                "registry/sources.yaml: stream 'orders': shards: is set but on-demand streams scale their own "
                "shards; allowed: omit it"
            ],
            id="on-demand stream with shards",
        ),
        pytest.param(
            {"streams": [{"name": "orders", "retention_hours": 12}]},
            ["registry/sources.yaml: stream 'orders': retention_hours: 12 is out of range; allowed: 24 to 8760"],
            id="stream retention below 24 h",
        ),
        pytest.param(
            {"streams": [{"name": "orders"}], "queues": [{"name": "refunds.fifo", "fifo": False}]},
            ["registry/sources.yaml: queue 'refunds.fifo': fifo: is false but the name ends in .fifo; allowed: true"],
            id="fifo name on a standard queue",
        ),
        pytest.param(
            {"streams": [{"name": "orders"}], "queues": [{"name": "billing", "max_receive_count": 2}]},
            ["registry/sources.yaml: queue 'billing': max_receive_count: 2 is out of range; allowed: 5 to 1000"],
            id="max receive count below 5",
        ),
        pytest.param(
            {"streams": [{"name": "orders"}], "topics": []},
            [
                "registry/sources.yaml: topics: unknown field; allowed: streams, queues",
            ],
            id="unknown source kind",
        ),
    ],
)
def test_a_wrong_source_declaration_is_reported(
    write_registry: RegistryWriter, sources: dict[str, Any], expected: list[str]
) -> None:
    # Given sources.yaml with one wrong declaration and a team reading a valid stream
    root = write_registry(team("payments", stream_subscription()), sources=sources)

    # When the registry is validated
    problems = problems_in(root)

    # Then the declaration is reported with the source it belongs to
    assert problems == expected


def test_a_team_file_must_be_named_after_its_team(write_registry: RegistryWriter) -> None:
    # Given teams/payments.yaml that declares another team
    root = write_registry(raw_files={"teams/payments.yaml": "team: billing\nalerts_email: b@example.com\n"})

    # When the registry is validated
    problems = problems_in(root)

    # Then the mismatch is reported (CODEOWNERS relies on one file per team)
    assert problems == [
        "registry/teams/payments.yaml: team: 'billing' differs from the file name; "
        "allowed: 'payments' (teams/<team>.yaml)"
    ]


def test_a_file_that_is_not_yaml_is_reported_and_the_others_still_checked(write_registry: RegistryWriter) -> None:
    # Given a broken team file next to a team file with a wrong setting
    root = write_registry(
        team("payments", stream_subscription(max_attempts=30)),
        raw_files={"teams/fulfilment.yaml": "team: fulfilment\nsubscriptions: [\n"},
    )

    # When the registry is validated
    problems = problems_in(root)

    # Then both files' problems are reported
    assert len(problems) == 2
    assert problems[0].startswith("registry/teams/fulfilment.yaml: file: is not valid YAML: ")
    assert problems[1] == AT + "max_attempts: 30 is out of range; allowed: 1 to 20"


def test_every_problem_in_every_file_is_reported_at_once(write_registry: RegistryWriter) -> None:
    # Given several mistakes spread over two team files and the sources
    root = write_registry(
        team("fulfilment", stream_subscription(name="warehouse", source="stream/shipments")),
        team(
            "payments",
            stream_subscription(max_attempts=0, parallelization_factor=20),
            {"source": "stream/orders", "endpoint": "https://ledger.example.com"},
        ),
        sources={"streams": [{"name": "orders", "mode": "provisioned"}]},
    )

    # When the registry is validated
    problems = problems_in(root)

    # Then each mistake is listed, not just the first
    assert problems == [
        "registry/sources.yaml: stream 'orders': shards: is required in provisioned mode; allowed: 1 to 500",
        AT + "max_attempts: 0 is out of range; allowed: 1 to 20",
        AT + "parallelization_factor: 20 is out of range; allowed: 1 to 10",
        "registry/teams/payments.yaml: subscriptions[1]: name: is required",
        "registry/teams/fulfilment.yaml: subscription 'warehouse': source: 'stream/shipments' is not declared in "
        "registry/sources.yaml; allowed: stream/orders",
    ]


def test_registry_errors_never_quote_credentials_query_strings_or_secrets(write_registry: RegistryWriter) -> None:
    # Given credentials, a query token and a secret value in wrong fields, and in a file that is not YAML
    root = write_registry(
        team(
            "payments",
            stream_subscription(endpoint="http://ledger:hunter2@hooks.example.com/orders?token=sekrit"),
            stream_subscription(name="plain", endpoint="http://hooks.example.com/orders?token=sekrit"),  # no allow_http
            stream_subscription(name="pasted", signing_secret="whsec_hunter2sekrit+AAAAAAAAAAAAAAAAAAAA=="),
            stream_subscription(name="spaced", signing_secret="hunter2 sekrit"),
        ),
        raw_files={
            "teams/fulfilment.yaml": "team: fulfilment\nendpoint: https://u:hunter2@x.example.com/?token=sekrit: [\n"
        },
    )

    # When the registry is validated
    with pytest.raises(RegistryError) as raised:
        load_registry(root, "prod")

    # Then every problem is reported, naming its field, and none quotes the secrets
    report = str(raised.value)
    assert [problem.field for problem in raised.value.problems] == [
        "file",
        "endpoint",
        "endpoint",
        "signing_secret",
        "signing_secret",
    ]
    for field in ("file", "endpoint", "signing_secret"):
        assert f": {field}: " in report
    assert "hunter2" not in report
    assert "sekrit" not in report
