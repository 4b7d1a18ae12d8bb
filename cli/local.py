"""`dispatcher local`: the registry's dev environment on this machine until Ctrl-C, with a live status table."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rich.live import Live
from rich.table import Table
from rich.text import Text

from cli import registry_access
from cli.terminal import EXIT_OK, Terminal, fraction
from local import DEFAULT_PORT
from local.aws import EmbeddedAws
from local.runtime import LocalSystem, QueueCounts, RunningConsumer, SubscriptionReadings
from local.spec import KinesisMappingSpec

if TYPE_CHECKING:
    from cli.terminal import Subcommands

STATUS_REFRESH_SECONDS = 1.0
COMMAND_NAME = "dispatcher"
EXAMPLE_EVENT = '{"id":"evt-1"}'
STATUS_COLUMNS = (
    "subscription",
    "source",
    "delivered",
    "in flight",
    "failed",
    "parked",
    "age of oldest",
    "held keys",
    "oldest in lane",
)
NO_RETRY_LANE = "-"  # in the retry-lane columns of a subscription whose retry schedule is []


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "local",
        help="run the dev environment locally (embedded AWS, pollers, functions) until Ctrl-C",
        description="Synthesize the registry as the dev environment, create its streams, queues, table and "
        "secrets on an embedded AWS on 127.0.0.1, and run one poller and the real function per subscription, "
        "with a live status table. Put events with `dispatcher send --endpoint-url`, or with any AWS SDK or the "
        "AWS CLI after exporting the AWS_* variables it prints (endpoint, region, throwaway credentials). "
        "The endpoints must be reachable from this machine.",
    )
    registry_access.add_registry_option(parser)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"embedded AWS port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--crash-rate", type=fraction, default=0.0, help="share of invocations killed mid-batch (0..1, default 0)"
    )
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    registry_access.load(arguments.registry, "dev")  # every registry error listed before anything starts
    with tempfile.TemporaryDirectory(prefix="dispatcher-local-") as workdir:
        asyncio.run(_serve(arguments, Path(workdir), terminal))
    return EXIT_OK


async def _serve(arguments: argparse.Namespace, workdir: Path, terminal: Terminal) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stop.set)
    system = LocalSystem(arguments.registry, workdir, port=arguments.port, crash_probability=arguments.crash_rate)
    terminal.err.print(Text("synthesizing the dev environment and starting the embedded AWS ...", style="dim"))
    try:
        await system.start()
        # soft_wrap: the commands must stay one line each to be copied from a narrow terminal
        terminal.err.print(connection_help(system), soft_wrap=True)
        with Live(await _current_status(system), console=terminal.err, refresh_per_second=2) as live:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), STATUS_REFRESH_SECONDS)
                except TimeoutError:
                    live.update(await _current_status(system))
    finally:
        terminal.err.print(Text("stopping ...", style="dim"))
        await system.stop()


def connection_help(system: LocalSystem) -> Text:
    """How to reach the embedded AWS from another shell: the variables to export, and commands that work as printed."""
    readers = Counter(
        c.spec.mapping.stream_name for c in system.consumers if isinstance(c.spec.mapping, KinesisMappingSpec)
    )
    # The example stream is the one most subscriptions read (ties by name): an event there shows the most.
    stream = min(readers, key=lambda name: (-readers[name], name), default="<stream>")
    event = shlex.quote(EXAMPLE_EVENT)
    endpoint = system.aws.endpoint_url
    return Text(
        f"AWS endpoint: {endpoint} (region and throwaway credentials below)\n"
        "In another shell, for the AWS CLI and any AWS SDK:\n"
        f"  {export_command(system.aws)}\n"
        f"  aws kinesis put-record --stream-name {stream} --partition-key k --cli-binary-format raw-in-base64-out "
        f"--data {event}\n"
        f"  {this_command()} send --endpoint-url {endpoint} --stream {stream} --partition-key k {event}\n"
        f"  function logs: {system.workdir / 'logs'}\n"
        "Ctrl-C stops everything.",
        style="cyan",
    )


def export_command(aws: EmbeddedAws) -> str:
    """The shell command that points the AWS CLI and SDKs at `aws`: endpoint, region, throwaway credentials."""
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in aws.environment().items())


def this_command() -> str:
    """This command as another shell runs it: `dispatcher` when that is the one on PATH, else its full path (or
    `python -m cli.main`, when it was started that way)."""
    script = Path(sys.argv[0]).resolve()
    if script.name != COMMAND_NAME:
        return f"{shlex.quote(sys.executable)} -m cli.main"
    on_path = shutil.which(COMMAND_NAME)
    if on_path is not None and Path(on_path).resolve() == script:
        return COMMAND_NAME
    return shlex.quote(str(script))


async def _current_status(system: LocalSystem) -> Table:
    """The table with the queues and held keys read now (in a thread: the event loop keeps polling meanwhile)."""
    return status_table(system, await asyncio.to_thread(system.readings))


def status_table(system: LocalSystem, readings: Mapping[str, SubscriptionReadings]) -> Table:
    """One row a subscription; `readings` is LocalSystem.readings(): by subscription, what its parked-records
    queue holds now and, with a retry lane, its held keys and the age of the oldest record in its lane. Delivered,
    in flight and failed count the work of the source's mapping and the lane's together."""
    table = Table(title="Subscriptions (dev, local)", title_justify="left")
    for column in STATUS_COLUMNS:
        table.add_column(column, justify="left" if column in ("subscription", "source") else "right")
    for consumer in system.consumers:
        stats = consumer.all_stats
        now = readings[consumer.subscription]
        table.add_row(
            consumer.subscription,
            _source(consumer),
            f"{sum(counts.delivered for counts in stats):,.0f}",
            f"{sum(counts.records_in_flight for counts in stats):,}",
            f"{sum(counts.delivery_failed for counts in stats):,.0f}",
            _parked(now.parked),
            _age(consumer),
            NO_RETRY_LANE if now.held_keys is None else f"{now.held_keys:,}",
            NO_RETRY_LANE if now.oldest_in_lane_seconds is None else f"{now.oldest_in_lane_seconds:.1f} s",
        )
    notes = [
        f"{consumer.subscription}: {consumer.fidelity_note}" for consumer in system.consumers if consumer.fidelity_note
    ]
    if notes:  # where the local mapping knowingly differs from Lambda's, said where the numbers are read
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    return table


def _parked(parked: QueueCounts) -> str:
    """Visible parked records, and those a redrive (or anyone) has received and holds out of sight for now."""
    if parked.held:
        return f"{parked.visible:,} + {parked.held:,} held"
    return f"{parked.visible:,}"


def _source(consumer: RunningConsumer) -> str:
    mapping = consumer.spec.mapping
    if isinstance(mapping, KinesisMappingSpec):
        return f"stream/{mapping.stream_name}"
    return f"queue/{mapping.queue_name}"


def _age(consumer: RunningConsumer) -> str:
    """IteratorAge for streams, ApproximateAgeOfOldestMessage for queues: the health signal."""
    stats = consumer.stats
    if isinstance(consumer.spec.mapping, KinesisMappingSpec):
        return f"IteratorAge {stats.iterator_age_ms / 1000:.1f} s"
    return f"oldest message {stats.oldest_message_age_seconds:.1f} s"
