"""`dispatcher send`: put JSON events onto a Kinesis stream or an SQS queue with the producer."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, NoRegionError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.terminal import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, Terminal
from local import DEFAULT_PORT
from local.aws import client_for_endpoint
from producer import (
    BatchProducer,
    KinesisProducer,
    ProducerConfigurationError,
    ProduceResult,
    RecordsRefusedError,
    SqsProducer,
    UnsentRecordsError,
)
from producer.clients import CLIENT_CONFIG
from producer.errors import indented_listing

if TYPE_CHECKING:
    from cli.terminal import Subcommands

STDIN_PATH = "-"
EXAMPLES = f"""examples:
  dispatcher send --stream dev-orders --partition-key-field order_id '{{"type":"order.created","order_id":"o-1"}}'
  dispatcher send --queue dev-refunds.fifo --group-id-field customer_id --file refunds.jsonl
  producer | dispatcher send --queue https://sqs.eu-west-1.amazonaws.com/123456789012/dev-billing-callbacks
  # to a running `dispatcher local`, with its region and throwaway credentials:
  dispatcher send --endpoint-url http://127.0.0.1:{DEFAULT_PORT} --stream dev-orders --partition-key k '{{"id":"e-1"}}'
"""


@dataclass(frozen=True, slots=True)
class InputEvent:
    origin: str  # where the event came from, for error messages: "line 3 of events.jsonl"
    text: str


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "send",
        help="put JSON events onto a Kinesis stream or an SQS queue",
        description="Put JSON events onto a stream (PutRecords, up to 500 records / 5 MiB a request) or a "
        "queue (SendMessageBatch, 10 messages / 256 KiB a request). Records AWS reports as failed are "
        "re-sent, only those, with backoff; oversize records are refused before anything is sent. "
        "Credentials and region come from the standard AWS environment; on a loopback endpoint (dispatcher local's) "
        "the ones the shell does not set (AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_REGION) are the local runtime's.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("events", nargs="*", metavar="EVENT", help="JSON events (default: read --file or stdin)")
    parser.add_argument(
        "--file", metavar="FILE", help=f"read events from FILE, one JSON event per line ('{STDIN_PATH}': stdin)"
    )
    destination = parser.add_mutually_exclusive_group(required=True)
    destination.add_argument("--stream", metavar="NAME", help="Kinesis stream name or ARN")
    destination.add_argument("--queue", metavar="NAME|URL", help="SQS queue name or URL (.fifo: a FIFO queue)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--partition-key", metavar="KEY", help="stream: the partition key of every record")
    keys.add_argument(
        "--partition-key-field",
        metavar="FIELD",
        help="stream: read each record's partition key from FIELD (a.b: nested)",
    )
    groups = parser.add_mutually_exclusive_group()
    groups.add_argument("--group-id", metavar="ID", help="FIFO queue: the MessageGroupId of every message")
    groups.add_argument("--group-id-field", metavar="FIELD", help="FIFO queue: read each MessageGroupId from FIELD")
    parser.add_argument(
        "--deduplication-id-field",
        metavar="FIELD",
        help="FIFO queue: read each MessageDeduplicationId from FIELD (default: SHA-256 of the body)",
    )
    parser.add_argument(
        "--endpoint-url", metavar="URL", help="AWS endpoint, e.g. dispatcher local's (default: $AWS_ENDPOINT_URL)"
    )
    parser.add_argument("--print-ids", action="store_true", help="print each sequence number or message id")
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    events = list(_read_events(arguments))
    if not events:
        raise CommandError("no events given: pass EVENT arguments, --file FILE, or pipe them on stdin", EXIT_USAGE)
    _check_json(events)
    producer = _producer(arguments)
    try:
        result = _send_with_progress(producer, events, terminal)
    except RecordsRefusedError as error:
        reasons = [f"{events[problem.index].origin}: {problem.reason}" for problem in error.problems]
        raise CommandError(
            _listing(f"{len(reasons)} of {len(events)} events refused; nothing was sent", reasons), EXIT_USAGE
        ) from None
    except UnsentRecordsError as error:
        _print_summary(terminal, error.result, len(events))
        reasons = [f"{events[failure.index].origin}: {failure.code}: {failure.message}" for failure in error.failures]
        raise CommandError(
            _listing(f"{len(reasons)} of {len(events)} events could not be put", reasons), EXIT_FAILED
        ) from None
    _print_summary(terminal, result, len(events))
    if arguments.print_ids:
        for record_id in result.ids:
            terminal.out.print(record_id, markup=False)
    return EXIT_OK


def _read_events(arguments: argparse.Namespace) -> Iterator[InputEvent]:
    if arguments.events and arguments.file:
        raise CommandError("give EVENT arguments or --file, not both", EXIT_USAGE)
    if arguments.events:
        for number, text in enumerate(arguments.events, start=1):
            yield InputEvent(f"argument {number}", text.strip())
        return
    if arguments.file in (None, STDIN_PATH):
        if arguments.file is None and sys.stdin.isatty():
            raise CommandError("no events given: pass EVENT arguments, --file FILE, or pipe them on stdin", EXIT_USAGE)
        yield from _lines(sys.stdin, "stdin")
        return
    path = Path(arguments.file)
    try:
        with path.open(encoding="utf-8") as lines:
            yield from _lines(lines, path.name)
    except OSError as error:
        raise CommandError(f"cannot read {arguments.file}: {error.strerror}", EXIT_USAGE) from None
    except UnicodeDecodeError as error:
        raise CommandError(f"{arguments.file} is not UTF-8 text: {error.reason}", EXIT_USAGE) from None


def _lines(lines: Any, name: str) -> Iterator[InputEvent]:
    for number, line in enumerate(lines, start=1):
        if line.strip():  # blank lines separate nothing and carry no event
            yield InputEvent(f"line {number} of {name}", line.strip())


def _check_json(events: list[InputEvent]) -> None:
    problems = []
    for event in events:
        try:
            json.loads(event.text)
        except ValueError as error:
            problems.append(f"{event.origin}: not JSON: {error}")
    if problems:
        raise CommandError(
            _listing(f"{len(problems)} of {len(events)} events are not JSON; nothing was sent", problems), EXIT_USAGE
        )


def _producer(arguments: argparse.Namespace) -> BatchProducer[Any, Any]:
    stream_only = {"--partition-key": arguments.partition_key, "--partition-key-field": arguments.partition_key_field}
    queue_only = {
        "--group-id": arguments.group_id,
        "--group-id-field": arguments.group_id_field,
        "--deduplication-id-field": arguments.deduplication_id_field,
    }
    misplaced = [flag for flag, value in (queue_only if arguments.stream else stream_only).items() if value is not None]
    if misplaced:
        target = "--stream" if arguments.stream else "--queue"
        raise CommandError(f"{', '.join(misplaced)} cannot be used with {target}", EXIT_USAGE)
    try:
        if arguments.stream:
            if arguments.partition_key is None and arguments.partition_key_field is None:
                raise CommandError("a stream needs --partition-key or --partition-key-field", EXIT_USAGE)
            return KinesisProducer(
                arguments.stream,
                partition_key=arguments.partition_key,
                partition_key_field=arguments.partition_key_field,
                client=client_for_endpoint("kinesis", arguments.endpoint_url, CLIENT_CONFIG),
            )
        return SqsProducer(
            arguments.queue,
            group_id=arguments.group_id,
            group_id_field=arguments.group_id_field,
            deduplication_id_field=arguments.deduplication_id_field,
            client=client_for_endpoint("sqs", arguments.endpoint_url, CLIENT_CONFIG),
        )
    except ProducerConfigurationError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    except NoRegionError:
        # Only real AWS gets here: a loopback endpoint falls back to the local region.
        raise CommandError(
            "cannot set up the AWS client: no region (set AWS_DEFAULT_REGION, which boto3 reads, or a profile's "
            "region; for `dispatcher local` pass its --endpoint-url)",
            EXIT_FAILED,
        ) from None
    except BotoCoreError as error:
        raise CommandError(f"cannot set up the AWS client: {error}", EXIT_FAILED) from None


def _send_with_progress(
    producer: BatchProducer[Any, Any], events: list[InputEvent], terminal: Terminal
) -> ProduceResult[Any]:
    texts = [event.text for event in events]
    if not terminal.err.is_terminal:
        return producer.send(texts)
    columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=terminal.err, transient=True) as progress:
        task = progress.add_task("send", total=len(texts))
        return producer.send(texts, on_progress=lambda accepted: progress.advance(task, accepted))


def _print_summary(terminal: Terminal, result: ProduceResult[Any], total: int) -> None:
    table = Table(show_header=True, title_justify="left")
    for column in ("destination", "events", "accepted", "requests", "re-sent"):
        table.add_column(column, justify="left" if column == "destination" else "right")
    table.add_row(result.destination, str(total), str(result.count), str(result.requests), str(result.resent))
    terminal.out.print(table)


def _listing(headline: str, lines: list[str]) -> str:
    return f"{headline}:\n{indented_listing(lines)}"
