"""boto3 clients, built lazily. The endpoint comes from the standard AWS_ENDPOINT_URL, so the same
code runs against a local AWS emulator."""

from __future__ import annotations

from typing import Any

# Fail fast inside a Lambda invocation: a slow AWS call must not eat the delivery deadline.
AWS_CONNECT_TIMEOUT_SECONDS = 2
AWS_READ_TIMEOUT_SECONDS = 5
AWS_MAX_ATTEMPTS = 3


def aws_client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=AWS_CONNECT_TIMEOUT_SECONDS,
        read_timeout=AWS_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": AWS_MAX_ATTEMPTS},
    )
    return boto3.client(service, config=config)  # type: ignore[call-overload]
