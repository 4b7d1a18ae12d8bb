"""The demo's key outage and retry schedule: chosen so the outage's keys wait in the lanes and are delivered
within the run, and refused with a clear error when asked for what the demo cannot do."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.main import main
from dispatcher.config import SubscriptionConfig
from local.demo import (
    MAX_OUTAGE_SECONDS,
    PARTITION_KEYS,
    SPARE_RETRY_ROUNDS,
    demo_retry_schedule,
    outage_keys,
)

ENDPOINT = {"name": "demo", "endpoint": "https://receiver.example.com/hooks/demo"}


@given(st.floats(min_value=0.0, max_value=MAX_OUTAGE_SECONDS))
def test_the_demo_schedule_outlasts_the_outage_and_is_one_the_registry_takes(outage_seconds: float) -> None:
    # Given any outage the demo takes
    # When the demo chooses its subscriptions' retry schedule
    schedule = demo_retry_schedule(outage_seconds)
    # Then the registry's model takes it, and a record handed to the lane when the outage began still has
    # SPARE_RETRY_ROUNDS rounds after the outage ended
    SubscriptionConfig.model_validate(ENDPOINT | {"retry_schedule_seconds": schedule})
    assert sum(schedule[:-SPARE_RETRY_ROUNDS]) >= outage_seconds


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (0.01, 1), (0.25, 2), (1.0, PARTITION_KEYS)])
def test_the_outage_takes_a_share_of_the_demo_keys_and_at_least_one(rate: float, expected: int) -> None:
    # When the demo chooses the keys of an outage of a share `rate` of its keys
    keys = outage_keys(rate, seed=3)
    # Then it takes that share of its keys (at least one when the rate is above 0), the same for the same seed
    assert len(keys) == expected
    assert keys <= {f"customer-{number}" for number in range(PARTITION_KEYS)}
    assert keys == outage_keys(rate, seed=3)


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--outage-seconds", "0"], "--outage-seconds: must be above 0, got 0"),
        (["--outage-seconds", "7200"], f"--outage-seconds: must be at most {MAX_OUTAGE_SECONDS:g}, got 7200"),
        (["--key-outage-rate", "1.5"], "--key-outage-rate: must be within 0..1, got 1.5"),
    ],
)
def test_an_outage_the_demo_cannot_run_is_refused_naming_the_option(
    arguments: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the demo is asked for it, Then it exits with a usage error naming the option and the value
    assert main(["demo", *arguments]) == 2
    assert complaint in capsys.readouterr().err
