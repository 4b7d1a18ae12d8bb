"""The delivered ids on DynamoDB: one item per entry, its identifiers zlib-compressed so a
10,000-record Kinesis batch still fits one item (sequence numbers of a shard share long prefixes)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from dispatcher.adapters.aws import aws_client

# Records are re-sent for at most 7 days (MaximumRecordAgeInSeconds' ceiling); a day of margin.
ENTRY_TTL_SECONDS = 8 * 24 * 3600
BATCH_GET_LIMIT = 100  # keys per BatchGetItem
BATCH_WRITE_LIMIT = 25  # items per BatchWriteItem
UNPROCESSED_RETRIES = 5
UNPROCESSED_BACKOFF_SECONDS = 0.05

T = TypeVar("T")


class DynamoDbDeliveredIds:
    def __init__(self, table_name: str, client_factory: Callable[[], Any] = lambda: aws_client("dynamodb")) -> None:
        self._table = table_name
        self._client_factory = client_factory
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def fetch(self, keys: Sequence[str]) -> dict[str, frozenset[str]]:
        if not keys:
            return {}
        if len(keys) == 1:
            response = self.client.get_item(TableName=self._table, Key={"pk": {"S": keys[0]}}, ConsistentRead=True)
            return _decode_items([response["Item"]] if "Item" in response else [])
        found: dict[str, frozenset[str]] = {}
        for chunk in chunks(list(dict.fromkeys(keys)), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self._table: {"Keys": [{"pk": {"S": key}} for key in chunk], "ConsistentRead": True}
            }
            for attempt in range(UNPROCESSED_RETRIES + 1):
                response = self.client.batch_get_item(RequestItems=request)
                found |= _decode_items(response.get("Responses", {}).get(self._table, []))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(UNPROCESSED_BACKOFF_SECONDS * 2**attempt)
            if request:
                raise RuntimeError(f"DynamoDB left {len(request[self._table]['Keys'])} keys unprocessed")
        return found

    def save(self, entries: Mapping[str, frozenset[str]]) -> None:
        if not entries:
            return
        expires_at = str(int(time.time()) + ENTRY_TTL_SECONDS)
        items = [_encode_item(key, ids, expires_at) for key, ids in entries.items()]
        if len(items) == 1:
            self.client.put_item(TableName=self._table, Item=items[0])
            return
        for chunk in chunks(items, BATCH_WRITE_LIMIT):
            request: dict[str, Any] = {self._table: [{"PutRequest": {"Item": item}} for item in chunk]}
            for attempt in range(UNPROCESSED_RETRIES + 1):
                request = self.client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(UNPROCESSED_BACKOFF_SECONDS * 2**attempt)
            if request:
                raise RuntimeError(f"DynamoDB left {len(request[self._table])} entries unwritten")


def _encode_item(key: str, ids: frozenset[str], expires_at: str) -> dict[str, Any]:
    return {
        "pk": {"S": key},
        "ids": {"B": zlib.compress("\n".join(sorted(ids)).encode())},
        "expires_at": {"N": expires_at},
    }


def _decode_items(items: Sequence[Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    return {item["pk"]["S"]: frozenset(zlib.decompress(item["ids"]["B"]).decode().split("\n")) for item in items}


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """`items` in consecutive lists of at most `size` (what a batch request takes at once)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
