"""The delivered ids: what to remember so a record Lambda re-sends is not POSTed twice (the second lesson
of CreditorWatch's article on Lambda at scale: retries re-send whole batches), priced by what is re-sent
rather than by volume.

- Kinesis: after a partial failure Lambda checkpoints at the lowest reported sequence number and
  re-sends from that record on, delivered ones included; the retried batch starts AT that record.
  So one entry, keyed by that sequence number, lists the delivered (or parked) records after it.
  Every batch costs one GetItem (keyed by its first record); a fully delivered batch writes nothing.
- SQS: Lambda re-sends only the messages reported failed, which were not delivered, so a partial
  failure needs no entry. Only a crashed or timed-out invocation re-sends delivered messages; those
  come back with ApproximateReceiveCount > 1, so only such messages are looked up, and the progress
  checkpoints of long invocations are what they find.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from dispatcher.outcomes import BatchReport
from dispatcher.ports import DeliveredIds
from dispatcher.records import Batch, SourceKind, SourceRecord

logger = logging.getLogger(__name__)

KEY_SEPARATOR = "#"


def _kinesis_key(subscription: str, record: SourceRecord) -> str:
    return KEY_SEPARATOR.join(
        (subscription, "kinesis", record.source_name, str(record.shard_id), str(record.sequence_number))
    )


def _sqs_key(subscription: str, record: SourceRecord) -> str:
    return KEY_SEPARATOR.join((subscription, "sqs", record.source_name, record.item_identifier))


def lookup_keys(subscription: str, batch: Batch) -> list[str]:
    """Keys under which earlier invocations may have recorded records of this batch."""
    if batch.kind is SourceKind.KINESIS:
        positioned = _with_ordinals(batch.records)
        return [_kinesis_key(subscription, min(positioned, key=_ordinal))] if positioned else []
    return [_sqs_key(subscription, record) for record in batch.records if record.receive_count > 1]


def entries_after_partial_failure(
    subscription: str, batch: Batch, finished: Iterable[SourceRecord], failed: Sequence[SourceRecord]
) -> dict[str, frozenset[str]]:
    """What Lambda will re-send although it is finished (delivered or parked), keyed for the next lookup."""
    failed_positioned = _with_ordinals(failed)
    if batch.kind is not SourceKind.KINESIS or not failed_positioned:
        return {}
    checkpoint = min(failed_positioned, key=_ordinal)
    resent_anyway = frozenset(
        record.item_identifier for record in _with_ordinals(finished) if _ordinal(record) > _ordinal(checkpoint)
    )
    return {_kinesis_key(subscription, checkpoint): resent_anyway} if resent_anyway else {}


def _with_ordinals(records: Iterable[SourceRecord]) -> list[SourceRecord]:
    """Records whose sequence number is readable: only they can be a checkpoint Lambda re-sends from."""
    return [record for record in records if record.ordinal is not None]


def _ordinal(record: SourceRecord) -> int:
    assert record.ordinal is not None
    return record.ordinal


def progress_entries(subscription: str, batch: Batch, finished: Sequence[SourceRecord]) -> dict[str, frozenset[str]]:
    """What a crash now would make Lambda re-send although delivered: the whole batch."""
    if not finished:
        return {}
    if batch.kind is SourceKind.KINESIS:
        return {
            key: frozenset(record.item_identifier for record in finished) for key in lookup_keys(subscription, batch)
        }
    return {_sqs_key(subscription, record): frozenset((record.item_identifier,)) for record in finished}


def save_after_partial_failure(store: DeliveredIds, subscription: str, report: BatchReport) -> None:
    """Save what Lambda will re-send although finished; a failed save is logged, never raised."""
    batch = report.batch
    finished = [record for record, result in zip(batch.records, report.results, strict=True) if result.finished]
    entries = entries_after_partial_failure(subscription, batch, finished, report.failed_records)
    if not entries:
        return
    try:
        store.save(entries)
    except Exception:
        # Cannot undo the deliveries: the re-sent records reach the endpoint again, which dedupes
        # on webhook-id. Reporting them failed instead would re-send even more.
        logger.exception("could not record delivered records; their re-sends will reach the endpoint")


async def checkpoint_periodically(
    store: DeliveredIds,
    subscription: str,
    batch: Batch,
    delivered_so_far: Callable[[], Sequence[SourceRecord]],
    interval_seconds: float,
) -> None:
    """During long invocations, record progress every `interval_seconds` so a crash or timeout re-sends little;
    runs until cancelled."""
    while True:
        await asyncio.sleep(interval_seconds)
        entries = progress_entries(subscription, batch, delivered_so_far())
        try:
            await asyncio.to_thread(store.save, entries)
        except Exception:
            logger.exception("progress checkpoint failed; a crash now would re-send more")
