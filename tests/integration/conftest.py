"""Fixtures for the integration tests: moto as a real HTTP server on 127.0.0.1 (DynamoDB, SQS, Secrets
Manager, S3), a scripted endpoint on 127.0.0.1, and the production wiring of the function built from them."""

from __future__ import annotations

import base64
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
from aws_lambda_powertools.utilities import parameters
from moto.server import ThreadedMotoServer

import dispatcher
from dispatcher.config import FunctionSettings, SubscriptionConfig
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


HandlerLoader = Callable[..., ModuleType]


@pytest.fixture
def load_handler(
    aws: AwsResources, endpoint: LoopbackEndpoint, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HandlerLoader]:
    """Imports a fresh `dispatcher.handler` (it parses os.environ at import) configured with the given
    subscription fields; the module another test may hold is put back afterwards."""
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
    # Powertools shares metric dimensions and log keys between instances: leave them as found.
    for module in loaded[-1:]:
        module.metrics.clear_default_dimensions()
        module.metrics.clear_metrics()
        module.logger.remove_keys(["subscription", "source"])
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
    aws: AwsResources, endpoint: LoopbackEndpoint, load_handler: HandlerLoader
) -> AsyncIterator[DispatcherFactory]:
    """`build_dispatcher` (the production wiring) for a subscription with the given fields (and
    optionally another parked-records queue URL or parked-payload bucket)."""
    handler_module = load_handler()
    built: list[Dispatcher] = []

    def make(*, parked_queue_url: str | None = None, payload_bucket: str | None = None, **overrides: Any) -> Dispatcher:
        config = SubscriptionConfig.model_validate(subscription(endpoint.url(), aws.secret_id, **overrides))
        settings = FunctionSettings(
            config, aws.table, parked_queue_url or aws.parked_queue_url, payload_bucket or aws.payload_bucket
        )
        instance: Dispatcher = handler_module.build_dispatcher(settings)
        built.append(instance)
        return instance

    yield make
    for instance in built:
        await instance.sender.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
