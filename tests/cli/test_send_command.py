"""`dispatcher send` against moto: events from arguments, a file or stdin, onto a stream or a queue."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer

from cli.main import main
from producer.limits import KINESIS_MAX_RECORD_BYTES
from tests.producer.conftest import FIFO_QUEUE, QUEUE, REGION, STREAM, queue_messages, stream_records

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_sqs import SQSClient

LOOPBACK = "127.0.0.1"


def order(number: int) -> str:
    return json.dumps({"type": "order.created", "order_id": f"o-{number}"})


def plain(text: str) -> str:
    return " ".join(text.split())


def test_events_given_as_arguments_go_onto_the_stream(
    kinesis: KinesisClient, capsys: pytest.CaptureFixture[str]
) -> None:
    # When two events are sent as arguments, keyed by order_id
    exit_code = main(["send", "--stream", STREAM, "--partition-key-field", "order_id", order(1), order(2)])

    # Then both are on the stream under their order ids, and the summary says so
    assert exit_code == 0
    assert sorted(key for key, _ in stream_records(kinesis)) == ["o-1", "o-2"]
    assert f"stream {STREAM} │ 2 │ 2 │ 1 │ 0 │" in plain(capsys.readouterr().out)


def test_a_file_is_read_one_event_per_line(kinesis: KinesisClient, tmp_path: Path) -> None:
    # Given a file of 3 events with a blank line between them
    events = tmp_path / "orders.jsonl"
    events.write_text(f"{order(1)}\n\n{order(2)}\n{order(3)}\n", encoding="utf-8")

    # When it is sent with one fixed partition key
    exit_code = main(["send", "--stream", STREAM, "--partition-key", "all", "--file", str(events)])

    # Then the three events are on the stream, as written
    assert exit_code == 0
    assert sorted(data.decode() for _, data in stream_records(kinesis)) == sorted([order(1), order(2), order(3)])


def test_stdin_is_read_when_no_events_are_given(
    sqs: SQSClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 12 events piped in
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{order(n)}\n" for n in range(12))))

    # When they are sent to the standard queue, with their ids printed
    exit_code = main(["send", "--queue", QUEUE, "--print-ids"])

    # Then two requests put all 12 into the queue, and each message id is printed
    out = capsys.readouterr().out
    assert exit_code == 0
    assert len(queue_messages(sqs, QUEUE)) == 12
    assert f"queue {QUEUE} │ 12 │ 12 │ 2 │ 0 │" in plain(out)
    assert len([line for line in out.splitlines() if len(line) == len("8d6b9a2c-0000-4000-8000-000000000000")]) == 12


def test_a_fifo_queue_gets_each_message_in_its_group(sqs: SQSClient) -> None:
    exit_code = main(["send", "--queue", FIFO_QUEUE, "--group-id-field", "order_id", order(1), order(2)])

    assert exit_code == 0
    groups = sorted(message["Attributes"]["MessageGroupId"] for message in queue_messages(sqs, FIFO_QUEUE))
    assert groups == ["o-1", "o-2"]


def test_lines_that_are_not_json_are_refused_by_line_number(
    kinesis: KinesisClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a file whose second line is not JSON
    events = tmp_path / "orders.jsonl"
    events.write_text(f"{order(1)}\norder 2\n", encoding="utf-8")

    # When it is sent
    exit_code = main(["send", "--stream", STREAM, "--partition-key", "k", "--file", str(events)])

    # Then nothing was sent and the line is named
    assert exit_code == 2
    assert "line 2 of orders.jsonl: not JSON: Expecting value" in capsys.readouterr().err
    assert stream_records(kinesis) == []


def test_an_oversize_event_is_refused_before_anything_is_sent(
    kinesis: KinesisClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a file whose third line is over 1 MiB with its partition key
    events = tmp_path / "orders.jsonl"
    too_large = json.dumps({"order_id": "o-3", "padding": "x" * KINESIS_MAX_RECORD_BYTES})
    events.write_text(f"{order(1)}\n{order(2)}\n{too_large}\n", encoding="utf-8")

    # When it is sent
    exit_code = main(["send", "--stream", STREAM, "--partition-key-field", "order_id", "--file", str(events)])

    # Then the line and its size are named, and the stream is still empty
    err = plain(capsys.readouterr().err)
    assert exit_code == 2
    assert "1 of 3 events refused; nothing was sent" in err
    assert "line 3 of orders.jsonl: is 1,048,613 bytes (data plus partition key), above the Kinesis limit" in err
    assert stream_records(kinesis) == []


def test_records_aws_does_not_accept_fail_the_command(
    kinesis: KinesisClient, capsys: pytest.CaptureFixture[str]
) -> None:
    # When events are sent to a stream that does not exist
    exit_code = main(["send", "--stream", "no-such-stream", "--partition-key", "k", order(1)])

    # Then the command fails, naming the event and AWS's reason
    err = plain(capsys.readouterr().err)
    assert exit_code == 1
    assert "1 of 1 events could not be put" in err
    assert "argument 1: ResourceNotFoundException" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--stream", STREAM], "a stream needs --partition-key or --partition-key-field"),
        (["--queue", QUEUE, "--partition-key", "k"], "--partition-key cannot be used with --queue"),
        (["--stream", STREAM, "--partition-key", "k", "--group-id", "g"], "--group-id cannot be used with --stream"),
        (["--queue", FIFO_QUEUE], f"FIFO queue {FIFO_QUEUE} needs group_id or group_id_field"),
        (["--stream", STREAM, "--queue", QUEUE], "argument --queue: not allowed with argument --stream"),
    ],
)
def test_inconsistent_options_are_usage_errors(
    sqs: SQSClient, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", *flags, order(1)]) == 2
    assert message in capsys.readouterr().err


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--queue", QUEUE, "--file", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """moto as an HTTP server on 127.0.0.1, as `dispatcher local` runs it; yields its endpoint URL."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_endpoint_url_sends_to_a_local_aws(moto_server: str) -> None:
    # Given a stream in a moto server on 127.0.0.1
    kinesis: KinesisClient = boto3.client("kinesis", endpoint_url=moto_server)
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)

    # When an event is sent with --endpoint-url
    exit_code = main(["send", "--endpoint-url", moto_server, "--stream", STREAM, "--partition-key", "k", order(1)])

    # Then it is on that server's stream
    assert exit_code == 0
    assert [data.decode() for _, data in stream_records(kinesis)] == [order(1)]
