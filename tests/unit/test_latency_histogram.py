"""DeliveryLatency as one histogram per invocation: nothing counted twice or lost, and each published value
stands for a run of neighbouring latencies, so percentiles move by at most one run."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.latency_histogram import MAX_VALUES, latency_histogram

TENTH_MS = 0.1
latencies = st.lists(st.floats(min_value=0.0, max_value=900_000.0), min_size=1, max_size=3_000)


@given(latencies)
def test_the_histogram_keeps_count_sum_minimum_and_maximum(measured: list[float]) -> None:
    # When an invocation's latencies are published as a histogram
    histogram = latency_histogram(measured)

    # Then CloudWatch's SampleCount, Sum, Minimum and Maximum are those of the latencies, to a tenth of a ms
    assert sum(histogram["Counts"]) == len(measured)
    published_sum = sum(value * count for value, count in zip(histogram["Values"], histogram["Counts"], strict=True))
    assert math.isclose(published_sum, sum(measured), rel_tol=1e-9, abs_tol=TENTH_MS * len(measured))
    assert histogram["Values"][0] == round(min(measured), 1)
    assert histogram["Values"][-1] == round(max(measured), 1)
    assert len(histogram["Values"]) <= MAX_VALUES


@given(latencies)
def test_each_value_stands_for_a_short_run_of_neighbouring_latencies(measured: list[float]) -> None:
    # When an invocation's latencies are published as a histogram
    histogram = latency_histogram(measured)

    # Then the values ascend, each lies within the run of sorted latencies (to the tenth of a ms) it counts for,
    # and no run of different latencies is longer than an equal share of the invocation (so a percentile moves
    # by at most that many ranks)
    ordered = sorted(round(latency, 1) for latency in measured)
    longest_run = math.ceil(len(measured) / (MAX_VALUES - 2))
    first_rank = 0
    for value, count in zip(histogram["Values"], histogram["Counts"], strict=True):
        run = ordered[first_rank : first_rank + count]
        assert run[0] - TENTH_MS <= value <= run[-1] + TENTH_MS
        assert count <= longest_run or len(set(run)) == 1
        first_rank += count
    assert histogram["Values"] == sorted(histogram["Values"])


def test_a_small_invocation_is_published_to_the_tenth_of_a_millisecond() -> None:
    # When three deliveries took 20.04, 35.16 and 19.96 ms
    histogram = latency_histogram([20.04, 35.16, 19.96])

    # Then the histogram says so, value by value
    assert histogram == {"Values": [20.0, 35.2], "Counts": [2, 1]}


def test_an_invocation_without_deliveries_has_no_histogram() -> None:
    with pytest.raises(ValueError, match="no latencies"):
        latency_histogram([])
