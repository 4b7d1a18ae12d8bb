"""What the producer raises: refused input before anything is sent, and records AWS did not accept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producer.result import ProduceResult

MAX_LINES_IN_MESSAGE = 20  # the exception text stays readable; the attributes keep every item


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """Why one input record was refused; `index` is its position in the caller's sequence, from 0."""

    index: int
    reason: str

    def __str__(self) -> str:
        return f"record {self.index}: {self.reason}"


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """Why AWS did not accept one record: the per-record error code, or the whole request's error."""

    index: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"record {self.index}: {self.code}: {self.message}"


class ProducerError(Exception):
    """Base of every error the producer raises."""


class ProducerConfigurationError(ProducerError, ValueError):
    """The producer was set up inconsistently (no partition key, a FIFO option on a standard queue...)."""


class RecordsRefusedError(ProducerError, ValueError):
    """Some records can never be accepted (too large, no key); nothing was sent."""

    def __init__(self, problems: Sequence[RecordProblem], total: int) -> None:
        self.problems = tuple(problems)
        self.total = total
        super().__init__(
            f"{len(self.problems)} of {total} records refused; nothing was sent:\n" + indented_listing(self.problems)
        )


class UnsentRecordsError(ProducerError):
    """Some records were still not accepted after the last retry; `result` holds those that were."""

    def __init__(self, result: ProduceResult[Any], failures: Sequence[RecordFailure], total: int) -> None:
        self.result = result
        self.failures = tuple(sorted(failures, key=lambda failure: failure.index))
        self.total = total
        super().__init__(
            f"{len(self.failures)} of {total} records could not be put on {result.destination} "
            f"({result.count} were):\n" + indented_listing(self.failures)
        )


def indented_listing(items: Sequence[object]) -> str:
    """One indented line per item, the first MAX_LINES_IN_MESSAGE of them, then how many were left out."""
    lines = [f"  {item}" for item in items[:MAX_LINES_IN_MESSAGE]]
    if len(items) > MAX_LINES_IN_MESSAGE:
        lines.append(f"  ... and {len(items) - MAX_LINES_IN_MESSAGE} more")
    return "\n".join(lines)
