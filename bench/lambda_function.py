"""The function as Lambda runs it: `dispatcher.handler.handler(event, context)` in this process, its AWS a
moto server in another (bench.aws_process), with the delivered-ids table, parked-records queue, payload
bucket and signing secret the handler reads from its environment.

Each invocation is measured as Lambda bills it: wall time of the handler call, the AWS requests it made (by
service and operation), and what it wrote to stdout, which Lambda ships to CloudWatch Logs (Powertools' JSON
log lines and EMF metric documents).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from unittest import mock

import boto3
from botocore.client import BaseClient

from bench import workload
from bench.aws_process import AwsProcess
from capacity.cost import FUNCTION_MEMORY_MB
from dispatcher.config import (
    DLQ_URL_ENV,
    IDEMPOTENCY_TABLE_ENV,
    PAYLOAD_BUCKET_ENV,
    RETRY_LANE_URL_ENV,
    SUBSCRIPTION_ENV,
)
from tests.fake_aws import REAL_ACCOUNT_VARIABLES  # removed for the benchmark: they would reach a real account
from tests.fakes import SECRET

REGION = "eu-west-1"
FUNCTION_NAME = "bench-dispatcher"


@dataclass(frozen=True)
class Invocation:
    seconds: float  # the handler call, as Lambda's billed duration measures it
    response: dict[str, Any]
    aws_requests: Counter[str]  # "<service> <operation>": count
    log_bytes: int  # bytes written to stdout (UTF-8)
    log_events: int  # lines written to stdout: each is one CloudWatch Logs event


class _LambdaContext:
    """What Powertools and the handler read from Lambda's context."""

    function_name = FUNCTION_NAME
    memory_limit_in_mb = FUNCTION_MEMORY_MB
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION_NAME}"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return int(workload.REMAINING_SECONDS * 1000)


class _StdoutMeter(io.TextIOBase):
    """Counts what the function writes to stdout, and keeps none of it."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        self.lines += text.count("\n")
        return len(text)


class LambdaFunction:
    """The handler module with its AWS resources in `aws` and its endpoint at `endpoint_url`."""

    def __init__(self, aws: AwsProcess, endpoint_url: str) -> None:
        self._aws = aws
        self._endpoint_url = endpoint_url
        self._stack = contextlib.ExitStack()
        self._module: ModuleType | None = None
        self._requests: Counter[str] = Counter()
        self._invocations = 0

    def __enter__(self) -> LambdaFunction:
        try:
            self._stack.enter_context(mock.patch.dict(os.environ, self._aws_environment()))
            for name in REAL_ACCOUNT_VARIABLES:
                os.environ.pop(name, None)
            os.environ.update(self._function_environment())
            self._stack.enter_context(_counting_aws_requests(self._requests))
            sys.modules.pop("dispatcher.handler", None)
            self._module = importlib.import_module("dispatcher.handler")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        module, self._module = self._module, None
        try:
            if module is not None and module._runtime is not None:
                loop, dispatcher = module._runtime
                loop.run_until_complete(dispatcher.sender.close())
                loop.close()
        finally:
            sys.modules.pop("dispatcher.handler", None)
            self._stack.close()

    def invoke(self, event: dict[str, Any]) -> Invocation:
        assert self._module is not None, "use LambdaFunction as a context manager"
        self._invocations += 1
        meter = _StdoutMeter()
        log_handler = self._module.logger.registered_handler
        self._requests.clear()
        previous_stream = log_handler.setStream(meter)
        try:
            with contextlib.redirect_stdout(meter):
                started = time.perf_counter()
                response = self._module.handler(event, _LambdaContext(f"bench-{self._invocations:08d}"))
                seconds = time.perf_counter() - started
        finally:
            log_handler.setStream(previous_stream)
        return Invocation(seconds, response, Counter(self._requests), meter.bytes, meter.lines)

    def _aws_environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self._aws.endpoint_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        }

    def _function_environment(self) -> dict[str, str]:
        """Creates the function's resources in moto; the variables the infrastructure would set."""
        session = boto3.session.Session()
        suffix = uuid.uuid4().hex[:12]  # each function its own resources, in the one moto
        table = f"bench-delivered-ids-{suffix}"
        session.client("dynamodb").create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        queue_url = session.client("sqs").create_queue(QueueName=f"bench-parked-{suffix}")["QueueUrl"]
        bucket = f"bench-parked-payloads-{suffix}"
        session.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        secrets = session.client("secretsmanager")
        secret = secrets.create_secret(Name=f"bench/signing-{suffix}", SecretString=SECRET)
        retry_lane_url = session.client("sqs").create_queue(QueueName=f"bench-retry-lane-{suffix}")["QueueUrl"]
        subscription = workload.subscription(self._endpoint_url).model_dump(mode="json")
        subscription["signing_secret"] = secret["ARN"]
        return {
            SUBSCRIPTION_ENV: json.dumps(subscription),
            IDEMPOTENCY_TABLE_ENV: table,
            DLQ_URL_ENV: queue_url,
            PAYLOAD_BUCKET_ENV: bucket,
            RETRY_LANE_URL_ENV: retry_lane_url,
        }


@contextlib.contextmanager
def _counting_aws_requests(requests: Counter[str]) -> Iterator[None]:
    """Counts every AWS API call of every boto3 client, whichever session built it (the adapters use
    boto3's default session, Powertools' parameters its own): all go through BaseClient._make_api_call."""
    original: Callable[..., Any] = vars(BaseClient)["_make_api_call"]  # private: botocore's stubs leave it out

    def counted(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        requests[f"{client.meta.service_model.service_name} {operation_name}"] += 1
        return original(client, operation_name, api_params)

    with mock.patch.object(BaseClient, "_make_api_call", counted):
        yield
