"""Payloads of parked records too large for their parked message, kept in the parked-payload bucket (claim
check).

The parked message then carries `payload_s3` ({"bucket", "key"}) instead of `payload_base64`. The key
is derived from the record (webhook-id, source position, payload bytes), so parking the same record again
after a retry rewrites the same object instead of adding one, and a record never shares an object with
another. Every key of a subscription is under `parked/<subscription>/`: its function may write nowhere else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from dispatcher.adapters.aws import aws_client
from dispatcher.ports import ParkedMessage

PARKED_PAYLOAD_PREFIX = "parked"
PAYLOAD_CONTENT_TYPE = "application/octet-stream"  # the exact bytes the endpoint refused, whatever they are


def parked_payload_prefix(subscription: str) -> str:
    """The key prefix of every payload `subscription` parks (the infra limits its function's writes to it)."""
    return f"{PARKED_PAYLOAD_PREFIX}/{subscription}/"


def parked_payload_key(subscription: str, webhook_id: str, item_identifier: str, payload: bytes) -> str:
    digest = hashlib.sha256()
    for part in (webhook_id.encode(), item_identifier.encode(), payload):
        # Length-prefixed, so no two different (id, position, payload) triples hash the same bytes.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return f"{parked_payload_prefix(subscription)}{digest.hexdigest()}"


class S3PayloadStore:
    def __init__(self, bucket: str, client_factory: Callable[[], Any] = lambda: aws_client("s3")) -> None:
        self._bucket = bucket
        self._client_factory = client_factory
        self._client: Any = None

    def put(self, message: ParkedMessage) -> dict[str, str]:
        """Store the message's payload; returns its `payload_s3` location. Raises what the S3 client raised."""
        if self._client is None:
            self._client = self._client_factory()
        fields = message.fields
        key = parked_payload_key(
            str(fields["subscription"]), str(fields["webhook_id"]), str(fields["item_identifier"]), message.payload
        )
        self._client.put_object(Bucket=self._bucket, Key=key, Body=message.payload, ContentType=PAYLOAD_CONTENT_TYPE)
        return {"bucket": self._bucket, "key": key}
