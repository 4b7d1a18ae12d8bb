"""`dispatcher redrive`: re-deliver what a subscription parked, through its own function."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cli import registry_access
from cli.terminal import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, Terminal, positive_float, positive_int
from infra.registry import limits
from local.aws import DEFAULT_PORT
from local.synth import LOCAL_ENVIRONMENT, SynthesisError
from redrive import (
    DEFAULT_RATE_PER_SECOND,
    Outcome,
    PlannedRecord,
    RedriveError,
    Redriver,
    RedriveSummary,
    RedriveTarget,
    aws_target,
    local_target,
)
from redrive.local_target import embedded_aws_port

if TYPE_CHECKING:
    from cli.terminal import Subcommands

DEFAULT_LOCAL_ENDPOINT = f"http://127.0.0.1:{DEFAULT_PORT}"
PROBLEMS_SHOWN = 20  # kept records explained on stderr; the rest are counted

DESCRIPTION = """\
Re-deliver the records the subscription parked in its dead-letter queue (<env>-SUBSCRIPTION-parked) and,
for a stream subscription, the batches in its on-failure bucket. Each record goes through the subscription's
own function, rebuilt at its original source position, so the endpoint receives it with its ORIGINAL
webhook-id; nothing is put back on the stream or queue (other subscriptions would see it again).

A dead-letter message is deleted only after its re-delivery succeeded, and then the payload it points at in the
parked-payload bucket (payload_s3), if it had one. A record the endpoint refuses again is parked again as a new
message (and not retried in the same run); one that still fails is kept. An on-failure object is replaced by
one holding only the records that failed again.

Interrupted at any point (Ctrl-C, kill), nothing is lost: a record interrupted between its delivery and its
delete is delivered again by the next run with the same webhook-id, which receivers dedupe."""

EXAMPLES = """examples:
  dispatcher redrive orders-to-warehouse --env prod --dry-run
  dispatcher redrive invoices-to-ledger --env staging --rate 5 --limit 100
  dispatcher redrive orders-to-warehouse --local       # against a running `dispatcher local`

exit status: 0 every record was redriven or parked again, 1 some are still failing or were skipped,
2 the command line is wrong"""


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "redrive",
        help="re-deliver a subscription's parked records (dead-letter queue, on-failure bucket)",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("subscription", metavar="SUBSCRIPTION", help="the subscription's registry name")
    parser.add_argument(
        "--env",
        choices=limits.ENVIRONMENTS,
        default=LOCAL_ENVIRONMENT,
        help=f"the deployed environment (default: {LOCAL_ENVIRONMENT}); AWS credentials and region from the "
        "standard environment",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="redrive on a running `dispatcher local`: its embedded AWS at --endpoint-url, the function run here",
    )
    registry_access.add_registry_option(parser)
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help=f"AWS endpoint (default: $AWS_ENDPOINT_URL; with --local: {DEFAULT_LOCAL_ENDPOINT})",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be redriven; change nothing")
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=DEFAULT_RATE_PER_SECOND,
        metavar="R",
        help=f"records re-delivered per second (default: {DEFAULT_RATE_PER_SECOND:g})",
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="redrive at most N records")
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    target = _target_factory(arguments)
    try:
        return asyncio.run(_redrive(arguments, terminal, target))
    except RedriveError as error:
        raise CommandError(str(error), EXIT_FAILED) from None
    except SynthesisError as error:
        raise CommandError(f"the registry does not synthesize: {error}", EXIT_FAILED) from None
    except (BotoCoreError, ClientError) as error:
        raise CommandError(f"AWS: {error}", EXIT_FAILED) from None


def _target_factory(arguments: argparse.Namespace) -> Callable[[], AbstractAsyncContextManager[RedriveTarget]]:
    """Checks the options now (exit 2), connects later."""
    if not arguments.local:
        return lambda: _deployed(arguments.subscription, arguments.env, arguments.endpoint_url)
    if arguments.env != LOCAL_ENVIRONMENT:
        raise CommandError(f"--local runs the {LOCAL_ENVIRONMENT} environment; drop --env", EXIT_USAGE)
    if not arguments.registry.is_dir():
        raise CommandError(f"registry directory {str(arguments.registry)!r} does not exist", EXIT_USAGE)
    endpoint_url = arguments.endpoint_url or DEFAULT_LOCAL_ENDPOINT
    try:
        embedded_aws_port(endpoint_url)
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    return lambda: local_target(arguments.subscription, arguments.registry, endpoint_url)


@asynccontextmanager
async def _deployed(
    subscription: str, environment: limits.Environment, endpoint_url: str | None
) -> AsyncIterator[RedriveTarget]:
    yield await asyncio.to_thread(aws_target, subscription, environment, endpoint_url)


async def _redrive(
    arguments: argparse.Namespace,
    terminal: Terminal,
    target_factory: Callable[[], AbstractAsyncContextManager[RedriveTarget]],
) -> int:
    async with target_factory() as target:
        if arguments.dry_run:
            planned = await Redriver(target, rate_per_second=arguments.rate, limit=arguments.limit).plan()
            _print_plan(terminal, target, planned)
            return EXIT_OK
        with _ProgressBar(terminal) as progress:
            redriver = Redriver(target, rate_per_second=arguments.rate, limit=arguments.limit, progress=progress)
            summary = await redriver.run()
    _print_summary(terminal, target, summary)
    return EXIT_OK if summary.complete else EXIT_FAILED


class _ProgressBar:
    """A rich progress bar on stderr (only on a terminal), fed by the Redriver."""

    def __init__(self, terminal: Terminal) -> None:
        columns = (TextColumn("redriving"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self._progress = Progress(*columns, console=terminal.err, transient=True, disable=not terminal.err.is_terminal)
        self._task: TaskID = self._progress.add_task("redrive", total=0)

    def __enter__(self) -> _ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def expect(self, records: int) -> None:
        total = self._progress.tasks[0].total or 0
        self._progress.update(self._task, total=total + records)

    def finished(self, outcome: Outcome, records: int) -> None:
        self._progress.advance(self._task, records)


def _print_plan(terminal: Terminal, target: RedriveTarget, planned: list[PlannedRecord]) -> None:
    table = Table(title=f"Would redrive through {target.function_name}", title_justify="left")
    for column in ("store", "webhook-id", "source position", "reason", "parked at"):
        table.add_column(column)
    for record in planned:
        reason = record.reason if record.problem is None else f"NOT REDRIVABLE: {record.problem}"
        table.add_row(record.store, record.webhook_id, record.position, reason, record.parked_at)
    terminal.out.print(table)
    redrivable = sum(1 for record in planned if record.problem is None)
    terminal.out.print(
        Text(f"dry run: {len(planned)} records parked, {redrivable} redrivable; nothing was changed", style="green")
    )


def _print_summary(terminal: Terminal, target: RedriveTarget, summary: RedriveSummary) -> None:
    for problem in summary.problems[:PROBLEMS_SHOWN]:
        terminal.warning(problem)
    if len(summary.problems) > PROBLEMS_SHOWN:
        terminal.warning(f"... and {len(summary.problems) - PROBLEMS_SHOWN} more records kept")
    table = Table(title=f"Redrive through {target.function_name}", title_justify="left")
    for outcome in Outcome:
        table.add_column(outcome.value, justify="right")
    table.add_row(*(str(summary.counts[outcome]) for outcome in Outcome))
    terminal.out.print(table)
