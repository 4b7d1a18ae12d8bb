"""The local AWS reshards a Kinesis stream as AWS does (local/moto_kinesis.py), against the moto server the
pollers use: closed parents keep their records and get no new ones; children hold only what arrived after."""

from __future__ import annotations

from typing import Any

import pytest

from tests.local.conftest import LocalAws

pytestmark = pytest.mark.integration

PARENT, SECOND_PARENT = "shardId-000000000000", "shardId-000000000001"
HALF_OF_THE_HASH_SPACE = str(2**127)


def records_of(aws: LocalAws, stream: str, shard: str) -> list[bytes]:
    iterator = aws.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return [record["Data"] for record in aws.kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]]


def shards_of(aws: LocalAws, stream: str) -> dict[str, Any]:
    return {shard["ShardId"]: shard for shard in aws.kinesis.list_shards(StreamName=stream)["Shards"]}


def put(aws: LocalAws, stream: str, prefix: str, count: int) -> set[bytes]:
    data = [f"{prefix}-{index}".encode() for index in range(count)]
    aws.put_records(stream, [(f"key-{index}", payload) for index, payload in enumerate(data)])
    return set(data)


def test_a_split_parent_keeps_its_records_and_new_ones_go_to_the_children(aws: LocalAws) -> None:
    # Given a one-shard stream holding records
    stream, _ = aws.create_stream(shards=1)
    before = put(aws, stream, "before", 12)
    # When the shard is split and more records arrive
    aws.kinesis.split_shard(StreamName=stream, ShardToSplit=PARENT, NewStartingHashKey=HALF_OF_THE_HASH_SPACE)
    after = put(aws, stream, "after", 12)
    # Then the closed parent holds exactly the records from before, and the children exactly those from after
    shards = shards_of(aws, stream)
    children = [shard_id for shard_id, shard in shards.items() if shard.get("ParentShardId") == PARENT]
    assert len(children) == 2
    assert "EndingSequenceNumber" in shards[PARENT]["SequenceNumberRange"]
    assert sorted(records_of(aws, stream, PARENT)) == sorted(before)
    in_children = [record for child in children for record in records_of(aws, stream, child)]
    assert sorted(in_children) == sorted(after)


def test_merged_parents_keep_their_records_and_the_child_gets_only_new_ones(aws: LocalAws) -> None:
    # Given a two-shard stream holding records
    stream, _ = aws.create_stream(shards=2)
    before = put(aws, stream, "before", 12)
    # When the shards are merged and more records arrive
    aws.kinesis.merge_shards(StreamName=stream, ShardToMerge=PARENT, AdjacentShardToMerge=SECOND_PARENT)
    after = put(aws, stream, "after", 12)
    # Then the parents hold the records from before (none twice), and the child only those from after
    (child,) = [shard_id for shard_id, shard in shards_of(aws, stream).items() if shard.get("ParentShardId")]
    in_parents = records_of(aws, stream, PARENT) + records_of(aws, stream, SECOND_PARENT)
    assert sorted(in_parents) == sorted(before)
    assert sorted(records_of(aws, stream, child)) == sorted(after)
