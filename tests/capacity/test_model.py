"""The capacity model of CreditorWatch's article on Lambda at scale, its backlog forecast and the settings
it proposes."""

from __future__ import annotations

import pytest

from capacity import Consumer, SettingBounds, batch_delivery_seconds, forecast
from dispatcher.config import SubscriptionConfig
from infra.registry.timing import batch_time_estimate

ARTICLE_ONE_AT_A_TIME = 1  # max_in_flight in the article's example: one record after another
WIDE_BOUNDS = SettingBounds(batch_size=10_000, concurrency=1_000, max_in_flight=1_000)


@pytest.mark.parametrize(
    ("batch_size", "concurrency", "records_per_second", "shown"),
    [
        (1, 1, 2.0, "2.00"),  # 0.3 s invoke + 0.2 s record = 0.5 s per record
        (1, 5, 10.0, "10.00"),  # five of those at once
        (10, 5, 50 / 2.3, "21.74"),  # 50 records per 2.3 s; the article truncates it to 21.73
    ],
)
def test_reproduces_the_article_example(
    batch_size: int, concurrency: int, records_per_second: float, shown: str
) -> None:
    # Given the article's consumer: 0.3 s to invoke, 0.2 s per record, one record at a time (the defaults)
    consumer = Consumer(batch_size=batch_size, concurrency=concurrency, max_in_flight=ARTICLE_ONE_AT_A_TIME)

    # Then its throughput is the article's figure
    assert consumer.records_per_second == pytest.approx(records_per_second, rel=1e-12)
    assert f"{consumer.records_per_second:.2f}" == shown


def test_the_articles_batch_of_ten_takes_two_seconds_plus_the_invocation() -> None:
    consumer = Consumer(batch_size=10, concurrency=5, max_in_flight=ARTICLE_ONE_AT_A_TIME)

    assert consumer.batch_delivery_seconds == pytest.approx(2.0)
    assert consumer.invocation_seconds == pytest.approx(2.3)


def test_records_go_out_max_in_flight_at_a_time() -> None:
    # 10 records, 4 at a time: rounds of 4, 4 and 2
    assert batch_delivery_seconds(10, 4, 0.2) == pytest.approx(0.6)
    assert batch_delivery_seconds(16, 16, 0.2) == pytest.approx(0.2)
    assert batch_delivery_seconds(17, 16, 0.2) == pytest.approx(0.4)


@pytest.mark.parametrize(("batch_size", "max_in_flight"), [(1, 1), (10, 1), (100, 16), (500, 64), (17, 16)])
def test_batch_time_has_the_shape_of_the_registry_timeout_rule(batch_size: int, max_in_flight: int) -> None:
    # Given a subscription with no rate limit, whose every attempt would time out
    delivery = SubscriptionConfig(
        name="hook",
        endpoint="https://hooks.example.com/",
        signing_secret="team/hook",
        max_in_flight=max_in_flight,
        max_attempts=3,
        request_timeout_seconds=4.0,
    )

    # Then infra.registry.timing's worst case is this model's batch time at that per-record latency
    worst_case, _ = batch_time_estimate(batch_size, delivery)
    assert batch_delivery_seconds(batch_size, max_in_flight, 3 * 4.0) == pytest.approx(worst_case)


def test_the_rate_limit_caps_sustained_throughput_per_invocation() -> None:
    # Given 5 invocations, each held to 50 requests per second by its token bucket
    consumer = Consumer(batch_size=100, concurrency=5, max_in_flight=16, rate_limit_per_second=50)

    assert consumer.records_per_second == pytest.approx(5 * 100 / (0.3 + 7 * 0.2))
    assert consumer.rate_ceiling_per_second == 250
    assert consumer.sustained_records_per_second == 250
    assert consumer.rate_limited


def test_a_consumer_faster_than_the_incoming_rate_keeps_up() -> None:
    # Given the article's 21.74 rec/s consumer and 20 events per second coming in
    result = forecast(Consumer(batch_size=10, concurrency=5, max_in_flight=1), 20, WIDE_BOUNDS)

    # Then the backlog does not grow and nothing needs changing
    assert result.keeps_up
    assert result.backlog_growth_per_second == 0
    assert result.utilisation == pytest.approx(20 / (50 / 2.3))
    assert result.adjustments == ()


def test_exactly_the_incoming_rate_counts_as_keeping_up() -> None:
    assert forecast(Consumer(batch_size=1, concurrency=5, max_in_flight=1), 10, WIDE_BOUNDS).keeps_up


def test_a_slow_consumer_grows_its_backlog_and_iterator_age() -> None:
    # Given the article's consumer and 40 events per second coming in
    result = forecast(Consumer(batch_size=10, concurrency=5, max_in_flight=1), 40, WIDE_BOUNDS)

    # Then 40 - 21.74 records pile up each second: a minute's worth takes the consumer 50.4 s to deliver
    assert not result.keeps_up
    assert result.backlog_growth_per_second == pytest.approx(40 - 50 / 2.3)
    assert result.backlog_seconds_added_per_minute == pytest.approx(50.4)


def test_proposes_the_smallest_single_change_that_keeps_up() -> None:
    # Given the article's consumer and 40 events per second
    result = forecast(Consumer(batch_size=10, concurrency=5, max_in_flight=1), 40, WIDE_BOUNDS)
    proposals = {adjustment.setting: adjustment for adjustment in result.adjustments}

    # Then concurrency 10 (43.48/s) or max_in_flight 3 (4 rounds: 45.45/s) would keep up; no batch size can,
    # since one record at a time caps each invocation at 1 / 0.2 s = 5 rec/s, 25 for five invocations
    assert proposals["concurrency"].needed == 10
    assert proposals["concurrency"].records_per_second == pytest.approx(100 / 2.3)
    assert proposals["max_in_flight"].needed == 3
    assert proposals["max_in_flight"].records_per_second == pytest.approx(50 / 1.1)
    assert proposals["batch_size"].needed is None


def test_a_smaller_batch_can_be_the_answer() -> None:
    # Given batches of 17 with 16 in flight: the 17th record costs a whole extra round
    consumer = Consumer(batch_size=17, concurrency=1, max_in_flight=16)

    # When 30 events per second come in (17 per 0.7 s = 24.3/s; 16 per 0.5 s = 32/s)
    proposals = {adjustment.setting: adjustment for adjustment in forecast(consumer, 30, WIDE_BOUNDS).adjustments}

    # Then the smallest batch that keeps up is below the current one: 15 records in one 0.5 s round
    assert proposals["batch_size"].needed == 15
    assert proposals["batch_size"].records_per_second == pytest.approx(30)


def test_only_concurrency_helps_when_the_rate_limit_ceiling_is_below_the_incoming_rate() -> None:
    # Given 2 invocations held to 20 requests per second each, and 80 events per second coming in
    consumer = Consumer(batch_size=100, concurrency=2, max_in_flight=16, rate_limit_per_second=20)
    result = forecast(consumer, 80, WIDE_BOUNDS)

    # Then the rate limit is named as the cap, and only more concurrency is proposed
    assert result.rate_limit_too_low
    proposals = {adjustment.setting: adjustment.needed for adjustment in result.adjustments}
    assert proposals == {"batch_size": None, "concurrency": 4, "max_in_flight": None}
    assert result.backlog_growth_per_second == pytest.approx(40)


def test_proposals_stay_within_the_bounds() -> None:
    # Given a consumer that would need concurrency 10 when only 8 is allowed
    bounds = SettingBounds(batch_size=10, concurrency=8, max_in_flight=1)
    result = forecast(Consumer(batch_size=10, concurrency=5, max_in_flight=1), 40, bounds)

    # Then no proposal exceeds them
    assert [(adjustment.setting, adjustment.needed) for adjustment in result.adjustments] == [
        ("batch_size", None),
        ("concurrency", None),
        ("max_in_flight", None),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"record_latency_seconds": 0.0}, "record latency must be above 0 s"),
        ({"invoke_overhead_seconds": -1.0}, "invoke overhead must not be negative"),
        ({"rate_limit_per_second": 0.0}, "rate limit must be above 0"),
    ],
)
def test_impossible_consumers_are_refused(fields: dict[str, float], message: str) -> None:
    settings: dict[str, float] = {"batch_size": 1, "concurrency": 1, "max_in_flight": 1} | fields
    with pytest.raises(ValueError, match=message):
        Consumer(**settings)  # type: ignore[arg-type]
