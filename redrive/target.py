"""The port a redrive runs against: the subscription's function, its parked-records queue, its parked payloads and
on-failure bucket.

Two adapters build it: `redrive.aws_target` (a deployed environment) and `redrive.local_target` (a running
`dispatcher local`). Tests pass a fake `invoke`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dispatcher.adapters.s3 import parked_payload_prefix
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
    parked_records_url: str
    s3: Any  # boto3 S3 client
    on_failure_bucket: str | None  # stream subscriptions only
    payload_bucket: str  # the function's DISPATCHER_PAYLOAD_BUCKET: parked payloads too large for their message

    def stores(self) -> list[str]:
        """What a redrive of this subscription reads, one line each (the summary names them)."""
        queue_name = self.parked_records_url.rstrip("/").rsplit("/", 1)[-1]
        stores = [
            f"parked-records queue {queue_name}",
            f"parked payloads s3://{self.payload_bucket}/{parked_payload_prefix(self.subscription)}",
        ]
        if self.on_failure_bucket is not None:
            stores.append(f"on-failure store s3://{self.on_failure_bucket}")
        return stores
