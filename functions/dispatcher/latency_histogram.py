"""An invocation's delivery latencies as one EMF metric value: at most MAX_VALUES distinct values, each with
the number of deliveries it stands for (CloudWatch's histogram form {"Values": [...], "Counts": [...]},
which EMF accepts as a metric's value and CloudWatch aggregates like as many separate values: AWS's own EMF
writer, awslabs/metrique, emits it), instead of one value per record.

Latencies are kept to a tenth of a millisecond (finer is noise for a network round trip, and every digit is
a byte CloudWatch Logs bills). Up to MAX_VALUES distinct latencies are published as they are. Beyond that the
sorted latencies are cut into runs of (almost) equal length, each published as its mean with its length, the
fastest and the slowest kept as they are: SampleCount, Minimum and Maximum stay exact, Sum and Average exact to
the tenth of a millisecond, and a percentile moves by less than one run, 1/(MAX_VALUES - 2) of the
invocation's deliveries.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import TypedDict

MAX_VALUES = 100  # distinct values one EMF metric may carry
DECIMALS = 1  # digits of a millisecond kept: tenths


class Histogram(TypedDict):
    Values: list[float]
    Counts: list[int]


def latency_histogram(latencies_ms: Sequence[float]) -> Histogram:
    """The histogram of `latencies_ms` (not empty), values in ascending order."""
    if not latencies_ms:
        raise ValueError("no latencies to publish")
    ordered = sorted(round(latency, DECIMALS) for latency in latencies_ms)
    counted = sorted(Counter(ordered).items())
    if len(counted) <= MAX_VALUES:
        return {"Values": [value for value, _ in counted], "Counts": [count for _, count in counted]}
    middle = ordered[1:-1]
    runs = MAX_VALUES - 2
    bounds = [len(middle) * run // runs for run in range(runs + 1)]
    chunks = [middle[start:end] for start, end in itertools.pairwise(bounds)]
    return {
        "Values": [ordered[0], *(round(sum(chunk) / len(chunk), DECIMALS) for chunk in chunks), ordered[-1]],
        "Counts": [1, *(len(chunk) for chunk in chunks), 1],
    }
