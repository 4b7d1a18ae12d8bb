"""`dispatcher redrive`: re-deliver what a subscription parked, through its own function.

The subscription's name is checked against the registry before anything slow: the redrive machinery (boto3,
the local runtime, the synthesis a `--local` run needs) is imported only once the command line is known good.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.text import Text

from cli import registry_access
from cli.terminal import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, Terminal, positive_float, positive_int
from infra.registry import RegistryError, limits, load_registry
from local import DEFAULT_PORT
from local.synth import LOCAL_ENVIRONMENT

if TYPE_CHECKING:
    from cli.terminal import Subcommands
    from redrive import HeldRecords, Outcome, Plan, RedriveSummary, RedriveTarget

EXIT_HELD: Final = 3  # parked records were out of sight (held by another or an interrupted run) and are left
EXIT_INTERRUPTED: Final = 130  # Ctrl-C or SIGTERM: 128 + SIGINT, as shells report it

DEFAULT_RATE_PER_SECOND = 10.0  # records re-delivered per second
# How long a received parked message stays out of sight past the run's last renewal (renewed three times per
# hold): all that a killed run (kill -9) hides from the next. A minute unless told otherwise.
DEFAULT_HOLD_SECONDS = 60
MIN_HOLD_SECONDS = 10  # a renewal (a third of it) still has seconds to reach SQS from a slow network
MAX_HOLD_SECONDS = 900  # 15 minutes: the longest a killed run may keep records from the on-call's next run
DEFAULT_LOCAL_ENDPOINT = f"http://127.0.0.1:{DEFAULT_PORT}"
PROBLEMS_SHOWN = 20  # kept records explained on stderr; the rest are counted
SUGGESTIONS_SHOWN = 3  # close subscription names offered for a typo
# Progress lines when stderr is not a terminal (a log, CI): one at least every so many records or seconds.
PROGRESS_LINE_RECORDS = 10
PROGRESS_LINE_SECONDS = 5.0

DESCRIPTION = """\
Re-deliver the records the subscription parked in its parked-records queue (<env>-SUBSCRIPTION-parked) and,
for a stream subscription, the batches in its on-failure store (S3). Each record goes through the
subscription's own function, rebuilt at its original source position, so the endpoint receives it with its
ORIGINAL webhook-id; nothing is put back on the stream or queue (other subscriptions would see it again).

A parked message is deleted only after its re-delivery succeeded, and then the payload it points at in the
parked-payload bucket (payload_s3), if it had one. A record the endpoint refuses again is parked again as a new
message (and not retried in the same run); one that still fails is kept. An on-failure object is replaced by
one holding only the records that failed again.

Nothing is out of sight unreported: a received message is held invisible only briefly (--hold-seconds, a
minute unless told), renewed while the run lasts and released when it ends, so a kill -9 hides it for that long
at most. Messages held by another or an interrupted run are counted at the start and the end, with when they
are visible again; the run exits 3 while any are left, or with --wait waits for them and redrives them too.

--dry-run changes nothing, not even a receive count. SQS shows a message only by receiving it (which counts a
receive and hides it), so a dry run shows the parked-records queue as counts (parked, held) and lists the
on-failure store's records one by one.

Interrupted at any point (Ctrl-C, SIGTERM, kill), nothing is lost: a record interrupted between its delivery
and its delete is delivered again by the next run with the same webhook-id, which receivers dedupe."""

EXAMPLES = f"""examples:
  dispatcher redrive orders-to-warehouse --env prod --dry-run
  dispatcher redrive invoices-to-ledger --env staging --rate 5 --limit 100
  dispatcher redrive orders-to-warehouse --env prod --wait
  dispatcher redrive orders-to-warehouse --local --registry registry --endpoint-url {DEFAULT_LOCAL_ENDPOINT}
      (against `dispatcher local --registry registry --port {DEFAULT_PORT}` running on this machine)

exit status:
  {EXIT_OK}    every record was redriven (and none is held by another run)
  {EXIT_FAILED}    some records are still failing, were parked again or skipped, or AWS failed
  {EXIT_USAGE}    the command line is wrong, or the subscription is not in the registry or not deployed
  {EXIT_HELD}    records held by another or an interrupted run are left (rerun once they are back, or --wait)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C, SIGTERM); the summary says what was done"""


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "redrive",
        help="re-deliver a subscription's parked records (parked-records queue, on-failure store)",
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
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be redriven (queue counts, on-failure records); change nothing",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait for records held by another or an interrupted run to be visible again, and redrive them too",
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=DEFAULT_RATE_PER_SECOND,
        metavar="R",
        help=f"records re-delivered per second (default: {DEFAULT_RATE_PER_SECOND:g})",
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="redrive at most N records")
    parser.add_argument(
        "--hold-seconds",
        type=_hold_seconds,
        default=DEFAULT_HOLD_SECONDS,
        metavar="S",
        help="how long a received record stays out of sight past the run's last renewal: all a killed run "
        f"(kill -9) hides (default: {DEFAULT_HOLD_SECONDS}; {MIN_HOLD_SECONDS} to {MAX_HOLD_SECONDS})",
    )
    parser.set_defaults(run=run)


def _hold_seconds(text: str) -> int:
    value = positive_int(text)
    if not MIN_HOLD_SECONDS <= value <= MAX_HOLD_SECONDS:
        raise argparse.ArgumentTypeError(f"must be within {MIN_HOLD_SECONDS}..{MAX_HOLD_SECONDS} seconds, got {value}")
    return value


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    started = time.monotonic()
    endpoint_url = _check_options(arguments)
    environment: limits.Environment = arguments.env  # --local runs dev only (checked above)
    _check_subscription(arguments.subscription, arguments.registry, environment)
    where = "the running `dispatcher local`" if arguments.local else f"the {environment} environment"
    action = "dry run of the redrive" if arguments.dry_run else "redriving"
    terminal.err.print(Text(f"{action} {arguments.subscription} on {where} ...", style="dim"))

    report = _Report(started)
    try:
        exit_code = asyncio.run(_redrive(arguments, terminal, _target_factory(arguments, endpoint_url), report))
    except (KeyboardInterrupt, asyncio.CancelledError):
        terminal.error("interrupted: what was not redriven is back in its store, visible again")
        exit_code = EXIT_INTERRUPTED
    except Exception as error:
        report.print(terminal, _failure_exit_code(error), "the run failed: the error follows")
        raise _command_error(error) from None
    report.print(terminal, exit_code, _MEANINGS[exit_code])
    return exit_code


def _check_options(arguments: argparse.Namespace) -> str | None:
    """The endpoint to use; CommandError (exit 2) for options that cannot go together."""
    if arguments.wait and arguments.dry_run:
        raise CommandError("--wait redrives the held records once they are back; a dry run changes nothing", EXIT_USAGE)
    if not arguments.local:
        return str(arguments.endpoint_url) if arguments.endpoint_url else None
    if arguments.env != LOCAL_ENVIRONMENT:
        raise CommandError(f"--local runs the {LOCAL_ENVIRONMENT} environment; drop --env", EXIT_USAGE)
    endpoint_url = str(arguments.endpoint_url or DEFAULT_LOCAL_ENDPOINT)
    from redrive.local_target import embedded_aws_port

    try:
        embedded_aws_port(endpoint_url)
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    return endpoint_url


def _check_subscription(subscription: str, root: Path, environment: limits.Environment) -> None:
    """CommandError (exit 2) unless the registry is valid and names the subscription: a typo costs no AWS call."""
    if not root.is_dir():
        raise CommandError(f"registry directory {str(root)!r} does not exist", EXIT_USAGE)
    try:
        loaded = load_registry(root, environment)
    except RegistryError as error:
        raise CommandError(f"the registry does not load: {error}", EXIT_USAGE) from None
    names = sorted(registered.name for _, registered in loaded.registry.registrations())
    if subscription in names:
        return
    close = difflib.get_close_matches(subscription, names, n=SUGGESTIONS_SHOWN)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise CommandError(
        f"no subscription {subscription!r} in the registry {str(root)!r}: {hint}it has {', '.join(names)}", EXIT_USAGE
    )


def _target_factory(
    arguments: argparse.Namespace, endpoint_url: str | None
) -> Callable[[], AbstractAsyncContextManager[RedriveTarget]]:
    if arguments.local:
        from redrive import local_target

        assert endpoint_url is not None  # _check_options gave --local its default
        return lambda: local_target(arguments.subscription, arguments.registry, endpoint_url)
    return lambda: _deployed(arguments.subscription, arguments.env, endpoint_url)


@asynccontextmanager
async def _deployed(
    subscription: str, environment: limits.Environment, endpoint_url: str | None
) -> AsyncIterator[RedriveTarget]:
    from redrive import aws_target

    yield await asyncio.to_thread(aws_target, subscription, environment, endpoint_url)


def _failure_exit_code(error: Exception) -> int:
    from redrive import TargetNotFoundError

    return EXIT_USAGE if isinstance(error, TargetNotFoundError) else EXIT_FAILED


def _command_error(error: Exception) -> Exception:
    """A known failure as a one-line CommandError; anything else as it is (a bug shows its traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from local.synth import SynthesisError
    from redrive import RedriveError

    if isinstance(error, RedriveError):
        return CommandError(str(error), _failure_exit_code(error))
    if isinstance(error, SynthesisError):
        return CommandError(f"the registry does not synthesize: {error}", EXIT_FAILED)
    if isinstance(error, BotoCoreError | ClientError):
        return CommandError(f"AWS: {error}", EXIT_FAILED)
    return error


@dataclass
class _Report:
    """What the summary prints, filled in as the run goes, so an interrupted or failed run reports too."""

    started: float  # time.monotonic() when the command started
    stores: list[str] = field(default_factory=list)
    summary: RedriveSummary | None = None
    plan: Plan | None = None

    def print(self, terminal: Terminal, exit_code: int, meaning: str) -> None:
        out = terminal.out
        if self.plan is not None:
            _print_plan(terminal, self.plan)
        if self.summary is not None:
            _print_summary(terminal, self.summary)
        read = "; ".join(self.stores) or "nothing (stopped before the subscription's stores were found)"
        out.print(f"read: {read}")
        out.print(f"took {time.monotonic() - self.started:.1f} s; exit status {exit_code} ({meaning})")


_MEANINGS = {  # of the exit statuses a run that went through returns
    EXIT_OK: "done",
    EXIT_FAILED: "not every record was redriven",
    EXIT_HELD: "held records are left: rerun once they are back, or with --wait",
    EXIT_INTERRUPTED: "interrupted",
}


async def _redrive(
    arguments: argparse.Namespace,
    terminal: Terminal,
    target_factory: Callable[[], AbstractAsyncContextManager[RedriveTarget]],
    report: _Report,
) -> int:
    from redrive import Redriver

    # SIGTERM (a plain `kill`, a CI timeout) ends the run as Ctrl-C does: holds released, summary printed.
    # Signal handlers belong to the main thread; run from another (a test's), the caller handles signals.
    this_run = asyncio.current_task()
    if this_run is not None and threading.current_thread() is threading.main_thread():
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this_run.cancel)
    async with target_factory() as target:
        report.stores = target.stores()
        progress = _Progress(terminal, report.started)
        redriver = Redriver(
            target,
            rate_per_second=arguments.rate,
            hold_seconds=arguments.hold_seconds,
            limit=arguments.limit,
            wait=arguments.wait,
            progress=progress,
        )
        if arguments.dry_run:
            report.plan = await redriver.plan()
            return EXIT_HELD if report.plan.held.count else EXIT_OK
        report.summary = redriver.summary
        with progress:
            summary = await redriver.run()
    if summary.held_left:
        return EXIT_HELD
    return EXIT_OK if summary.complete else EXIT_FAILED


class _Progress:
    """Progress on stderr, fed by the Redriver: a bar on a terminal, otherwise lines (logs and CI see them as
    the run goes, not at its end)."""

    def __init__(self, terminal: Terminal, started: float) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._terminal = terminal
        self._started = started
        self._lines = not terminal.err.is_terminal
        columns = (TextColumn("redriving"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self._bar = Progress(*columns, console=terminal.err, transient=True, disable=self._lines)
        self._task = self._bar.add_task("redrive", total=0)
        self._expected = 0
        self._handled: dict[str, int] = {}
        self._last_line_at = (0, time.monotonic())  # records handled, time

    def __enter__(self) -> _Progress:
        self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.stop()

    def expect(self, records: int) -> None:
        self._expected += records
        self._bar.update(self._task, total=self._expected)
        if self._lines:
            self._line(f"{records} more records to redrive")

    def finished(self, outcome: Outcome, records: int) -> None:
        self._handled[outcome.value] = self._handled.get(outcome.value, 0) + records
        self._bar.advance(self._task, records)
        handled = sum(self._handled.values())
        last_records, last_time = self._last_line_at
        if self._lines and (
            handled - last_records >= PROGRESS_LINE_RECORDS or time.monotonic() - last_time >= PROGRESS_LINE_SECONDS
        ):
            counts = ", ".join(f"{count} {name}" for name, count in self._handled.items())
            self._line(f"{handled} of {self._expected} handled ({counts})")

    def held(self, held: HeldRecords, *, waiting: bool) -> None:
        what = (
            f"{held.count} parked records are held by another or an interrupted run, out of sight; "
            f"visible again within {held.visible_again_within_seconds} s"
        )
        if waiting:
            self._terminal.err.print(Text(f"waiting: {what} (--wait)", style="yellow"))
        else:
            self._terminal.warning(f"{what}: this run leaves them (rerun then, or with --wait)")

    def _line(self, message: str) -> None:
        now = time.monotonic()
        self._last_line_at = (sum(self._handled.values()), now)
        self._terminal.err.print(f"progress: {message} [{now - self._started:.0f} s]", soft_wrap=True)


def _print_plan(terminal: Terminal, plan: Plan) -> None:
    from rich.table import Table

    if plan.on_failure:
        table = Table(title="On-failure records that would be redriven", title_justify="left")
        for column in ("store", "webhook-id", "source position", "reason", "parked at"):
            table.add_column(column)
        for record in plan.on_failure:
            reason = record.reason if record.problem is None else f"NOT REDRIVABLE: {record.problem}"
            table.add_row(record.store, record.webhook_id, record.position, reason, record.parked_at)
        terminal.out.print(table)
    not_redrivable = sum(1 for record in plan.on_failure if record.problem is not None)
    terminal.out.print(
        f"dry run: {plan.parked} records parked in the parked-records queue (counts only: SQS shows a message "
        f"only by receiving it), {len(plan.on_failure)} in the on-failure store ({not_redrivable} not "
        "redrivable); nothing was changed"
    )
    _print_held(terminal, plan.held)


def _print_held(terminal: Terminal, held: HeldRecords | None) -> None:
    if held is not None and held.count:
        terminal.out.print(
            Text(
                f"held: {held.count} parked records are held by another or an interrupted run, out of sight; "
                f"visible again within {held.visible_again_within_seconds} s (rerun then, or with --wait)",
                style="yellow",
            )
        )


def _print_summary(terminal: Terminal, summary: RedriveSummary) -> None:
    from redrive import Outcome

    for problem in summary.problems[:PROBLEMS_SHOWN]:
        terminal.warning(problem)
    if len(summary.problems) > PROBLEMS_SHOWN:
        terminal.warning(f"... and {len(summary.problems) - PROBLEMS_SHOWN} more records kept")
    counts = ", ".join(f"{summary.counts[outcome]} {outcome.value}" for outcome in Outcome)
    terminal.out.print(f"redrive: {counts}")
    if summary.held_at_start is not None and summary.held_at_start.count:
        terminal.out.print(f"held at the start: {summary.held_at_start.count} parked records")
    _print_held(terminal, summary.held_at_end)
