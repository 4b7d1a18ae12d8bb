"""The retry lane's registry fields: retry_schedule_seconds (from the function's SubscriptionConfig) and the
registry-only alarm_retry_age_seconds, with their defaults, bounds and the messages a service team reads."""

from __future__ import annotations

import pytest

from dispatcher.config import (
    DEFAULT_RETRY_SCHEDULE_SECONDS,
    MAX_RETRY_ROUNDS,
    MAX_RETRY_SCHEDULE_TOTAL_SECONDS,
)
from infra.registry import load_registry
from tests.registry.builders import Document, problems_in, stream_subscription, team
from tests.registry.conftest import RegistryWriter

AT = "registry/teams/payments.yaml: subscription 'hook': "
WEEK = 7 * 24 * 3600


def test_a_subscription_gets_the_default_schedule_and_an_hour_before_its_lane_alarms(
    write_registry: RegistryWriter,
) -> None:
    # Given a subscription that names neither field
    root = write_registry(team("payments", stream_subscription()))

    # When the registry is loaded
    ((_, subscription),) = load_registry(root, "prod").registry.registrations()

    # Then it retries over about 27.6 hours in 6 rounds, and its lane alarms after an hour
    assert (
        subscription.retry_schedule_seconds == DEFAULT_RETRY_SCHEDULE_SECONDS == (300, 1800, 7200, 18000, 36000, 36000)
    )
    assert sum(subscription.retry_schedule_seconds) == 99_300
    assert subscription.alarm_retry_age_seconds == 3600
    # and the function receives the schedule, but not the registry-only alarm threshold
    delivery = subscription.delivery_config().model_dump()
    assert delivery["retry_schedule_seconds"] == DEFAULT_RETRY_SCHEDULE_SECONDS
    assert "alarm_retry_age_seconds" not in delivery


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param([], id="no lane"),
        pytest.param([1], id="one round of one second"),
        pytest.param([1] * MAX_RETRY_ROUNDS, id="the most rounds"),
        pytest.param([WEEK - 1, 1], id="a week in all"),
    ],
)
def test_schedules_within_the_bounds_are_accepted(write_registry: RegistryWriter, schedule: list[int]) -> None:
    # Given a schedule at the edge of what is allowed
    root = write_registry(team("payments", stream_subscription(retry_schedule_seconds=schedule)))

    # When the registry is loaded
    ((_, subscription),) = load_registry(root, "prod").registry.registrations()

    # Then it is taken as written
    assert subscription.retry_schedule_seconds == tuple(schedule)


BAD_FIELDS: list[tuple[str, Document, str]] = [
    (
        "a wait of zero seconds",
        {"retry_schedule_seconds": [300, 0]},
        AT + "retry_schedule_seconds.1: 0 is out of range; allowed: at least 1",
    ),
    (
        "a negative wait",
        {"retry_schedule_seconds": [-5]},
        AT + "retry_schedule_seconds.0: -5 is out of range; allowed: at least 1",
    ),
    (
        "more rounds than allowed",
        {"retry_schedule_seconds": [60] * (MAX_RETRY_ROUNDS + 1)},
        AT + f"retry_schedule_seconds: has {MAX_RETRY_ROUNDS + 1} items; allowed: at most {MAX_RETRY_ROUNDS} items",
    ),
    (
        "more than a week in all",
        {"retry_schedule_seconds": [WEEK, 1]},
        AT + f"retry_schedule_seconds: waits add up to {WEEK + 1} s, more than {MAX_RETRY_SCHEDULE_TOTAL_SECONDS} s "
        f"(7 days) (got [{WEEK}, 1])",
    ),
    (
        "a single number instead of a list",
        {"retry_schedule_seconds": 300},
        AT + "retry_schedule_seconds: 300 is not a list",
    ),
    (
        "a wait written with a unit",
        {"retry_schedule_seconds": ["5m"]},
        AT + "retry_schedule_seconds.0: Input should be a valid integer, unable to parse string as an integer "
        "(got '5m')",
    ),
    (
        "a fractional wait",
        {"retry_schedule_seconds": [1.5]},
        AT + "retry_schedule_seconds.0: Input should be a valid integer, got a number with a fractional part (got 1.5)",
    ),
    (
        "a lane alarm below SQS's metric period",
        {"alarm_retry_age_seconds": 59},
        AT + "alarm_retry_age_seconds: 59 is out of range; allowed: 60 to 1209600",
    ),
    (
        "a lane alarm beyond the lane's retention",
        {"alarm_retry_age_seconds": 1_209_601},
        AT + "alarm_retry_age_seconds: 1209601 is out of range; allowed: 60 to 1209600",
    ),
    (
        "a lane alarm without a lane",
        {"retry_schedule_seconds": [], "alarm_retry_age_seconds": 600},
        AT + "alarm_retry_age_seconds: has no effect: retry_schedule_seconds is [], so the subscription has no "
        "retry lane; allowed: omit it, or give a retry schedule",
    ),
]


@pytest.mark.parametrize(
    ("fields", "expected"), [pytest.param(fields, expected, id=case) for case, fields, expected in BAD_FIELDS]
)
def test_a_wrong_retry_lane_setting_is_reported_naming_the_field_and_what_is_allowed(
    write_registry: RegistryWriter, fields: Document, expected: str
) -> None:
    # Given a subscription with one wrong retry-lane setting
    root = write_registry(team("payments", stream_subscription(**fields)))

    # When the registry is validated
    # Then exactly that problem is reported
    assert problems_in(root) == [expected]


def test_every_wrong_wait_of_a_schedule_is_reported_at_once(write_registry: RegistryWriter) -> None:
    # Given a schedule with two waits out of range
    root = write_registry(team("payments", stream_subscription(retry_schedule_seconds=[0, 300, -1])))

    # When the registry is validated
    # Then both are named by their position
    assert problems_in(root) == [
        AT + "retry_schedule_seconds.0: 0 is out of range; allowed: at least 1",
        AT + "retry_schedule_seconds.2: -1 is out of range; allowed: at least 1",
    ]
