"""The Kinesis mapping's shard handling against moto: where it starts (AT_TIMESTAMP), how it follows a resharding
(parents finished before their children are read), and its checkpoints in the local AWS (a restart resumes)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.esm.checkpoints import SHARD_END, checkpoint_table_definition
from local.esm.kinesis import FAN_OUT_POLLED_AS_SHARED, ShardProgress
from local.spec import KinesisMappingSpec
from tests.local.conftest import (
    REGION,
    LocalAws,
    ScriptedFunction,
    eventually,
    kinesis_poller,
    running,
)

pytestmark = pytest.mark.integration

DISTINCT_ARRIVALS_SECONDS = 0.05  # apart enough for arrival times kept to the millisecond to differ


def dynamodb(aws: LocalAws) -> Any:
    return boto3.session.Session(region_name=REGION).client("dynamodb", endpoint_url=aws.endpoint_url)


def create_checkpoint_table(aws: LocalAws) -> str:
    table = f"checkpoints-{uuid.uuid4().hex[:10]}"
    dynamodb(aws).create_table(**checkpoint_table_definition(table))
    return table


def stored_checkpoints(aws: LocalAws, table: str) -> dict[str, str]:
    items = dynamodb(aws).scan(TableName=table)["Items"]
    return {item["shard"]["S"]: item["position"]["S"] for item in items}


def shard_of(event: dict[str, Any]) -> str:
    shard: str = event["Records"][0]["eventID"].split(":")[0]
    return shard


def arrival_of(aws: LocalAws, stream: str, sequence_number: str) -> float:
    iterator = aws.kinesis.get_shard_iterator(
        StreamName=stream,
        ShardId="shardId-000000000000",
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=sequence_number,
    )["ShardIterator"]
    (record, *_) = aws.kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"]
    return record["ApproximateArrivalTimestamp"].timestamp()


# -- where the mapping starts ---------------------------------------------------------------------------------


async def test_at_timestamp_starts_at_the_first_record_that_arrived_at_or_after_it(aws: LocalAws) -> None:
    # Given two records that arrived apart, and a mapping starting AT_TIMESTAMP between their arrivals
    stream = aws.create_stream()
    (early,) = aws.put_records(stream[0], [("key", b"early")])
    await asyncio.sleep(DISTINCT_ARRIVALS_SECONDS)  # distinct arrival times, not synchronisation
    (late,) = aws.put_records(stream[0], [("key", b"late")])
    early_arrival, late_arrival = arrival_of(aws, stream[0], early), arrival_of(aws, stream[0], late)
    assert late_arrival > early_arrival
    function = ScriptedFunction()
    mapping: dict[str, Any] = {
        "starting_position": "AT_TIMESTAMP",
        "starting_position_timestamp": (early_arrival + late_arrival) / 2,
    }
    # When the mapping reads the shard
    async with running(kinesis_poller(aws, stream, function, **mapping)):
        await eventually(lambda: bool(function.events))
    # Then only the record that arrived after the timestamp is delivered
    assert function.batches == [[late]]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"starting_position": "AT_TIMESTAMP"}, "AT_TIMESTAMP needs a StartingPositionTimestamp"),
        ({"starting_position_timestamp": 1.0}, "only valid with AT_TIMESTAMP"),
        ({"starting_position": "EARLIEST"}, "'EARLIEST' is not one of TRIM_HORIZON, LATEST, AT_TIMESTAMP"),
    ],
)
def test_a_starting_position_lambda_would_refuse_is_refused_naming_the_setting(
    fields: dict[str, Any], message: str
) -> None:
    # Given a mapping whose starting position Lambda would refuse
    # When it is described
    # Then the error names what is wrong
    with pytest.raises(ValueError, match=message):
        KinesisMappingSpec("stream", "arn:aws:kinesis:eu-west-1:123456789012:stream/stream", **fields)


# -- resharding -----------------------------------------------------------------------------------------------


async def test_a_merged_shard_is_read_only_after_both_parents_are_finished(aws: LocalAws) -> None:
    # Given two shards with records, merged into a child shard that received records after the merge,
    # all before the mapping starts
    stream = aws.create_stream(shards=2)
    aws.put_records(stream[0], [(f"key-{index}", f"r{index}".encode()) for index in range(8)])
    aws.kinesis.merge_shards(
        StreamName=stream[0], ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000001"
    )
    aws.put_records(stream[0], [(f"key-{index}", f"after-{index}".encode()) for index in range(8)])
    function = ScriptedFunction(delay_seconds=0.05)
    # When the mapping reads the stream from its start, one record per batch
    async with running(kinesis_poller(aws, stream, function, batch_size=1)):
        await eventually(lambda: sum(shard_of(event) == "shardId-000000000002" for event in function.events) == 8)
    # Then every batch of the child came after every batch of its parents
    shards = [shard_of(event) for event in function.events]
    last_parent_batch = max(index for index, shard in enumerate(shards) if shard != "shardId-000000000002")
    assert shards.index("shardId-000000000002") > last_parent_batch
    assert sorted(set(shards[: last_parent_batch + 1])) == ["shardId-000000000000", "shardId-000000000001"]


async def test_a_resharding_while_running_finishes_the_parents_then_follows_the_child(aws: LocalAws) -> None:
    # Given a running mapping that has delivered the records of two shards
    stream = aws.create_stream(shards=2)
    table = create_checkpoint_table(aws)
    aws.put_records(stream[0], [(f"key-{index}", b"x") for index in range(6)])
    function = ScriptedFunction()
    mapping = kinesis_poller(aws, stream, function, checkpoint_table=table)
    async with running(mapping):
        await eventually(lambda: sum(map(len, function.batches)) == 6)
        # When the two shards are merged
        aws.kinesis.merge_shards(
            StreamName=stream[0], ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000001"
        )
        # And records arrive after the merge (they go to the child only)
        aws.put_records(stream[0], [(f"key-{index}", b"after") for index in range(6)])
        # Then the mapping discovers the child and reads it
        await eventually(lambda: sum(len(event["Records"]) for event in function.events) == 12, "the child's records")
        # And the closed parents are checkpointed as finished, the child at its last record
        await eventually(lambda: len(stored_checkpoints(aws, table)) == 3, "the child's checkpoint")
    checkpoints = stored_checkpoints(aws, table)
    assert checkpoints["shardId-000000000000"] == checkpoints["shardId-000000000001"] == SHARD_END
    assert checkpoints["shardId-000000000002"] == "6"


# -- checkpoints ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("starting_position", ["TRIM_HORIZON", "LATEST"])
async def test_a_restarted_mapping_resumes_after_its_checkpoint(aws: LocalAws, starting_position: str) -> None:
    # Given a mapping with its checkpoints in a table of the local AWS, which delivered three records and stopped
    stream = aws.create_stream()
    table = create_checkpoint_table(aws)
    first = ScriptedFunction()
    async with running(kinesis_poller(aws, stream, first, checkpoint_table=table, starting_position=starting_position)):
        delivered = aws.put_records(stream[0], [("key", b"1"), ("key", b"2"), ("key", b"3")])
        await eventually(lambda: sum(map(len, first.batches)) == 3)
        await eventually(lambda: stored_checkpoints(aws, table) == {"shardId-000000000000": delivered[-1]})
    # When records arrive while it is stopped, and it starts again
    while_stopped = aws.put_records(stream[0], [("key", b"4"), ("key", b"5")])
    second = ScriptedFunction()
    async with running(
        kinesis_poller(aws, stream, second, checkpoint_table=table, starting_position=starting_position)
    ):
        await eventually(lambda: sum(map(len, second.batches)) == 2)
    # Then it delivers exactly what came after its checkpoint: nothing again, nothing skipped
    assert [number for batch in second.batches for number in batch] == while_stopped


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30, unique=True), st.randoms())
def test_the_checkpoint_never_passes_a_record_that_is_not_done(sequence_numbers: list[int], random: Any) -> None:
    # Given the records of a shard read in order, finished by parallel lanes in any order
    ordered = [str(number) for number in sorted(sequence_numbers)]
    progress = ShardProgress()
    for number in ordered:
        progress.read(number)
    finishing_order = list(ordered)
    random.shuffle(finishing_order)
    done: set[str] = set()
    for number in finishing_order:
        # When one more record is done
        progress.finish([number])
        done.add(number)
        # Then the checkpoint is the last record of the longest run of done records from the start
        run = 0
        while run < len(ordered) and ordered[run] in done:
            run += 1
        assert progress.checkpoint == (ordered[run - 1] if run else None)


async def test_an_enhanced_fan_out_mapping_is_polled_as_a_shared_one_and_says_why(
    aws: LocalAws, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a mapping that reads through an enhanced fan-out consumer (moto has no SubscribeToShard)
    stream = aws.create_stream()
    (sequence_number,) = aws.put_records(stream[0], [("key", b"1")])
    function = ScriptedFunction()
    # When it runs
    with caplog.at_level(logging.WARNING, logger="local.esm.kinesis"):
        async with running(kinesis_poller(aws, stream, function, fan_out_consumer="dev-orders-ledger")):
            await eventually(lambda: bool(function.events))
    # Then it delivers by polling the stream, as a shared-throughput mapping does, and says why
    assert function.batches == [[sequence_number]]
    assert any("dev-orders-ledger" in message and FAN_OUT_POLLED_AS_SHARED in message for message in caplog.messages)
