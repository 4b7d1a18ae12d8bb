"""`dispatcher local`: the registry's dev environment on this machine until Ctrl-C, with a live status table."""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rich.live import Live
from rich.table import Table
from rich.text import Text

from cli import registry_access
from cli.terminal import EXIT_OK, Terminal, fraction
from local.aws import DEFAULT_PORT, LOCAL_REGION
from local.runtime import LocalSystem, RunningConsumer
from local.spec import KinesisMappingSpec

if TYPE_CHECKING:
    from cli.terminal import Subcommands

STATUS_REFRESH_SECONDS = 1.0


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "local",
        help="run the dev environment locally (embedded AWS, pollers, functions) until Ctrl-C",
        description="Synthesize the registry as the dev environment, create its streams, queues, table and "
        "secrets on an embedded AWS on 127.0.0.1, and run one poller and the real function per subscription, "
        "with a live status table. Put events with any AWS SDK, the AWS CLI (--endpoint-url) or "
        "`dispatcher send`. The endpoints must be reachable from this machine.",
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
        terminal.err.print(_endpoint_help(system))
        with Live(status_table(system), console=terminal.err, refresh_per_second=2) as live:
            while not stop.is_set():
                live.update(status_table(system))
                try:
                    await asyncio.wait_for(stop.wait(), STATUS_REFRESH_SECONDS)
                except TimeoutError:
                    continue
    finally:
        terminal.err.print(Text("stopping ...", style="dim"))
        await system.stop()


def _endpoint_help(system: LocalSystem) -> Text:
    endpoint = system.aws.endpoint_url
    streams = sorted(
        {c.spec.mapping.stream_name for c in system.consumers if isinstance(c.spec.mapping, KinesisMappingSpec)}
    )
    example = streams[0] if streams else "<stream>"
    return Text(
        f"AWS endpoint: {endpoint} (region {LOCAL_REGION}, any credentials)\n"
        f"  aws --endpoint-url {endpoint} kinesis put-record --stream-name {example} "
        '--partition-key k --cli-binary-format raw-in-base64-out --data \'{"id":"evt-1"}\'\n'
        f'  dispatcher send --endpoint-url {endpoint} --stream {example} --partition-key k \'{{"id":"evt-1"}}\'\n'
        f"  function logs: {system.workdir / 'logs'}\n"
        "Ctrl-C stops everything.",
        style="cyan",
    )


def status_table(system: LocalSystem) -> Table:
    table = Table(title="Subscriptions (dev, local)", title_justify="left")
    for column in ("subscription", "source", "delivered", "in flight", "failed", "parked", "age of oldest"):
        table.add_column(column, justify="left" if column in ("subscription", "source") else "right")
    for consumer in system.consumers:
        stats = consumer.stats
        table.add_row(
            consumer.subscription,
            _source(consumer),
            f"{stats.delivered:,.0f}",
            f"{stats.records_in_flight:,}",
            f"{stats.delivery_failed:,.0f}",
            f"{stats.dead_lettered:,.0f}",
            _age(consumer),
        )
    return table


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
