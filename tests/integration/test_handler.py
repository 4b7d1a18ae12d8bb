"""The function as Lambda runs it, against the loopback endpoint and moto: the entry point
`dispatcher.handler.handler` imported the way Lambda does (configuration from os.environ at import, the EMF
metrics on stdout, the JSON logs, the cold start that reads no secret), and a warm function's invocations
through `process_batch` with the production wiring injected (the batchItemFailures response, the parked-records
queue, the circuit breaker and the signing secret across invocations)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatcher.adapters.dynamodb import DynamoDbDeliveredIds
from dispatcher.adapters.http import AiohttpSender
from dispatcher.adapters.s3 import S3PayloadStore
from dispatcher.adapters.secrets import SecretsManagerSecret
from dispatcher.adapters.sqs import SqsParkedRecords
from dispatcher.config import ConfigurationError, SubscriptionConfig
from dispatcher.delivery import Dispatcher
from dispatcher.guard import AddressPolicy
from dispatcher.records import UnsupportedEventError, parse_event
from dispatcher.signing import SigningSecretError
from tests.events import STREAM, event, kinesis_record, sequence_number
from tests.fakes import OLD_SECRET, SECRET
from tests.integration.conftest import (
    AwsResources,
    FakeLambdaContext,
    FunctionStarter,
    HandlerLoader,
    subscription,
)
from tests.integration.support import (
    LoopbackEndpoint,
    Reply,
    emf_documents,
    emf_metric,
    recorded_logs,
)

pytestmark = pytest.mark.integration


def payload(position: int) -> bytes:
    return json.dumps({"id": f"evt-{position}", "card": f"4111-0000-0000-{position:04d}"}).encode()


def kinesis_batch(positions: range) -> dict[str, Any]:
    return event(*(kinesis_record(position, payload(position), f"pk-{position}") for position in positions))


def test_handler_delivers_parks_and_reports_and_publishes_metrics(
    aws: AwsResources, endpoint: LoopbackEndpoint, load_handler: HandlerLoader, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the function configured from its environment, and an endpoint that takes records 0 and 3,
    # answers 410 for record 1 and 500 for record 2 on every attempt
    endpoint.always("evt-1", 410)
    endpoint.always("evt-2", 500)
    module = load_handler(max_attempts=2)

    # When Lambda invokes it with a 4-record Kinesis batch
    with recorded_logs("dispatcher.outcomes", "dispatcher.parked_message", "callback-dispatcher") as logged:
        response = module.handler(kinesis_batch(range(4)), FakeLambdaContext())

    # Then the response reports exactly the undelivered record
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence_number(2)}]}
    assert endpoint.hits() == {"evt-0": 1, "evt-1": 1, "evt-2": 2, "evt-3": 1}
    (parked,) = aws.parked_messages()
    assert parked["webhook_id"] == "evt-1"
    assert parked["last_status"] == 410
    # and the EMF metrics on stdout count what happened, per subscription
    stdout = capsys.readouterr().out
    assert emf_metric(stdout, "Delivered") == 2
    assert emf_metric(stdout, "Parked") == 1
    assert emf_metric(stdout, "DeliveryFailed") == 1
    assert emf_metric(stdout, "Retried") == 1
    (document,) = emf_documents(stdout)
    assert document["subscription"] == "it-orders"
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CallbackDispatcher"
    # and the JSON log lines name the records, but never carry their payloads or the signing secret
    lines = [json.loads(module.logger.registered_formatter.format(record)) for record in logged]
    by_message = {line["message"]: line for line in lines}
    assert by_message["record parked in the parked-records queue"]["webhook_id"] == "evt-1"
    assert by_message["record not delivered; reported for retry"]["webhook_id"] == "evt-2"
    assert by_message["batch dispatched"]["subscription"] == "it-orders"
    everything_logged = json.dumps(lines)
    assert "4111-0000" not in everything_logged
    assert SECRET.removeprefix("whsec_") not in everything_logged


def test_metrics_of_a_batch_larger_than_one_emf_document_are_all_published(
    aws: AwsResources, endpoint: LoopbackEndpoint, load_handler: HandlerLoader, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the function and a healthy endpoint
    module = load_handler(ordering="none", max_in_flight=32)

    # When a 120-record batch is delivered (more latency values than one EMF metric holds)
    response = module.handler(kinesis_batch(range(120)), FakeLambdaContext())

    # Then every delivery is counted, and every latency published in the invocation's one histogram
    assert response == {"batchItemFailures": []}
    stdout = capsys.readouterr().out
    assert emf_metric(stdout, "Delivered") == 120
    assert emf_metric(stdout, "Status2xx") == 120
    (latencies,) = [document["DeliveryLatency"] for document in emf_documents(stdout) if "DeliveryLatency" in document]
    assert sum(latencies["Counts"]) == 120
    assert len(latencies["Values"]) <= 100
    assert all(document["subscription"] == "it-orders" for document in emf_documents(stdout))


def test_handler_resend_skips_duplicates_and_counts_them(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a first invocation in which record 1 of 0..4 failed every attempt
    endpoint.always("evt-1", 503)
    invoke = warm_function(max_attempts=1)
    first = invoke(kinesis_batch(range(5)), FakeLambdaContext())
    assert first == {"batchItemFailures": [{"itemIdentifier": sequence_number(1)}]}
    capsys.readouterr()

    # When Lambda re-sends records 1..4 to the warm function, the endpoint healthy again
    endpoint.heal()
    second = invoke(kinesis_batch(range(1, 5)), FakeLambdaContext(aws_request_id="second"))

    # Then only record 1 is POSTed again, and the three others are counted as duplicates skipped
    assert second == {"batchItemFailures": []}
    assert endpoint.hits() == {"evt-0": 1, "evt-1": 2, "evt-2": 1, "evt-3": 1, "evt-4": 1}
    stdout = capsys.readouterr().out
    assert emf_metric(stdout, "DuplicatesSkipped") == 3
    assert emf_metric(stdout, "Delivered") == 1
    assert emf_metric(stdout, "Parked") == 0


def test_circuit_breaker_outlives_the_invocation_and_probes_with_one_request(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter
) -> None:
    # Given an endpoint that is down (503 to everything), and one request in flight at a time
    endpoint.default = Reply(503)
    invoke = warm_function(ordering="none", max_in_flight=1, max_attempts=1)

    # When an 8-record batch is dispatched
    first = invoke(kinesis_batch(range(8)), FakeLambdaContext())

    # Then after 5 consecutive failures the breaker opens: the rest are reported without a request
    assert len(first["batchItemFailures"]) == 8
    assert len(endpoint.received) == 5

    # When the warm function is invoked again while the endpoint is still down
    second = invoke(kinesis_batch(range(8)), FakeLambdaContext(aws_request_id="second"))

    # Then a single probe request is sent, and everything is reported
    assert len(second["batchItemFailures"]) == 8
    assert len(endpoint.received) == 6

    # When the endpoint has recovered
    endpoint.default = Reply(200)
    third = invoke(kinesis_batch(range(8)), FakeLambdaContext(aws_request_id="third"))

    # Then the probe succeeds and the whole batch is delivered
    assert third == {"batchItemFailures": []}
    assert len(endpoint.received) == 6 + 8


def test_signing_secret_is_read_lazily_and_cached_across_warm_invocations(
    aws: AwsResources, endpoint: LoopbackEndpoint, load_handler: HandlerLoader
) -> None:
    # Given nothing has reached moto since the resources were created
    aws.requests.clear()

    # When the handler module is imported (a cold start)
    module = load_handler()

    # Then no AWS request was made: the secret, the table and the queue are not touched at import
    assert aws.requests.calls == []

    # When it is invoked twice, the secret rotated in between
    module.handler(kinesis_batch(range(1)), FakeLambdaContext())
    aws.set_secret(f"{OLD_SECRET} {SECRET}")
    aws.requests.clear()
    module.handler(kinesis_batch(range(1, 2)), FakeLambdaContext(aws_request_id="second"))

    # Then the second invocation did not read the secret again, and still signed with the cached value
    assert aws.requests.of("secretsmanager") == []
    first, second = endpoint.received
    for request in (first, second):
        assert len(request.headers["webhook-signature"].split(" ")) == 1
        Webhook(SECRET).verify(request.body, request.headers)


def test_first_invocation_reads_the_secret_once(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter
) -> None:
    # Given a freshly started function
    invoke = warm_function()
    aws.requests.clear()

    # When it is invoked
    invoke(kinesis_batch(range(3)), FakeLambdaContext())

    # Then the secret was read exactly once for the whole batch
    assert aws.requests.of("secretsmanager") == ["GetSecretValue"]
    assert len(endpoint.received) == 3


async def test_rotated_secret_is_picked_up_once_the_cache_expires_and_both_secrets_sign_meanwhile(
    aws: AwsResources, endpoint: LoopbackEndpoint
) -> None:
    # Given the production adapters, wired as build_dispatcher does but with a secret cache that expires
    # at once (build_dispatcher's is 5 minutes), and the old secret in use
    aws.set_secret(OLD_SECRET)
    config = SubscriptionConfig.model_validate(subscription(endpoint.url(), aws.secret_id))
    dispatcher = Dispatcher(
        config,
        sender=AiohttpSender(AddressPolicy(config.allow_private_cidrs), config.max_in_flight),
        delivered_ids=DynamoDbDeliveredIds(aws.table),
        parked_records=SqsParkedRecords(aws.parked_queue_url, S3PayloadStore(aws.payload_bucket)),
        secret=SecretsManagerSecret(aws.secret_id, max_age_seconds=0),
    )
    try:
        before = await dispatcher.dispatch(parse_event(event(kinesis_record(0, payload(0)))), 30)
        # When the rotation adds the new secret first, then retires the old one
        aws.set_secret(f"{SECRET} {OLD_SECRET}")
        during = await dispatcher.dispatch(parse_event(event(kinesis_record(1, payload(1)))), 30)
        aws.set_secret(SECRET)
        after = await dispatcher.dispatch(parse_event(event(kinesis_record(2, payload(2)))), 30)
    finally:
        await dispatcher.sender.close()

    # Then receivers holding either secret verify during the rotation, and only the new one after it
    for report in (before, during, after):
        assert report.response() == {"batchItemFailures": []}
    first, second, third = endpoint.received
    Webhook(OLD_SECRET).verify(first.body, first.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(first.body, first.headers)
    Webhook(OLD_SECRET).verify(second.body, second.headers)
    Webhook(SECRET).verify(second.body, second.headers)
    Webhook(SECRET).verify(third.body, third.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(third.body, third.headers)


def test_handler_passes_the_invocation_deadline_on(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter
) -> None:
    # Given the function invoked with less time left than its 3 s finish reserve plus one attempt
    invoke = warm_function()

    # When it is invoked
    response = invoke(kinesis_batch(range(2)), FakeLambdaContext(remaining_millis=3_100))

    # Then nothing is sent and every record is reported for Lambda to retry
    assert response == {
        "batchItemFailures": [{"itemIdentifier": sequence_number(0)}, {"itemIdentifier": sequence_number(1)}]
    }
    assert endpoint.received == []


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_malformed_signing_secret_fails_the_invocation_without_revealing_the_secret(
    aws: AwsResources,
    endpoint: LoopbackEndpoint,
    warm_function: FunctionStarter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a rotation that left a malformed (too short) second secret beside a valid one
    short = "whsec_" + base64.b64encode(b"too-short-key").decode()
    aws.set_secret(f"{SECRET} {short}")
    invoke = warm_function()

    # When the function is invoked
    with pytest.raises(SigningSecretError) as failure:
        invoke(kinesis_batch(range(1)), FakeLambdaContext())

    # Then nothing went out unsigned or half-signed, and no secret material shows in the error or output
    assert endpoint.received == []
    captured = capsys.readouterr()
    for material in (SECRET.removeprefix("whsec_"), short.removeprefix("whsec_")):
        assert material not in str(failure.value)
        assert material not in captured.out
        assert material not in captured.err


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"allow_http": False}, "allow_http"),
        ({"max_in_flight": 0}, "DISPATCHER_SUBSCRIPTION.max_in_flight"),
        ({"retries": 3}, "DISPATCHER_SUBSCRIPTION.retries: unknown field"),
    ],
)
def test_invalid_configuration_fails_the_cold_start_naming_the_field(
    aws: AwsResources, load_handler: HandlerLoader, overrides: dict[str, Any], named: str
) -> None:
    # Given / When the function is imported with an invalid subscription
    with pytest.raises(ConfigurationError) as failure:
        load_handler(**overrides)

    # Then the cold start fails with a message naming the field
    assert named in str(failure.value)


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_event_that_is_neither_kinesis_nor_sqs_raises_a_clear_error(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter
) -> None:
    # Given the function
    invoke = warm_function()

    # When it is invoked with an SNS event
    sns = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "hello"}}]}

    # Then it raises a clear error and sends nothing
    with pytest.raises(UnsupportedEventError, match="unsupported eventSource"):
        invoke(sns, FakeLambdaContext())
    assert endpoint.received == []


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_empty_kinesis_record_is_delivered_and_does_not_crash_the_batch(
    aws: AwsResources, endpoint: LoopbackEndpoint, warm_function: FunctionStarter
) -> None:
    # Given a Kinesis batch holding an empty record (PutRecord accepts a zero-length data blob)
    invoke = warm_function()
    batch = event(kinesis_record(0, payload(0)), kinesis_record(1, b""), kinesis_record(2, payload(2)))

    # When Lambda invokes the function
    response = invoke(batch, FakeLambdaContext())

    # Then nothing is reported, and the empty record arrived as an empty, signed octet-stream body
    assert response == {"batchItemFailures": []}
    (empty,) = endpoint.for_id(f"{STREAM}:{sequence_number(1)}")
    assert empty.body == b""
    assert empty.headers["content-type"] == "application/octet-stream"
    Webhook(SECRET).verify(empty.body, empty.headers, json_parse=False)
    assert endpoint.hits()["evt-0"] == endpoint.hits()["evt-2"] == 1
