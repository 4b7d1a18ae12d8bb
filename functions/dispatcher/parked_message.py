"""Parking: the parked message, the document a parked record becomes in the subscription's parked-records
queue (README "Parked message format"; its fields are a contract with redrive and operators), and setting a
batch's parked records aside in one call."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from dispatcher.config import SubscriptionConfig
from dispatcher.outcomes import Outcome, RecordResult
from dispatcher.ports import ParkedMessage, ParkedRecords
from dispatcher.records import SourceRecord
from dispatcher.timestamps import rfc3339

logger = logging.getLogger(__name__)


def parked_message(
    subscription: SubscriptionConfig, record: SourceRecord, result: RecordResult, parked_at: str
) -> ParkedMessage:
    """The message's fields; the parked records add the payload, inline or as a reference to where they stored it."""
    fields: dict[str, Any] = {
        "subscription": subscription.name,
        "endpoint": subscription.endpoint,
        "webhook_id": record.webhook_id,
        "item_identifier": record.item_identifier,
        "source": record.source_fields(),
        "content_type": record.content_type,
        "produced_at": rfc3339(record.produced_at),
        "reason": result.reason,
        "last_status": result.last_status,
        "attempts": result.attempts,
        "parked_at": parked_at,
    }
    return ParkedMessage(fields, record.payload)


def park(
    parked_records: ParkedRecords,
    subscription: SubscriptionConfig,
    records: Sequence[tuple[SourceRecord, RecordResult]],
    parked_at: str,
) -> dict[int, RecordResult]:
    """Park the records (each with the result that parks it); returns, by position in `records`, the new
    results of those that could not be parked: failed, for Lambda to send again."""
    messages = [parked_message(subscription, record, result, parked_at) for record, result in records]
    try:
        unparked = parked_records.park(messages)
    except Exception as error:
        logger.exception("parking failed; the records are reported as failures")
        unparked = dict.fromkeys(range(len(records)), f"{type(error).__name__}: {error}")
    failed: dict[int, RecordResult] = {}
    for position, (record, result) in enumerate(records):
        if position in unparked:
            cause = unparked[position]
            failed[position] = RecordResult(
                Outcome.FAILED, result.attempts, result.last_status, f"could not park ({result.reason}): {cause}"
            )
            logger.error(
                "record could not be parked; reported for retry",
                extra={
                    "webhook_id": record.webhook_id,
                    "source_position": record.source_fields_for_logs(),
                    "cause": cause,
                },
            )
        else:
            logger.warning(
                "record parked in the parked-records queue",
                extra={
                    "webhook_id": record.webhook_id,
                    "source_position": record.source_fields_for_logs(),
                    "reason": result.reason,
                },
            )
    return failed
