"""`dispatcher plan`: the capacity model of CreditorWatch's article on Lambda at scale, for one
subscription, every subscription, or the flags alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from capacity import (
    DEFAULT_FAILURE_RATE,
    DEFAULT_INVOKE_OVERHEAD_SECONDS,
    DEFAULT_RECORD_LATENCY_SECONDS,
    FUNCTION_MEMORY_MB,
    Adjustment,
    CostPerMillion,
    Forecast,
    Measurement,
    MeasurementError,
    Overrides,
    PlannedConsumer,
    Workload,
    ad_hoc_consumer,
    cost_per_million,
    forecast,
    load_measurement,
    managed_path_per_million,
    subscription_consumer,
)
from capacity.prices import PRICES
from cli import registry_access
from cli.terminal import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Terminal,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)
from infra.registry import limits

if TYPE_CHECKING:
    from cli.terminal import Subcommands

DESCRIPTION = """\
How many records per second a subscription's consumer delivers (the model of CreditorWatch's article
on Lambda at scale):

  records/s = concurrency x batch_size / (invoke_overhead + ceil(batch_size / max_in_flight) x record_latency)

capped by the endpoint's rate_limit_per_second. With --rate, whether the backlog (and so IteratorAge)
grows, how fast, and the smallest batch_size, concurrency or max_in_flight that would keep up.

Which consumer: --subscription NAME plans that one from the registry; --registry DIR alone plans every
subscription in it; neither: the flags alone describe the consumer (unset ones take the registry's
defaults: batch 100, concurrency 5, max_in_flight 16). Flags override the registry's values.

The price of a million deliveries ($/M) comes from what `make bench` measured of the Lambda handler
(capacity/measured.json: its own time per record, AWS requests and log bytes per batch), the batch size,
max_in_flight and record latency above, the function's memory and the share of batches Lambda sends again,
at the us-east-1 prices of capacity/prices.py. --cost alone prices every subscription of the registry,
service by service, beside EventBridge Pipes + API destinations for the same records.
"""
EXAMPLES = """examples:
  dispatcher plan --batch-size 10 --concurrency 5 --max-in-flight 1       # the article's 21.74 rec/s
  dispatcher plan --subscription order-created-to-ledger --rate 80
  dispatcher plan --registry registry --rate 40 --record-latency 0.35
  dispatcher plan --cost --record-latency 0.02                             # every subscription, 20 ms endpoints
"""
# Planning reads the registry's values, not its environment warnings: any environment will do.
PLANNING_ENVIRONMENT: limits.Environment = limits.PERMISSIVE_ENVIRONMENT
SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 3600


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "plan",
        help="records per second a subscription delivers, and whether it keeps up with an incoming rate",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    registry_access.add_registry_option(parser, default=None)
    parser.add_argument("--subscription", metavar="NAME", help="plan this subscription (registry: default registry/)")
    parser.add_argument(
        "--invoke-overhead",
        type=non_negative_float,
        default=DEFAULT_INVOKE_OVERHEAD_SECONDS,
        metavar="SECONDS",
        help=f"time to invoke the function for a batch (default: {DEFAULT_INVOKE_OVERHEAD_SECONDS}, the article's)",
    )
    parser.add_argument(
        "--record-latency",
        type=positive_float,
        default=DEFAULT_RECORD_LATENCY_SECONDS,
        metavar="SECONDS",
        help=f"time to deliver one record to the endpoint (default: {DEFAULT_RECORD_LATENCY_SECONDS}, the article's)",
    )
    parser.add_argument("--batch-size", type=positive_int, metavar="N", help="records per invocation")
    parser.add_argument(
        "--concurrency", type=positive_int, metavar="N", help="invocations at once (reserved_concurrency)"
    )
    parser.add_argument("--max-in-flight", type=positive_int, metavar="N", help="requests at once within an invocation")
    parser.add_argument(
        "--rate-limit", type=positive_float, metavar="PER_SECOND", help="the endpoint's rate_limit_per_second"
    )
    parser.add_argument("--rate", type=non_negative_float, metavar="R", help="incoming events per second")
    parser.add_argument(
        "--chart", type=Path, metavar="FILE.png", help="draw throughput against batch size and concurrency"
    )
    parser.add_argument(
        "--cost",
        action="store_true",
        help="the price of a million deliveries by service (alone: every subscription of the registry)",
    )
    parser.add_argument(
        "--memory-mb",
        type=positive_int,
        default=FUNCTION_MEMORY_MB,
        metavar="MB",
        help=f"the function's memory (default: {FUNCTION_MEMORY_MB}, as deployed)",
    )
    parser.add_argument(
        "--failure-rate",
        type=fraction,
        default=DEFAULT_FAILURE_RATE,
        metavar="SHARE",
        help=f"share of batches Lambda sends again after a failure (default: {DEFAULT_FAILURE_RATE})",
    )
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    overrides = Overrides(
        batch_size=arguments.batch_size,
        concurrency=arguments.concurrency,
        max_in_flight=arguments.max_in_flight,
        rate_limit_per_second=arguments.rate_limit,
        invoke_overhead_seconds=arguments.invoke_overhead,
        record_latency_seconds=arguments.record_latency,
    )
    planned, schedules = _consumers(arguments, overrides)
    if arguments.chart is not None and len(planned) != 1:
        raise CommandError("--chart draws one consumer: add --subscription NAME", EXIT_USAGE)
    measured = _measurement(required=arguments.cost)
    prices = [_price(plan, arguments, measured) if measured is not None else None for plan in planned]
    if arguments.cost:
        assert measured is not None
        terminal.out.print(_cost_table(planned, [price for price in prices if price is not None]))
        terminal.out.print(_cost_note(measured, arguments))
        return EXIT_OK
    forecasts = [
        forecast(plan.consumer, arguments.rate, plan.bounds) if arguments.rate is not None else None for plan in planned
    ]
    terminal.out.print(_table(planned, forecasts, prices, arguments.rate))
    terminal.out.print(_cost_note(measured, arguments))
    for plan, outlook in zip(planned, forecasts, strict=True):
        for note in plan.notes:
            terminal.out.print(Text(f"{plan.name}: {note}", style="dim"))
        if plan.name in schedules:
            terminal.out.print(Text(f"{plan.name}: {_retry_schedule(schedules[plan.name])}", style="dim"))
        if outlook is not None:
            terminal.out.print(_advice(plan, outlook))
    if arguments.chart is not None:
        _draw(planned[0], arguments.chart, arguments.rate)
        terminal.out.print(Text(f"chart written to {arguments.chart}"))
    return EXIT_OK


def _consumers(
    arguments: argparse.Namespace, overrides: Overrides
) -> tuple[list[PlannedConsumer], dict[str, tuple[int, ...]]]:
    """The consumers to plan, and the retry schedule of each one the registry declares."""
    if arguments.subscription is None and arguments.registry is None and not arguments.cost:
        return [ad_hoc_consumer(overrides)], {}
    registry = registry_access.load(
        arguments.registry or registry_access.DEFAULT_REGISTRY, PLANNING_ENVIRONMENT
    ).registry
    subscriptions = [subscription for _, subscription in registry.registrations()]
    if arguments.subscription is not None:
        subscriptions = [subscription for subscription in subscriptions if subscription.name == arguments.subscription]
        if not subscriptions:
            known = ", ".join(subscription.name for _, subscription in registry.registrations())
            raise CommandError(
                f"no subscription {arguments.subscription!r} in the registry; known: {known}", EXIT_USAGE
            )
    return (
        [subscription_consumer(subscription, registry.sources, overrides) for subscription in subscriptions],
        {subscription.name: subscription.retry_schedule_seconds for subscription in subscriptions},
    )


def _retry_schedule(schedule: tuple[int, ...]) -> str:
    """What happens to a record still failing at the end of its invocation (docs/retry-lanes.md)."""
    if not schedule:
        return "no retry lane (retry_schedule_seconds: []): its source sends a record still failing again, and waits"
    waits = ", ".join(str(wait) for wait in schedule)
    rounds = f"{len(schedule)} round{'s' if len(schedule) != 1 else ''}"
    return f"retry lane: {rounds} over {_duration(sum(schedule))} after the source's attempts ({waits} s)"


def _duration(seconds: int) -> str:
    if seconds >= SECONDS_PER_HOUR:
        return f"{seconds / SECONDS_PER_HOUR:.1f} h"
    if seconds >= SECONDS_PER_MINUTE:
        return f"{seconds / SECONDS_PER_MINUTE:.1f} min"
    return f"{seconds} s"


def _table(
    planned: list[PlannedConsumer],
    forecasts: list[Forecast | None],
    prices: list[CostPerMillion | None],
    rate: float | None,
) -> Table:
    table = Table(title="Capacity", title_justify="left")
    table.add_column("subscription")
    for column in ("batch", "concurrency", "in flight", "invoke s", "batch s", "records/s", "rate limit/s", "$/M"):
        table.add_column(column, justify="right")
    if rate is not None:
        table.add_column(f"vs {rate:g}/s in")
    for plan, outlook, price in zip(planned, forecasts, prices, strict=True):
        consumer = plan.consumer
        limit = consumer.rate_limit_per_second
        row = [
            plan.name,
            str(consumer.batch_size),
            str(consumer.concurrency),
            str(consumer.max_in_flight),
            f"{consumer.invoke_overhead_seconds:g}",
            f"{consumer.batch_delivery_seconds:.2f}",
            f"{consumer.sustained_records_per_second:.2f}" + (" (limited)" if consumer.rate_limited else ""),
            "-" if limit is None else f"{limit:g}",
            "-" if price is None else _dollars(price.total),
        ]
        if outlook is not None:
            row.append(
                f"keeps up ({outlook.utilisation:.0%} used)"
                if outlook.keeps_up
                else f"falls behind +{outlook.backlog_growth_per_second:.2f}/s"
            )
        table.add_row(*row)
    return table


def _measurement(required: bool) -> Measurement | None:
    """The benchmark's measurement; without one, prices are left out (and --cost cannot run)."""
    try:
        return load_measurement()
    except MeasurementError as error:
        if required:
            raise CommandError(str(error), EXIT_FAILED) from None
        return None


def _price(plan: PlannedConsumer, arguments: argparse.Namespace, measured: Measurement) -> CostPerMillion:
    consumer = plan.consumer
    workload = Workload(
        batch_size=consumer.batch_size,
        max_in_flight=consumer.max_in_flight,
        record_latency_seconds=consumer.record_latency_seconds,
        memory_mb=arguments.memory_mb,
        failure_rate=arguments.failure_rate,
        source=plan.source,
        rate_limit_per_second=consumer.rate_limit_per_second,
    )
    return cost_per_million(workload, measured)


def _cost_table(planned: list[PlannedConsumer], prices: list[CostPerMillion]) -> Table:
    table = Table(title="US$ per million deliveries", title_justify="left")
    table.add_column("subscription")
    columns = ("source", "batch", "billed s", "Lambda", "requests", "DynamoDB", "SQS", "Logs", "KMS", "total")
    for column in (*columns, "Pipes + API dest.", "share"):
        table.add_column(column, justify="right")
    for plan, price in zip(planned, prices, strict=True):
        table.add_row(
            plan.name,
            plan.source.value,
            str(plan.consumer.batch_size),
            f"{price.billed_seconds:.3f}",
            *(
                _dollars(amount)
                for amount in (
                    price.lambda_duration,
                    price.lambda_requests,
                    price.dynamodb,
                    price.sqs,
                    price.logs,
                    price.kms,
                    price.total,
                    price.managed_path,
                )
            ),
            f"{price.share_of_managed_path:.0%}",
        )
    return table


def _cost_note(measured: Measurement | None, arguments: argparse.Namespace) -> Text:
    if measured is None:
        return Text("$/M: no benchmark measurement (capacity/measured.json): run `make bench`", style="dim")
    return Text(
        f"$/M: US$ per million deliveries at {arguments.memory_mb} MB arm64, {arguments.failure_rate:g} of batches "
        f"sent again, {arguments.record_latency:g} s per request; the handler as `make bench` measured it on "
        f"{measured.measured_on} ({measured.machine}); {PRICES.region} prices of {PRICES.dated.isoformat()}. "
        f"EventBridge Pipes + API destinations: {_dollars(managed_path_per_million())}.",
        style="dim",
    )


def _dollars(amount: float) -> str:
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


def _advice(plan: PlannedConsumer, outlook: Forecast) -> Text:
    rate = f"{outlook.incoming_per_second:g}/s"
    if outlook.keeps_up:
        return Text(
            f"{plan.name} keeps up with {rate}: it sustains {outlook.throughput_per_second:.2f} records/s, so the "
            "backlog and IteratorAge stay flat.",
            style="green",
        )
    lines = [
        f"{plan.name} falls behind {rate}: it sustains {outlook.throughput_per_second:.2f} records/s, so the backlog "
        f"grows by {outlook.backlog_growth_per_second:.2f} records/s and the oldest waiting record (IteratorAge) "
        f"gets {outlook.backlog_seconds_added_per_minute:.1f} s older every minute."
    ]
    if outlook.rate_limit_too_low:
        consumer = outlook.consumer
        lines.append(
            f"  The rate limit caps it: {consumer.concurrency} invocations at {consumer.rate_limit_per_second:g}/s "
            f"each send at most {consumer.rate_ceiling_per_second:g}/s, below {rate}. Batch size and max_in_flight "
            "cannot help; more concurrency or a higher rate_limit_per_second (agreed with the endpoint's owners) can."
        )
    lines.extend(f"  {_proposal(plan, adjustment)}" for adjustment in outlook.adjustments)
    return Text("\n".join(lines), style="yellow")


def _proposal(plan: PlannedConsumer, adjustment: Adjustment) -> str:
    if adjustment.needed is None or adjustment.records_per_second is None:
        why = f" ({plan.batch_size_bound_reason})" if adjustment.setting == "batch_size" else ""
        return f"no {adjustment.setting} up to {adjustment.bound} keeps up{why}"
    return (
        f"{adjustment.setting} {adjustment.needed} (now {adjustment.current}) would deliver "
        f"{adjustment.records_per_second:.2f} records/s"
    )


def _draw(plan: PlannedConsumer, path: Path, rate: float | None) -> None:
    # Imported on demand: the chart pulls in matplotlib, which only --chart needs.
    from capacity.chart import draw_throughput_chart

    try:
        draw_throughput_chart(plan.consumer, path, plan.bounds.batch_size, rate, title=f"{plan.name} throughput")
    except OSError as error:
        raise CommandError(f"cannot write the chart to {path}: {error.strerror}", EXIT_USAGE) from None
