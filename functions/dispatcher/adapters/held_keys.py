"""The held keys on DynamoDB: one item of the delivered-ids table per subscription, `<subscription>#held`, with
one string set of entry ids per held key (docs/retry-lanes.md). It never expires: a key stays held while its
records wait in the lane, however long the retry schedule.

ADD and DELETE on a string set are atomic and idempotent, and DynamoDB removes a set that DELETE empties, so
concurrent invocations (source batches and lane rounds) need no locking and "held" is "the attribute exists".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal

from dispatcher.adapters.aws import aws_client
from dispatcher.adapters.dynamodb import chunks
from dispatcher.delivered_ids import KEY_SEPARATOR
from dispatcher.retry_lane import KEY_ATTRIBUTE_PREFIX  # every held key's attribute starts with it; "pk" does not

HELD_ITEM_SUFFIX = "held"
# Keys per UpdateItem: DynamoDB allows an update expression of at most 4 KB and 300 operators. A clause
# "#k123 :k123, " is 13 bytes and one operator, so 100 keys stay well inside both; more keys take more requests.
KEYS_PER_UPDATE = 100


class DynamoDbHeldKeys:
    def __init__(
        self, table_name: str, subscription: str, client_factory: Callable[[], Any] = lambda: aws_client("dynamodb")
    ) -> None:
        self._table = table_name
        self._key = {"pk": {"S": f"{subscription}{KEY_SEPARATOR}{HELD_ITEM_SUFFIX}"}}
        self._client = functools.cache(client_factory)  # built on first use, then reused by warm invocations

    def read(self) -> dict[str, frozenset[str]]:
        item = self._client().get_item(TableName=self._table, Key=self._key, ConsistentRead=True).get("Item", {})
        return {
            name: frozenset(value["SS"])
            for name, value in item.items()
            if name.startswith(KEY_ATTRIBUTE_PREFIX) and "SS" in value
        }

    def hold(self, entries: Mapping[str, frozenset[str]]) -> None:
        self._update("ADD", entries)

    def release(self, entries: Mapping[str, frozenset[str]]) -> None:
        self._update("DELETE", entries)

    def _update(self, action: Literal["ADD", "DELETE"], entries: Mapping[str, frozenset[str]]) -> None:
        """One UpdateItem per KEYS_PER_UPDATE keys; raises what DynamoDB raised."""
        for name in entries:
            if not name.startswith(KEY_ATTRIBUTE_PREFIX):
                raise ValueError(f"held key attribute {name!r} does not start with {KEY_ATTRIBUTE_PREFIX!r}")
        nonempty = [(name, ids) for name, ids in entries.items() if ids]  # DynamoDB has no empty sets
        for chunk in chunks(nonempty, KEYS_PER_UPDATE):
            clauses = ", ".join(f"#k{position} :k{position}" for position in range(len(chunk)))
            self._client().update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression=f"{action} {clauses}",
                ExpressionAttributeNames={f"#k{position}": name for position, (name, _) in enumerate(chunk)},
                ExpressionAttributeValues={
                    f":k{position}": {"SS": sorted(ids)} for position, (_, ids) in enumerate(chunk)
                },
            )
