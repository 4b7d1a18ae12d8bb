"""What can go wrong in a redrive, as one small hierarchy the command line maps to messages and exit codes."""

from __future__ import annotations


class RedriveError(Exception):
    """Base of the redrive package's errors."""


class TargetNotFoundError(RedriveError):
    """The subscription's function, parked-records queue or on-failure store could not be found."""


class NotRedrivableError(RedriveError):
    """A parked record cannot be rebuilt into the event it came from; it is kept and reported as skipped."""
