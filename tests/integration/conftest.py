"""Fixtures for the integration tests: moto as a real HTTP server on 127.0.0.1 (DynamoDB, SQS, Secrets
Manager, S3), a scripted endpoint on 127.0.0.1, and the production wiring of the function built from them."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib
import json
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities import parameters
from moto.server import ThreadedMotoServer

import dispatcher
from dispatcher.config import (
    DLQ_URL_ENV,
    IDEMPOTENCY_TABLE_ENV,
    PAYLOAD_BUCKET_ENV,
    RETRY_LANE_URL_ENV,
    SUBSCRIPTION_ENV,
    FunctionSettings,
    SubscriptionConfig,
)
from dispatcher.delivery import Dispatcher
from tests.events import REGION
from tests.fake_aws import use_fake_aws
from tests.fakes import SECRET
from tests.integration.support import LOOPBACK, AwsRequestLog, LoopbackEndpoint

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

Subscription = dict[str, Any]


# -- network: nothing but 127.0.0.1 ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and flag) any TCP connection to an address other than 127.0.0.1, whoever opens it:
    a safety net under the SSRF tests, and a guarantee that no test talks to real AWS."""
    violations: list[str] = []
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and ip_address(address[0]) != ip_address(LOOPBACK):
            violations.append(str(address[0]))
            raise ConnectionRefusedError(f"integration tests may only connect to {LOOPBACK}, not {address[0]}")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        original_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return original_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield violations
    assert not violations, f"connections attempted outside {LOOPBACK}: {violations}"


# -- moto -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    requests: AwsRequestLog


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    # Count the requests that reach moto: wrap the WSGI app the running werkzeug server dispatches to
    # (it reads `server.app` per request). ThreadedMotoServer keeps that server in `_server`.
    wsgi_server = server._server
    assert wsgi_server is not None
    requests = AwsRequestLog(wsgi_server.app)
    wsgi_server.app = requests
    host, port = server.get_host_and_port()
    yield MotoServer(f"http://{host}:{port}", requests)
    server.stop()


@dataclass
class AwsResources:
    """The function's AWS resources, created in moto for one test."""

    table: str
    parked_queue_url: str
    payload_bucket: str
    secret_id: str
    dynamodb: DynamoDBClient
    sqs: SQSClient
    s3: Any  # boto3 S3 client (no type stubs installed for it)
    secrets: SecretsManagerClient
    requests: AwsRequestLog

    def set_secret(self, secret_string: str) -> None:
        self.secrets.put_secret_value(SecretId=self.secret_id, SecretString=secret_string)

    def parked_messages(self) -> list[dict[str, Any]]:
        """Every message in the parked-records queue (received and deleted)."""
        documents: list[dict[str, Any]] = []
        while True:
            response = self.sqs.receive_message(
                QueueUrl=self.parked_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            if not messages:
                return documents
            for message in messages:
                documents.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.parked_queue_url, ReceiptHandle=message["ReceiptHandle"])

    def stored_payloads(self) -> dict[str, bytes]:
        """Every object in the payload bucket, by key."""
        listing = self.s3.list_objects_v2(Bucket=self.payload_bucket).get("Contents", [])
        return {
            item["Key"]: self.s3.get_object(Bucket=self.payload_bucket, Key=item["Key"])["Body"].read()
            for item in listing
        }

    def table_items(self) -> list[dict[str, Any]]:
        return list(self.dynamodb.scan(TableName=self.table, ConsistentRead=True)["Items"])


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[AwsResources]:
    """Fake credentials, AWS_ENDPOINT_URL at moto, and a fresh table, parked-records queue,
    parked-payload bucket and secret for this test."""
    use_fake_aws(monkeypatch, tmp_path, REGION, moto_server.endpoint_url)
    # The adapters build clients from boto3's default session and Powertools' default providers:
    # start both afresh so they read this test's environment.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    parameters.clear_caches()  # type: ignore[no-untyped-call]

    suffix = uuid.uuid4().hex[:12]
    session = boto3.session.Session()
    dynamodb: DynamoDBClient = session.client("dynamodb")
    sqs: SQSClient = session.client("sqs")
    secrets: SecretsManagerClient = session.client("secretsmanager")
    s3 = session.client("s3")
    table = f"delivered-ids-{suffix}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    parked_queue_url = sqs.create_queue(QueueName=f"dispatcher-parked-{suffix}")["QueueUrl"]
    payload_bucket = f"parked-payloads-{suffix}"
    s3.create_bucket(Bucket=payload_bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    secret_id = secrets.create_secret(Name=f"dispatcher/signing-{suffix}", SecretString=SECRET)["ARN"]
    moto_server.requests.clear()
    yield AwsResources(
        table, parked_queue_url, payload_bucket, secret_id, dynamodb, sqs, s3, secrets, moto_server.requests
    )
    parameters.clear_caches()  # type: ignore[no-untyped-call]


# -- the endpoint ---------------------------------------------------------------------------------------


@pytest.fixture
def endpoint() -> Iterator[LoopbackEndpoint]:
    server = LoopbackEndpoint().start()
    yield server
    server.stop()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connecting to it is refused, and no other
    test can start listening on it meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    yield sock.getsockname()[1]
    sock.close()


def subscription(endpoint_url: str, secret_id: str, **overrides: Any) -> Subscription:
    """A subscription a loopback endpoint can be reached under (the SSRF guard refuses it otherwise)."""
    document: Subscription = {
        "name": "it-orders",
        "endpoint": endpoint_url,
        "ordering": "partition-key",
        "max_in_flight": 8,
        "request_timeout_seconds": 2.0,
        "max_attempts": 3,
        "rate_limit_per_second": None,
        "signing_secret": secret_id,
        "allow_private_cidrs": ["127.0.0.0/8"],
        "allow_http": True,
        "retry_schedule_seconds": [],  # no retry lane unless a test gives one (with its queue)
    }
    return document | overrides


# -- the function ---------------------------------------------------------------------------------------


@dataclass
class FakeLambdaContext:
    """What Powertools and the handler read from the Lambda context."""

    remaining_millis: int = 30_000
    function_name: str = "callback-dispatcher-it"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:callback-dispatcher-it"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


def function_settings(aws: AwsResources, endpoint: LoopbackEndpoint, /, **overrides: Any) -> FunctionSettings:
    """The function's settings for this test's resources and a subscription with the given fields."""
    config = SubscriptionConfig.model_validate(subscription(endpoint.url(), aws.secret_id, **overrides))
    return FunctionSettings(config, aws.table, aws.parked_queue_url, aws.payload_bucket)


def function_environment(settings: FunctionSettings) -> dict[str, str]:
    """The environment variables the function reads `settings` from."""
    environment = {
        SUBSCRIPTION_ENV: settings.subscription.model_dump_json(),
        IDEMPOTENCY_TABLE_ENV: settings.delivered_ids_table,
        DLQ_URL_ENV: settings.parked_queue_url,
        PAYLOAD_BUCKET_ENV: settings.payload_bucket,
    }
    if settings.retry_lane_url is not None:
        environment[RETRY_LANE_URL_ENV] = settings.retry_lane_url
    return environment


@pytest.fixture(scope="session")
def handler_module() -> Iterator[ModuleType]:
    """`dispatcher.handler`, imported once for the delivery tests: it reads an environment at import (here one
    naming nothing the tests use), but `build_dispatcher` and `process_batch` take the test's settings and
    dispatcher as arguments. Only the tests of what the import does load their own (`load_handler`)."""
    unused = FunctionSettings(
        SubscriptionConfig.model_validate(subscription(f"http://{LOOPBACK}/unused", "unused-secret")),
        delivered_ids_table="unused-table",
        parked_queue_url="https://unused.invalid/parked",
        payload_bucket="unused-bucket",
        retry_lane_url="https://unused.invalid/retry-lane.fifo",
    )
    previous = sys.modules.pop("dispatcher.handler", None)
    with pytest.MonkeyPatch.context() as environment:
        for name, value in function_environment(unused).items():
            environment.setenv(name, value)
        module = importlib.import_module("dispatcher.handler")
    _put_back(previous)
    yield module
    _forget_powertools_state(module)


Invocation = Callable[[dict[str, Any], FakeLambdaContext], dict[str, list[dict[str, str]]]]
FunctionStarter = Callable[..., Invocation]


@pytest.fixture
def warm_function(
    aws: AwsResources, endpoint: LoopbackEndpoint, handler_module: ModuleType
) -> Iterator[FunctionStarter]:
    """Starts the function for a subscription with the given fields, as one warm Lambda environment runs it: the
    production wiring (`build_dispatcher`) injected into `process_batch` on one event loop for every invocation,
    the metrics published at the end of each as the entry point does."""
    loop = asyncio.new_event_loop()
    metrics: Metrics = handler_module.metrics
    built: list[Dispatcher] = []

    def start(**overrides: Any) -> Invocation:
        instance: Dispatcher = handler_module.build_dispatcher(function_settings(aws, endpoint, **overrides))
        built.append(instance)

        @metrics.log_metrics
        def invoke(event: dict[str, Any], context: FakeLambdaContext) -> dict[str, list[dict[str, str]]]:
            response: dict[str, list[dict[str, str]]] = handler_module.process_batch(event, context, instance, loop)
            return response

        return invoke

    yield start
    for instance in built:  # the loop owns each dispatcher's pooled HTTP session
        loop.run_until_complete(instance.sender.close())
    loop.close()


HandlerLoader = Callable[..., ModuleType]


@pytest.fixture
def load_handler(
    aws: AwsResources, endpoint: LoopbackEndpoint, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HandlerLoader]:
    """Imports a fresh `dispatcher.handler` (it parses os.environ at import) configured with the given
    subscription fields, for the tests of the entry point itself; the module another test may hold is put
    back afterwards."""
    previous = sys.modules.pop("dispatcher.handler", None)
    loaded: list[ModuleType] = []

    def load(**overrides: Any) -> ModuleType:
        settings = subscription(endpoint.url(), aws.secret_id, **overrides)
        monkeypatch.setenv("DISPATCHER_SUBSCRIPTION", json.dumps(settings))
        monkeypatch.setenv("DISPATCHER_IDEMPOTENCY_TABLE", aws.table)
        monkeypatch.setenv("DISPATCHER_DLQ_URL", aws.parked_queue_url)
        monkeypatch.setenv("DISPATCHER_PAYLOAD_BUCKET", aws.payload_bucket)
        sys.modules.pop("dispatcher.handler", None)
        module = importlib.import_module("dispatcher.handler")
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        if module._runtime is not None:  # the warm runtime: its loop owns the pooled HTTP session
            loop, warm = module._runtime
            loop.run_until_complete(warm.sender.close())
            loop.close()
    for module in loaded[-1:]:
        _forget_powertools_state(module)
    _put_back(previous)


def _forget_powertools_state(module: ModuleType) -> None:
    """Powertools shares metric dimensions and log keys between instances: leave them as found."""
    module.metrics.clear_default_dimensions()
    module.metrics.clear_metrics()
    module.logger.remove_keys(["subscription", "source"])


def _put_back(previous: ModuleType | None) -> None:
    """Make `previous` (the handler module another test holds, if any) the imported one again."""
    if previous is not None:
        previous.metrics.set_default_dimensions(subscription=previous.settings.subscription.name)
        previous.logger.append_keys(subscription=previous.settings.subscription.name)
        sys.modules["dispatcher.handler"] = previous
        dispatcher.handler = previous  # type: ignore[attr-defined]
    else:
        sys.modules.pop("dispatcher.handler", None)


DispatcherFactory = Callable[..., Dispatcher]


@pytest.fixture
async def make_dispatcher(
    aws: AwsResources, endpoint: LoopbackEndpoint, handler_module: ModuleType
) -> AsyncIterator[DispatcherFactory]:
    """`build_dispatcher` (the production wiring) for a subscription with the given fields (and
    optionally another parked-records queue URL or parked-payload bucket)."""
    built: list[Dispatcher] = []

    def make(*, parked_queue_url: str | None = None, payload_bucket: str | None = None, **overrides: Any) -> Dispatcher:
        settings = dataclasses.replace(
            function_settings(aws, endpoint, **overrides),
            parked_queue_url=parked_queue_url or aws.parked_queue_url,
            payload_bucket=payload_bucket or aws.payload_bucket,
        )
        instance: Dispatcher = handler_module.build_dispatcher(settings)
        built.append(instance)
        return instance

    yield make
    for instance in built:
        await instance.sender.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
