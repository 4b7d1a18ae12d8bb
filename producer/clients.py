"""boto3 clients built the standard way: credentials, region and AWS_ENDPOINT_URL from the environment."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_sqs import SQSClient

# botocore retries whole requests that were throttled or hit a 5xx; "standard" mode adds jittered backoff
# and a retry quota. Records failed inside a successful response are the producer's to re-send.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


def kinesis_client(endpoint_url: str | None = None) -> KinesisClient:
    """`endpoint_url` None: boto3 reads AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_KINESIS) itself."""
    return boto3.client("kinesis", endpoint_url=endpoint_url, config=CLIENT_CONFIG)


def sqs_client(endpoint_url: str | None = None) -> SQSClient:
    """`endpoint_url` None: boto3 reads AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_SQS) itself."""
    return boto3.client("sqs", endpoint_url=endpoint_url, config=CLIENT_CONFIG)
