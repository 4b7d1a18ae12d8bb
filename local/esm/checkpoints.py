"""Where a Kinesis mapping keeps its position in each shard, so that a restarted poller resumes.

Lambda keeps a mapping's checkpoints on its side; locally they live in a DynamoDB table of the embedded AWS
(created by the local runtime), one item per mapping and shard:

    {"mapping": <mapping UUID>, "shard": <shard id>, "position": <sequence number> | "SHARD_END"}

`position` is the last record of the shard that is done (delivered, or given up on); SHARD_END marks a closed
shard read to its end, whose child shards may be read. Without a table, checkpoints are kept in memory.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from local.esm.base import aws_client

SHARD_END = "SHARD_END"
MAPPING_KEY = "mapping"
SHARD_KEY = "shard"
POSITION_ATTRIBUTE = "position"


class CheckpointStore(Protocol):
    """The checkpoints of one mapping, by shard."""

    async def load(self) -> dict[str, str]: ...

    async def save(self, shard_id: str, position: str) -> None: ...


class InMemoryCheckpoints:
    def __init__(self) -> None:
        self.positions: dict[str, str] = {}

    async def load(self) -> dict[str, str]:
        return dict(self.positions)

    async def save(self, shard_id: str, position: str) -> None:
        self.positions[shard_id] = position


class DynamoDbCheckpoints:
    """Checkpoints in a table keyed by (mapping, shard); see `checkpoint_table_definition`."""

    def __init__(self, table: str, mapping_id: str, *, endpoint_url: str, region: str) -> None:
        self.table = table
        self.mapping_id = mapping_id
        self._dynamodb = aws_client("dynamodb", endpoint_url, region)

    async def load(self) -> dict[str, str]:
        positions: dict[str, str] = {}
        arguments = {
            "TableName": self.table,
            "KeyConditionExpression": "#mapping = :mapping",
            "ExpressionAttributeNames": {"#mapping": MAPPING_KEY},
            "ExpressionAttributeValues": {":mapping": {"S": self.mapping_id}},
        }
        while True:
            response = await asyncio.to_thread(self._dynamodb.query, **arguments)
            for item in response["Items"]:
                positions[item[SHARD_KEY]["S"]] = item[POSITION_ATTRIBUTE]["S"]
            if "LastEvaluatedKey" not in response:
                return positions
            arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    async def save(self, shard_id: str, position: str) -> None:
        item = {MAPPING_KEY: {"S": self.mapping_id}, SHARD_KEY: {"S": shard_id}, POSITION_ATTRIBUTE: {"S": position}}
        await asyncio.to_thread(self._dynamodb.put_item, TableName=self.table, Item=item)


def checkpoint_table_definition(table: str) -> dict[str, object]:
    """CreateTable arguments of the checkpoint table."""
    return {
        "TableName": table,
        "KeySchema": [
            {"AttributeName": MAPPING_KEY, "KeyType": "HASH"},
            {"AttributeName": SHARD_KEY, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": MAPPING_KEY, "AttributeType": "S"},
            {"AttributeName": SHARD_KEY, "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
