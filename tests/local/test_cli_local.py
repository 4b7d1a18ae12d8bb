"""`dispatcher local` runs the registry's dev environment until Ctrl-C, and Ctrl-C stops all of it; what it prints
for other shells works there as printed, on a machine with no AWS configuration."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from cli.local import COMMAND_NAME, export_command, this_command
from local.aws import EmbeddedAws
from local.demo import STREAM, write_demo_registry
from local.receiver import DemoReceiver
from tests.producer.conftest import stream_records

pytestmark = pytest.mark.integration

REPOSITORY_ROOT = Path(__file__).parents[2]
START_TIMEOUT_SECONDS = 120
DELIVERY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 10  # the bound for SIGINT to the process group
SHELL_TIMEOUT_SECONDS = 60  # a guard against hangs of a printed command, far above what one takes
HELP_END = "Ctrl-C stops everything."
# boto3 configured by nothing but the environment, as any SDK would be after the printed exports
PUT_WITH_BOTO3 = (
    "import boto3, sys; "
    "boto3.client('kinesis').put_record(StreamName=sys.argv[1], PartitionKey='k', Data=sys.argv[2].encode())"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def bare_shell(command: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run `command` in bash with no AWS configuration at all: only PATH and an empty HOME, started elsewhere."""
    return subprocess.run(
        ["bash", "-c", command],
        env={"PATH": os.environ["PATH"], "HOME": str(home)},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.fixture
def empty_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def test_local_delivers_events_and_stops_every_worker_on_sigint(
    receiver: DemoReceiver, tmp_path: Path, empty_home: Path
) -> None:
    # Given `dispatcher local` running a registry whose endpoints are the loopback receiver
    registry = write_demo_registry(tmp_path, receiver)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "local", "--registry", str(registry), "--port", str(port)],
        cwd=REPOSITORY_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives it
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(process.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        started = time.monotonic()
        while not any(HELP_END in line for line in output):
            assert process.poll() is None, "".join(output)
            assert time.monotonic() - started < START_TIMEOUT_SECONDS, "".join(output)
            time.sleep(0.2)
        # The receiver learns the local signing secrets from the embedded AWS, as a team would from theirs
        aws = EmbeddedAws(port)  # a client of the running one, not a second server
        secrets = aws.client("secretsmanager")
        receiver.register(
            "demo-events-ordered",
            secrets.get_secret_value(SecretId="demo/demo-events-ordered")["SecretString"],
            ordered=True,
        )
        # When, from a shell with no AWS configuration, one event is put with the printed `send` line as printed,
        # and another with boto3 after the printed exports
        printed = [line.strip() for line in output]
        send_line = next(line for line in printed if " send --endpoint-url " in line)
        export_line = next(line for line in printed if line.startswith("export "))
        sent = bare_shell(send_line, empty_home)
        assert sent.returncode == 0, sent.stderr
        event = json.dumps({"id": "evt-local-1"})
        put = bare_shell(f"{export_line}\n{sys.executable} -c \"{PUT_WITH_BOTO3}\" dev-{STREAM} '{event}'", empty_home)
        assert put.returncode == 0, put.stderr
        # Then the receiver gets both, signed
        deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
        while not {"evt-1", "evt-local-1"} <= set(receiver.ledgers["demo-events-ordered"].accepted):
            assert time.monotonic() < deadline, "".join(output[-40:])
            time.sleep(0.2)
        workers = children_of(process.pid)
        assert workers, "the function runs in worker processes"
    finally:
        # When SIGINT reaches the whole process group (Ctrl-C in a terminal)
        os.killpg(process.pid, signal.SIGINT)
        exit_code = process.wait(timeout=STOP_TIMEOUT_SECONDS)
    # Then it and every worker are gone within ten seconds
    assert exit_code == 0
    deadline = time.monotonic() + 1
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)


@pytest.mark.integration
def test_the_printed_exports_point_any_sdk_at_the_embedded_aws(empty_home: Path) -> None:
    # Given a running embedded AWS with a stream
    # (a name of its own: moto's state is shared by every server of this process, and the template tests
    # create dev-orders)
    aws = EmbeddedAws(port=0)
    aws.start()
    stream = f"exports-{uuid.uuid4().hex[:8]}"
    try:
        aws.client("kinesis").create_stream(StreamName=stream, ShardCount=1)

        # When boto3, configured only by the printed export line, puts a record from a bare shell
        put = bare_shell(
            f'{export_command(aws)}\n{sys.executable} -c "{PUT_WITH_BOTO3}" {stream} \'{{"id":"e-1"}}\'',
            empty_home,
        )

        # Then the record is on the embedded AWS's stream
        assert put.returncode == 0, put.stderr
        assert stream_records(aws.client("kinesis"), stream) == [("k", b'{"id":"e-1"}')]
    finally:
        aws.stop()


def test_the_printed_command_is_dispatcher_when_that_is_the_one_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given `dispatcher local` started through a `dispatcher` script
    script = tmp_path / "bin" / COMMAND_NAME
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "local"])

    # When that script is the one on PATH, then the printed commands say `dispatcher`
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    assert this_command() == COMMAND_NAME

    # When it is not on PATH (.venv/bin/dispatcher), then they give its full path
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert this_command() == str(script)


def test_the_printed_command_is_the_module_when_started_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given `python -m cli.main local`
    monkeypatch.setattr(sys, "argv", [str(REPOSITORY_ROOT / "cli" / "main.py"), "local"])

    # Then the printed commands run the same module with the same interpreter (installed: any directory works)
    assert this_command() == f"{sys.executable} -m cli.main"
