"""The port a redrive runs against: the subscription's function, its dead-letter queue, its parked payloads and
on-failure bucket.

Two adapters build it: `redrive.aws_target` (a deployed environment) and `redrive.local_target` (a running
`dispatcher local`). Tests pass a fake `invoke`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from local.workers import InvocationResult

# Invoke the subscription's function synchronously with a Lambda event; a function error is in the result.
Invoke = Callable[[dict[str, Any]], Awaitable[InvocationResult]]


@dataclass(frozen=True)
class RedriveTarget:
    subscription: str
    function_name: str
    invoke: Invoke
    function_timeout_seconds: float  # how long one invocation may take: sizes how long messages are held
    sqs: Any  # boto3 SQS client
    dead_letter_queue_url: str
    s3: Any  # boto3 S3 client
    on_failure_bucket: str | None  # stream subscriptions only
    payload_bucket: str  # the function's DISPATCHER_PAYLOAD_BUCKET: parked payloads too large for their message
