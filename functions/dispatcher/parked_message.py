"""The parked message: the document a parked record becomes in the subscription's parked-records queue
(README "Parked message format"). Its fields are a contract with redrive and with operators: names unchanged."""

from __future__ import annotations

from typing import Any

from dispatcher.config import SubscriptionConfig
from dispatcher.outcomes import RecordResult
from dispatcher.ports import ParkedMessage
from dispatcher.records import SourceRecord
from dispatcher.timestamps import rfc3339


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
