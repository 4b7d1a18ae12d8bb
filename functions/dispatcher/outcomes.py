"""What became of a batch's records: each record's result, the invocation's counts and the partial-failure
report Lambda reads."""

from __future__ import annotations

import enum
import logging
from collections import Counter
from dataclasses import dataclass, field

from dispatcher.records import Batch, SourceRecord

logger = logging.getLogger(__name__)

MAX_FAILURES_LOGGED = 20  # per invocation; a down endpoint must not flood the logs


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    PARKED = "parked"
    FAILED = "failed"  # reported as a batch item failure: Lambda sends it again
    SKIPPED = "skipped"  # delivered or parked by an earlier invocation
    HANDED_TO_LANE = "handed to the retry lane"  # finished for the source: the lane delivers it later


@dataclass(frozen=True, slots=True)
class RecordResult:
    outcome: Outcome
    attempts: int = 0
    last_status: int | None = None
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.outcome is not Outcome.FAILED


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    duplicates_skipped: int = 0
    parked: int = 0
    handed_to_lane: int = 0
    endpoint_gone: int = 0  # 410 answers
    held_keys: int | None = None  # keys held in the retry lane, when this invocation read them
    oldest_lane_age_seconds: float | None = None  # of the lane records a lane round looked at (RetryLaneAge)
    status_classes: Counter[str] = field(default_factory=Counter)  # "2xx" .. "5xx", "network"
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class BatchReport:
    batch: Batch
    results: tuple[RecordResult, ...]  # aligned with batch.records
    stats: DeliveryStats

    @property
    def failed_records(self) -> list[SourceRecord]:
        return [r for r, result in zip(self.batch.records, self.results, strict=True) if not result.finished]

    def response(self) -> dict[str, list[dict[str, str]]]:
        """The ReportBatchItemFailures response: identifiers of this batch only, each once, never empty."""
        identifiers = dict.fromkeys(record.item_identifier for record in self.failed_records)
        return {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in identifiers]}

    def count(self) -> None:
        """Add the records' outcomes to the stats, logging the reported ones (the first MAX_FAILURES_LOGGED)."""
        for record, result in zip(self.batch.records, self.results, strict=True):
            if result.outcome is Outcome.DELIVERED:
                self.stats.delivered += 1
            elif result.outcome is Outcome.PARKED:
                self.stats.parked += 1
            elif result.outcome is Outcome.FAILED:
                self.stats.failed += 1
                if self.stats.failed <= MAX_FAILURES_LOGGED:
                    logger.warning(
                        "record not delivered; reported for retry",
                        extra={
                            "webhook_id": record.webhook_id,
                            "source_position": record.source_fields_for_logs(),
                            "reason": result.reason,
                        },
                    )
        if self.stats.failed > MAX_FAILURES_LOGGED:
            logger.warning("%d records not delivered in all; reported for retry", self.stats.failed)
