"""`dispatcher local` runs the registry's dev environment until Ctrl-C, and Ctrl-C stops all of it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.aws import EmbeddedAws
from local.demo import STREAM, write_demo_registry
from local.receiver import DemoReceiver

pytestmark = pytest.mark.integration

REPOSITORY_ROOT = Path(__file__).parents[2]
START_TIMEOUT_SECONDS = 120
DELIVERY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 10  # the bound for SIGINT to the process group


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


@pytest.fixture
def receiver() -> Iterator[DemoReceiver]:
    server = DemoReceiver()
    server.start()
    yield server
    server.stop()


def test_local_delivers_events_and_stops_every_worker_on_sigint(receiver: DemoReceiver, tmp_path: Path) -> None:
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
        while not any("AWS endpoint: http://127.0.0.1:" in line for line in output):
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
        # When an event is put on the stream with any AWS SDK
        aws.client("kinesis").put_record(
            StreamName=f"dev-{STREAM}", PartitionKey="customer-1", Data=json.dumps({"id": "evt-local-1"}).encode()
        )
        # Then the receiver gets it, signed
        deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
        while "evt-local-1" not in receiver.ledgers["demo-events-ordered"].accepted:
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
