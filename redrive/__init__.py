"""Re-delivering what a subscription parked (its parked-records queue and, for streams, its on-failure store)
through its own function, at the records' original source positions, losing and duplicating nothing."""

from redrive.aws_target import aws_target
from redrive.engine import (
    HeldRecords,
    Outcome,
    Plan,
    PlannedRecord,
    ProgressListener,
    Redriver,
    RedriveSummary,
)
from redrive.errors import NotRedrivableError, RedriveError, TargetNotFoundError
from redrive.local_target import local_target
from redrive.parked import ParkedRecord
from redrive.target import Invoke, RedriveTarget

__all__ = [
    "HeldRecords",
    "Invoke",
    "NotRedrivableError",
    "Outcome",
    "ParkedRecord",
    "Plan",
    "PlannedRecord",
    "ProgressListener",
    "RedriveError",
    "RedriveSummary",
    "RedriveTarget",
    "Redriver",
    "TargetNotFoundError",
    "aws_target",
    "local_target",
]
