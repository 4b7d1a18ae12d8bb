"""What a successful send returns: where each record went, and how much work it took."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Receipt(Protocol):
    @property
    def id(self) -> str:
        """The identifier AWS gave the record: a Kinesis sequence number or an SQS message id."""
        ...


@dataclass(frozen=True, slots=True)
class KinesisReceipt:
    shard_id: str
    sequence_number: str

    @property
    def id(self) -> str:
        return self.sequence_number


@dataclass(frozen=True, slots=True)
class SqsReceipt:
    message_id: str
    sequence_number: str | None = None  # FIFO queues only

    @property
    def id(self) -> str:
        return self.message_id


ReceiptT = TypeVar("ReceiptT", bound=Receipt)


@dataclass(frozen=True, slots=True)
class ProduceResult(Generic[ReceiptT]):
    """The records AWS accepted, keyed by their position in the caller's sequence."""

    destination: str  # "stream orders", "queue https://.../refunds.fifo"
    receipts: Mapping[int, ReceiptT]
    requests: int  # PutRecords / SendMessageBatch calls made, re-sends included
    resent: int  # record re-sends after a partial failure (one record re-sent twice counts 2)

    @property
    def count(self) -> int:
        return len(self.receipts)

    @property
    def ids(self) -> tuple[str, ...]:
        """Sequence numbers or message ids in input order (records not accepted are absent)."""
        return tuple(self.receipts[index].id for index in sorted(self.receipts))
