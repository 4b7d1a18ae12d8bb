"""`dispatcher demo`: the main job in one command — the whole system locally, N events, and an account of each."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.terminal import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    Terminal,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)
from local.demo import (
    DEFAULT_EVENTS,
    DEFAULT_OUTAGE_SECONDS,
    DEFAULT_POISON_RATE,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_OUTAGE_SECONDS,
    Demo,
    DemoOptions,
    DemoReport,
    DemoStuckError,
)

if TYPE_CHECKING:
    from cli.terminal import Subcommands


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "demo",
        help="run the whole system locally, send N events, and account for every one",
        description="Start the embedded AWS with a demo registry (a Kinesis stream read in order per partition "
        "key, a standard queue, a FIFO queue), a demo receiver that verifies signatures, dedupes by webhook-id "
        "and checks order, produce N events and wait until each reached the receiver or was set aside with its "
        "payload (parked, or in a source DLQ or an on-failure store). Exit 0 only if nothing was lost and no "
        "ordered subscription saw an event out of order.",
    )
    parser.add_argument("--events", type=positive_int, default=DEFAULT_EVENTS, help=f"default {DEFAULT_EVENTS}")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--fail-rate", type=fraction, default=0.0, help="share of requests answered 500 (0..1)")
    parser.add_argument(
        "--timeout-rate",
        type=fraction,
        default=0.0,
        help="share of requests answered after the dispatcher's timeout (processed all the same) (0..1)",
    )
    parser.add_argument("--latency-ms", type=non_negative_float, default=0.0, help="added to every answer, in ms")
    parser.add_argument(
        "--crash-rate",
        type=fraction,
        default=0.0,
        help="share of invocations whose function is killed mid-batch, as a Lambda timeout would (0..1)",
    )
    parser.add_argument(
        "--poison-rate",
        type=fraction,
        default=DEFAULT_POISON_RATE,
        help=f"share of events the receiver refuses for good (422), to be parked (default {DEFAULT_POISON_RATE})",
    )
    parser.add_argument(
        "--key-outage-rate",
        type=fraction,
        default=0.0,
        help="share of the partition keys whose events the receiver answers 503 during the outage (0..1): the "
        "other keys must keep flowing while those wait in the retry lanes",
    )
    parser.add_argument(
        "--outage-seconds",
        type=outage_seconds,
        default=DEFAULT_OUTAGE_SECONDS,
        help="how long the key outage lasts from the first request the receiver gets "
        f"(default {DEFAULT_OUTAGE_SECONDS:g}, at most {MAX_OUTAGE_SECONDS:g})",
    )
    parser.add_argument("--seed", type=int, help="seed of the fault and poison draws, for a repeatable run")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds to wait for every event to be accounted for (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument("--port", type=int, default=0, help="port of the embedded AWS (default: any free port)")
    parser.set_defaults(run=run)


def outage_seconds(text: str) -> float:
    seconds = positive_float(text)
    if seconds > MAX_OUTAGE_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_OUTAGE_SECONDS:g}, got {text}")
    return seconds


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    options = DemoOptions(
        events=arguments.events,
        fail_rate=arguments.fail_rate,
        timeout_rate=arguments.timeout_rate,
        latency_ms=arguments.latency_ms,
        crash_rate=arguments.crash_rate,
        poison_rate=arguments.poison_rate,
        aws_port=arguments.port,
        timeout_seconds=arguments.timeout,
        seed=arguments.seed,
        key_outage_rate=arguments.key_outage_rate,
        outage_seconds=arguments.outage_seconds,
    )
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=terminal.err,
        transient=True,
    )
    phases: dict[str, TaskID] = {}

    def on_progress(phase: str, done: int, total: int) -> None:
        if phase not in phases:
            phases[phase] = progress.add_task(phase, total=total)
        progress.update(phases[phase], completed=done, total=total)

    with tempfile.TemporaryDirectory(prefix="dispatcher-demo-") as workdir, progress:
        try:
            report = asyncio.run(Demo(options, Path(workdir), on_progress).run())
        except DemoStuckError as stuck:
            raise CommandError(str(stuck)) from None
    if arguments.json:
        terminal.out.print_json(json.dumps(report.as_json()))
    else:
        terminal.out.print(report_table(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def report_table(report: DemoReport) -> Table:
    verdict = "every event delivered or parked with its payload" if report.ok else "FAILED"
    table = Table(title=f"Demo: {verdict}", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    rows = [
        ("produced", f"{report.produced:,}"),
        ("delivered (unique)", f"{report.delivered:,}"),
        ("duplicate POSTs absorbed by the receiver", f"{report.duplicates_absorbed:,}"),
        ("retries", f"{report.retries:,}"),
        ("parked, or in a source DLQ or on-failure store", f"{report.parked:,}"),
        ("lost (must be 0)", f"{report.lost:,}"),
        ("out of order on ordered subscriptions (must be 0)", f"{report.out_of_order:,}"),
        ("stale by dispatch-sequence at the receiver (must be 0)", f"{report.stale_by_sequence:,}"),
        ("payload mismatches (must be 0)", f"{report.payload_mismatches:,}"),
        ("503s answered during the key outage", f"{report.key_outage_refusals:,}"),
        ("held keys in the retry lanes (most at once)", f"{report.max_held_keys:,}"),
        ("oldest record in a retry lane (most seen)", f"{report.max_oldest_in_lane_seconds:.1f} s"),
        ("max IteratorAge", f"{report.max_iterator_age_ms / 1000:.1f} s"),
        ("events per second", f"{report.events_per_second:,.1f}"),
        ("elapsed", f"{report.elapsed_seconds:.1f} s" + (" (timed out)" if report.timed_out else "")),
    ]
    for label, value in rows:
        table.add_row(label, value)
    return table
