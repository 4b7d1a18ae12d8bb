"""EMF lines a function prints become the counters of its invocation; any other line a function prints, however
it is shaped, is only a log line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.workers import add_emf_metrics

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def emf_line(metrics: list[dict[str, str]], **values: object) -> str:
    return json.dumps({"_aws": {"CloudWatchMetrics": [{"Namespace": "N", "Metrics": metrics}]}, **values})


def test_count_metrics_are_summed_and_other_units_left_out() -> None:
    # Given an EMF line declaring a Count metric with several values, one without a unit, and a latency
    line = emf_line(
        [{"Name": "Delivered", "Unit": "Count"}, {"Name": "Parked"}, {"Name": "LatencyMs", "Unit": "Milliseconds"}],
        Delivered=[2, 3],
        Parked=1,
        LatencyMs=250,
    )
    sums: dict[str, float] = {"Delivered": 1.0}
    # When it is read
    add_emf_metrics(line, sums)
    # Then the counts are added to what was there, and the latency is not summed
    assert sums == {"Delivered": 6.0, "Parked": 1.0}


@pytest.mark.adversarial
@given(aws=JSON_VALUES, value=JSON_VALUES)
def test_any_shape_under_the_emf_key_is_read_without_raising(aws: object, value: object) -> None:
    # Given a line a function printed that looks like EMF but is shaped in any way at all
    line = json.dumps({"_aws": aws, "Delivered": value})
    sums: dict[str, float] = {}
    # When it is read
    add_emf_metrics(line, sums)
    # Then nothing raises, and whatever was counted is a number under a declared name
    assert set(sums) <= {"Delivered"}
    assert all(isinstance(total, float | int) for total in sums.values())
