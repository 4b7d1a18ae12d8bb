"""`dispatcher plan`: the figures of CreditorWatch's article on Lambda at scale from flags,
a registry subscription, --rate advice and the chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from capacity import cost
from capacity.cost import Measurement, Workload
from cli.main import main
from tests.capacity.test_cost import MEASURED
from tests.cli.conftest import SHIPPED_REGISTRY, RegistryCopier

SEED = ["--batch-size", "10", "--concurrency", "5", "--max-in-flight", "1"]


def plain(text: str) -> str:
    """Output with runs of whitespace folded, so table padding and line breaks do not matter."""
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("flags", "records_per_second"),
    [
        (["--batch-size", "1", "--concurrency", "1", "--max-in-flight", "1"], "2.00"),
        (["--batch-size", "1", "--concurrency", "5", "--max-in-flight", "1"], "10.00"),
        (SEED, "21.74"),
    ],
)
def test_the_flags_alone_reproduce_the_seed(
    flags: list[str], records_per_second: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the article's consumer is described by flags (0.3 s invoke and 0.2 s per record are the defaults)
    exit_code = main(["plan", *flags])

    # Then its throughput is the article's
    out = plain(capsys.readouterr().out)
    assert exit_code == 0
    assert f"(flags) │ {flags[1]} │ {flags[3]} │ 1 │ 0.3 │" in out
    assert f"│ {records_per_second} │" in out


def test_with_a_rate_it_says_how_fast_the_backlog_grows_and_what_would_keep_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When the article's consumer faces 40 events per second
    exit_code = main(["plan", *SEED, "--rate", "40"])

    # Then it falls behind by 18.26 records/s, IteratorAge climbs 50.4 s a minute, and two changes would help
    out = plain(capsys.readouterr().out)
    assert exit_code == 0
    assert "falls behind +18.26/s" in out
    assert "the backlog grows by 18.26 records/s and the oldest waiting record (IteratorAge) gets 50.4 s older" in out
    assert "concurrency 10 (now 5) would deliver 43.48 records/s" in out
    assert "max_in_flight 3 (now 1) would deliver 45.45 records/s" in out
    assert "no batch_size up to 10000 keeps up" in out


def test_a_consumer_that_keeps_up_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *SEED, "--rate", "20"]) == 0

    out = plain(capsys.readouterr().out)
    assert "keeps up (92% used)" in out
    assert "the backlog and IteratorAge stay flat" in out


def test_a_registry_subscription_brings_its_own_settings_and_rate_limit(capsys: pytest.CaptureFixture[str]) -> None:
    # When order-created-to-ledger (batch 100, concurrency 5, 16 in flight, 50/s per invocation) faces 300 events/s
    exit_code = main(
        ["plan", "--registry", str(SHIPPED_REGISTRY), "--subscription", "order-created-to-ledger", "--rate", "300"]
    )

    # Then its throughput is capped at 5 x 50/s, and the rate limit is named as the cap
    out = plain(capsys.readouterr().out)
    assert exit_code == 0
    assert "order-created-to-ledger │ 100 │ 5 │ 16 │ 0.3 │ 1.40 │ 250.00 (limited) │ 50 │" in out
    assert "The rate limit caps it: 5 invocations at 50/s each send at most 250/s, below 300/s" in out


def test_flags_override_the_registry_subscription(capsys: pytest.CaptureFixture[str]) -> None:
    subscription = ["--registry", str(SHIPPED_REGISTRY), "--subscription", "order-created-to-ledger"]

    exit_code = main(["plan", *subscription, *SEED, "--rate-limit", "1000"])

    assert exit_code == 0
    assert "order-created-to-ledger │ 10 │ 5 │ 1 │ 0.3 │ 2.00 │ 21.74 │ 1000 │" in plain(capsys.readouterr().out)


def test_the_whole_registry_is_planned_with_its_notes(capsys: pytest.CaptureFixture[str]) -> None:
    # When every subscription is planned, inventory's two shards asked to run five batches at once
    assert main(["plan", "--registry", str(SHIPPED_REGISTRY), "--concurrency", "5"]) == 0

    # Then all six are listed, and the shard cap is explained
    out = plain(capsys.readouterr().out)
    for name in ("orders-to-warehouse", "stock-to-storefront", "invoices-to-ledger", "refunds-to-psp"):
        assert name in out
    assert "stock-to-storefront: concurrency 2, not 5: stream inventory has 2 shards x parallelization_factor 1" in out


def test_an_unknown_subscription_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--registry", str(SHIPPED_REGISTRY), "--subscription", "nope"]) == 2

    err = plain(capsys.readouterr().err)
    assert "no subscription 'nope' in" in err
    assert "known: orders-to-warehouse," in err


def test_the_chart_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "throughput.png"

    assert main(["plan", *SEED, "--rate", "40", "--chart", str(chart)]) == 0

    assert chart.read_bytes().startswith(b"\x89PNG")
    assert f"chart written to {chart}" in plain(capsys.readouterr().out)


def test_the_chart_needs_a_single_consumer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "throughput.png"

    assert main(["plan", "--registry", str(SHIPPED_REGISTRY), "--chart", str(chart)]) == 2

    assert "--chart draws one consumer" in capsys.readouterr().err
    assert not chart.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--record-latency", "0"], "argument --record-latency: must be above 0, got 0"),
        (["--rate", "-1"], "argument --rate: must not be negative, got -1"),
        (["--concurrency", "five"], "argument --concurrency: must be a whole number, got 'five'"),
        (["--rate", "nan"], "argument --rate: must be a number, got 'nan'"),
    ],
)
def test_bad_numbers_are_usage_errors(flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *flags]) == 2
    assert message in capsys.readouterr().err


# -- the price of a million deliveries ----------------------------------------------------------------


@pytest.fixture
def measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Measurement:
    """A benchmark measurement of known numbers in place of the committed one."""
    path = tmp_path / "measured.json"
    MEASURED.save(path)
    monkeypatch.setattr(cost, "MEASUREMENT_PATH", path)
    return MEASURED


def test_every_consumer_planned_is_priced_per_million_deliveries(
    measured: Measurement, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the benchmark's own batches are planned (100 records, 32 in flight, a 20 ms endpoint)
    exit_code = main(["plan", "--batch-size", "100", "--max-in-flight", "32", "--record-latency", "0.02"])

    # Then the table prices them as capacity.cost works them out, and names where the figures came from
    out = plain(capsys.readouterr().out)
    expected = cost.cost_per_million(Workload(100, 32, 0.02, cost.FUNCTION_MEMORY_MB), measured)
    assert exit_code == 0
    assert f"│ ${expected.total:.4f} │" in out
    assert "$/M: US$ per million deliveries at 512 MB arm64, 0.01 of batches sent again, 0.02 s per request" in out
    assert "measured it on 2026-11-27 (test machine); us-east-1 prices of" in out
    assert "EventBridge Pipes + API destinations: $0.6000" in out


def test_cost_alone_prices_every_subscription_of_the_registry_by_service(
    measured: Measurement, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the shipped registry as the default one
    monkeypatch.chdir(SHIPPED_REGISTRY.parent)

    # When the price is asked for alone, with 20 ms endpoints
    exit_code = main(["plan", "--cost", "--record-latency", "0.02"])

    # Then every subscription has its line, by service, beside the managed path and its share of it
    out = plain(capsys.readouterr().out)
    assert exit_code == 0
    assert "US$ per million deliveries" in out
    for name, source in (
        ("orders-to-warehouse", "kinesis"),
        ("invoices-to-ledger", "sqs"),
        ("refunds-to-psp", "sqs-fifo"),
    ):
        assert f"│ {name} │ {source} │" in out
    assert "Lambda ┃ requests ┃ DynamoDB ┃ SQS ┃ Logs ┃ KMS ┃ total ┃ Pipes + API dest. ┃ share" in out
    assert out.count("│ $0.6000 │") == 7


def test_the_memory_and_failure_rate_are_the_readers_to_choose(
    measured: Measurement, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the same consumer is priced at 1,769 MB (a whole vCPU) with a batch in five sent again
    flags = ["--batch-size", "100", "--max-in-flight", "32", "--record-latency", "0.02", "--cost"]
    assert main(["plan", *flags, "--memory-mb", "1769", "--failure-rate", "0.2"]) == 0

    # Then the price is worked out with them
    out = plain(capsys.readouterr().out)
    expected = cost.cost_per_million(Workload(100, 32, 0.02, 1769, failure_rate=0.2), measured)
    assert f"│ ${expected.total:.4f} │" in out
    assert "at 1769 MB arm64, 0.2 of batches sent again" in out


def test_without_a_measurement_the_plan_says_to_run_the_benchmark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no benchmark measurement
    monkeypatch.setattr(cost, "MEASUREMENT_PATH", tmp_path / "absent.json")

    # Then the plan still answers, unpriced, and --cost fails naming what to run
    assert main(["plan", *SEED]) == 0
    assert "no benchmark measurement (capacity/measured.json): run `make bench`" in plain(capsys.readouterr().out)
    assert main(["plan", "--cost", *SEED]) == 1
    assert "run `make bench` first" in plain(capsys.readouterr().err)


def test_a_failure_rate_outside_zero_to_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--failure-rate", "1.5"]) == 2
    assert "argument --failure-rate: must be within 0..1, got 1.5" in capsys.readouterr().err


def test_each_registry_subscription_shows_its_retry_schedule_and_its_total(
    copy_registry: RegistryCopier, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given one subscription with the default schedule, one with a short one and one without a lane
    root = copy_registry({"teams/payments.yaml": RETRY_SCHEDULES_TEAM})

    # When the registry is planned
    exit_code = main(["plan", "--registry", str(root)])

    # Then each says how long its lane retries, or that it has none
    out = plain(capsys.readouterr().out)
    assert exit_code == 0
    assert (
        "ledger-hook: retry lane: 6 rounds over 27.6 h after the source's attempts "
        "(300, 1800, 7200, 18000, 36000, 36000 s)" in out
    )
    assert "quick-hook: retry lane: 2 rounds over 1.5 min after the source's attempts (30, 60 s)" in out
    assert (
        "blocking-hook: no retry lane (retry_schedule_seconds: []): its source sends a record still failing again, "
        "and waits" in out
    )


RETRY_SCHEDULES_TEAM = """\
team: payments
alerts_email: payments-oncall@example.com
subscriptions:
  - name: ledger-hook
    source: stream/orders
    endpoint: https://ledger.example.com/hooks
  - name: quick-hook
    source: stream/orders
    endpoint: https://ledger.example.com/quick
    retry_schedule_seconds: [30, 60]
  - name: blocking-hook
    source: stream/inventory
    endpoint: https://ledger.example.com/blocking
    retry_schedule_seconds: []
"""
