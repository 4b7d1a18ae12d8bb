"""Kinesis resharding as AWS does it, enforced on the local AWS's (moto 5.2, run in this process) streams.

After SplitShard or MergeShards, AWS closes the parents, which keep their records (readable until they
expire), and routes every new record to the open children only; a consumer reads the parents to their end,
then the children (which hold nothing the parents held). moto instead
- keeps routing new records to the first shard whose hash range holds the key, closed parents included, so a
  consumer that finished a parent never sees them;
- moves a split parent's records into its children (with two arguments swapped) and copies both merged
  parents' records into the child, so a consumer following the lineage as Lambda does reads them twice.

The patch is process-wide and idempotent: `enforce_kinesis_resharding()` before starting a ThreadedMotoServer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from moto.kinesis.models import Shard, Stream
from moto.utilities.utils import md5_hash

_PATCHED_MARKER = "enforces_kinesis_resharding"


def enforce_kinesis_resharding() -> None:
    """Patch moto's Kinesis streams (once per process) as the module docstring describes."""
    if getattr(Stream.get_shard_for_key, _PATCHED_MARKER, False):
        return
    original_get_shard_for_key = Stream.get_shard_for_key
    original_split_shard = Stream.split_shard
    original_merge_shards = Stream.merge_shards

    def get_shard_for_key(self: Stream, partition_key: str, explicit_hash_key: str) -> Shard | None:
        shard = original_get_shard_for_key(self, partition_key, explicit_hash_key)  # validates the keys
        if shard is None or shard.is_open:
            return shard
        hash_key = int(explicit_hash_key) if explicit_hash_key else _hash_of(partition_key)
        return next(
            (s for s in self.shards.values() if s.is_open and s.starting_hash <= hash_key <= s.ending_hash), None
        )

    def split_shard(self: Stream, shard_to_split: str, new_starting_hash_key: str) -> None:
        with _records_kept(self.shards.get(shard_to_split)):
            original_split_shard(self, shard_to_split, new_starting_hash_key)

    def merge_shards(self: Stream, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        with _records_kept(self.shards.get(shard_to_merge)), _records_kept(self.shards.get(adjacent_shard_to_merge)):
            original_merge_shards(self, shard_to_merge, adjacent_shard_to_merge)

    setattr(get_shard_for_key, _PATCHED_MARKER, True)
    Stream.get_shard_for_key = get_shard_for_key  # type: ignore[method-assign]
    Stream.split_shard = split_shard  # type: ignore[method-assign]
    Stream.merge_shards = merge_shards  # type: ignore[method-assign]


def _hash_of(partition_key: str) -> int:
    """The key's place in the hash-key space, as Kinesis (and moto) compute it."""
    return int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)


@contextmanager
def _records_kept(shard: Shard | None) -> Iterator[None]:
    """While moto reshards, the parent looks empty to it, so it moves or copies nothing; then it gets its
    records back, closed. (A failed reshard leaves the shard as it was.)"""
    if shard is None:
        yield
        return
    records, shard.records = shard.records, OrderedDict()
    try:
        yield
    finally:
        shard.records = records
