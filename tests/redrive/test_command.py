"""`dispatcher redrive`: the command line, and `--local` end to end against a running local system."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from moto.moto_api._internal.models import moto_api_backend

from cli.main import main
from cli.redrive import EXIT_HELD, EXIT_INTERRUPTED
from cli.terminal import EXIT_OK, EXIT_USAGE
from dispatcher.config import PAYLOAD_BUCKET_ENV
from local.runtime import LocalSystem
from producer import KinesisProducer

pytestmark = pytest.mark.integration

STREAM = "events"
SUBSCRIPTION = "events-to-hook"
PARKED_TIMEOUT_SECONDS = 30.0  # far above what parking one record takes
POLL_SECONDS = 0.2
# Makes the record's JSON about 900 KB: under Kinesis's 1 MiB, far over what fits a parked message inline.
LARGE_RECORD_PADDING_BYTES = 900_000


class Endpoint:
    """A loopback webhook receiver answering `status`, recording each webhook-id it is sent."""

    def __init__(self) -> None:
        self.status = 422
        self.received: list[tuple[str, int]] = []  # (webhook-id, status answered)
        self.bodies: list[bytes] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.received.append((request.headers["webhook-id"], self.status))
        return web.Response(status=self.status)


def fresh_local_system(registry: Path, workdir: Path) -> LocalSystem:
    """A local system to start on a fresh embedded AWS: moto keeps one state per process, shared by its servers,
    so what an earlier test created (a delivered-ids table of the same name) is reset first."""
    moto_api_backend.reset()
    return LocalSystem(registry, workdir, port=0)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    receiver = Endpoint()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield receiver
    await runner.cleanup()


def write_registry(root: Path, endpoint_port: int, stream: str = STREAM, subscription_name: str = SUBSCRIPTION) -> Path:
    """A registry of one stream and one subscription (moto's state is shared by every server of the process: a
    test of its own names its own)."""
    registry = root / "registry"
    (registry / "teams").mkdir(parents=True)
    sources = {"streams": [{"name": stream, "mode": "provisioned", "shards": 1, "retention_hours": 24}]}
    subscription = {
        "name": subscription_name,
        "source": f"stream/{stream}",
        # A host name: the registry refuses literal loopback endpoints.
        "endpoint": f"http://localhost:{endpoint_port}/hook",
        "signing_secret": f"local/{subscription_name}",
        "max_attempts": 1,
        "allow_http": True,
        "allow_private_cidrs": ["127.0.0.0/8", "::1/128"],
    }
    team = {"team": "redrive", "alerts_email": "redrive@example.com", "subscriptions": [subscription]}
    (registry / "sources.yaml").write_text(yaml.safe_dump(sources))
    (registry / "teams" / "redrive.yaml").write_text(yaml.safe_dump(team))
    return registry


def test_local_runs_the_dev_environment_only() -> None:
    assert main(["redrive", SUBSCRIPTION, "--local", "--env", "prod"]) == EXIT_USAGE


def test_local_needs_a_loopback_endpoint(tmp_path: Path) -> None:
    arguments = ["redrive", SUBSCRIPTION, "--local", "--registry", str(tmp_path), "--endpoint-url", "https://x.io"]
    assert main(arguments) == EXIT_USAGE


async def test_local_redrive_redelivers_parked_records_with_their_webhook_ids(
    tmp_path: Path, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a local system whose endpoint refused a small and a large record (422), so the function parked them,
    # the large one's payload in the parked-payload bucket
    registry = write_registry(tmp_path, endpoint.port)
    system = fresh_local_system(registry, tmp_path / "work")
    await system.start()
    try:
        (consumer,) = system.consumers
        s3 = system.aws.client("s3")
        payload_bucket = consumer.spec.function.environment[PAYLOAD_BUCKET_ENV]
        producer = KinesisProducer(f"dev-{STREAM}", partition_key="customer-1", client=system.aws.client("kinesis"))
        small = {"id": "evt-redrive-1", "type": "order.created"}
        large = {"id": "evt-redrive-2", "type": "order.created", "padding": "x" * LARGE_RECORD_PADDING_BYTES}
        await asyncio.to_thread(producer.send, [small, large])
        async with asyncio.timeout(PARKED_TIMEOUT_SECONDS):
            while True:
                if system.queue_depth(consumer.parked_records_url) >= 2:
                    break
                await asyncio.sleep(POLL_SECONDS)
        assert endpoint.received == [("evt-redrive-1", 422), ("evt-redrive-2", 422)]
        assert len(s3.list_objects_v2(Bucket=payload_bucket).get("Contents", [])) == 1
        refused_bodies = dict(zip(["evt-redrive-1", "evt-redrive-2"], endpoint.bodies, strict=True))

        # When the endpoint accepts again and `dispatcher redrive --local` runs against the system
        endpoint.status = 204
        dry_run = ["redrive", SUBSCRIPTION, "--local", "--registry", str(registry)]
        dry_run += ["--endpoint-url", system.aws.endpoint_url, "--dry-run"]
        assert await asyncio.to_thread(main, dry_run) == EXIT_OK
        planned = capsys.readouterr().out
        assert "dry run: 2 records parked in the parked-records queue" in planned
        assert endpoint.received == [("evt-redrive-1", 422), ("evt-redrive-2", 422)]
        exit_code = await asyncio.to_thread(main, dry_run[:-1])

        # Then the endpoint received the exact records under their original webhook-ids, and the queue and the
        # parked-payload bucket are empty
        assert exit_code == EXIT_OK
        redriven = endpoint.received[2:]
        assert sorted(redriven) == [("evt-redrive-1", 204), ("evt-redrive-2", 204)]
        assert dict(zip([webhook_id for webhook_id, _ in redriven], endpoint.bodies[2:], strict=True)) == refused_bodies
        assert system.queue_depth(consumer.parked_records_url) == 0
        assert s3.list_objects_v2(Bucket=payload_bucket).get("Contents", []) == []
        summary = capsys.readouterr().out
        assert "redrive: 2 redriven, 0 parked again, 0 still failing (kept), 0 skipped" in summary
        assert f"read: parked-records queue dev-{SUBSCRIPTION}-parked" in summary
    finally:
        await system.stop()


# -- the command as a user runs it: a process of its own, interrupted and killed -----------------------------------

DISPATCHER = Path(sys.executable).parent / "dispatcher"  # the console script the package installs
REPOSITORY = Path(__file__).resolve().parents[2]
KILLED_STREAM = "killed-events"
KILLED_SUBSCRIPTION = "killed-events-to-hook"
RECORDS = 12  # more than one receive (10): a killed run leaves some held and some visible
SLOW_RATE = 2.0  # records per second: slow enough to stop a run part-way, on observable progress
REDRIVEN_BEFORE_STOPPING = 2  # records the endpoint accepts from a run before it is stopped
# Bounds on each wait; every one ends on observable state long before (a run synthesizes the registry first).
COMMAND_TIMEOUT_SECONDS = 240.0


def webhook_ids_accepted(endpoint: Endpoint) -> list[str]:
    return [webhook_id for webhook_id, status in endpoint.received if status == 204]


def held_in(system: LocalSystem, queue_url: str) -> int:
    """Parked messages out of sight, as SQS counts them (the embedded AWS's counts are exact)."""
    attributes = system.aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesNotVisible"])


async def start_redrive(registry: Path, endpoint_url: str, *options: str) -> asyncio.subprocess.Process:
    """`dispatcher redrive --local` in a process group of its own (its function worker included)."""
    return await asyncio.create_subprocess_exec(
        str(DISPATCHER),
        *("redrive", KILLED_SUBSCRIPTION, "--local", "--registry", str(registry), "--endpoint-url", endpoint_url),
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPOSITORY,
        start_new_session=True,
    )


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), " ".join(err.decode().split())


async def until_accepted(endpoint: Endpoint, records: int) -> None:
    async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
        while True:
            if len(webhook_ids_accepted(endpoint)) >= records:
                return
            await asyncio.sleep(POLL_SECONDS)


async def test_interrupted_and_killed_runs_hide_nothing_from_the_runs_after_them(
    tmp_path: Path, endpoint: Endpoint
) -> None:
    # Given a local system whose endpoint refused RECORDS records, so the function parked them, and now accepts
    registry = write_registry(tmp_path, endpoint.port, KILLED_STREAM, KILLED_SUBSCRIPTION)
    system = fresh_local_system(registry, tmp_path / "work")
    await system.start()
    try:
        (consumer,) = system.consumers
        queue_url = consumer.parked_records_url
        producer = KinesisProducer(
            f"dev-{KILLED_STREAM}", partition_key="customer-1", client=system.aws.client("kinesis")
        )
        parked = [f"evt-kill-{n}" for n in range(RECORDS)]
        await asyncio.to_thread(producer.send, [{"id": webhook_id, "type": "order.created"} for webhook_id in parked])
        async with asyncio.timeout(PARKED_TIMEOUT_SECONDS):
            while True:
                if system.queue_depth(queue_url) >= RECORDS:
                    break
                await asyncio.sleep(POLL_SECONDS)
        endpoint.status = 204
        url = system.aws.endpoint_url

        # When a run is interrupted (Ctrl-C) once it has redriven some records
        process = await start_redrive(registry, url, "--rate", str(SLOW_RATE))
        await until_accepted(endpoint, REDRIVEN_BEFORE_STOPPING)
        process.send_signal(signal.SIGINT)
        exit_code, out, err = await finish(process)

        # Then it exits 130 with a summary of what it did, and holds nothing
        assert exit_code == EXIT_INTERRUPTED
        assert re.search(r"redrive: \d+ redriven", out)
        assert "exit status 130 (interrupted)" in out
        assert f"read: parked-records queue dev-{KILLED_SUBSCRIPTION}-parked" in out
        assert "progress:" in err  # piped: progress came as lines
        assert held_in(system, queue_url) == 0

        # When a run is killed (kill -9, its function worker too) once it has redriven some more
        process = await start_redrive(registry, url, "--rate", str(SLOW_RATE))
        await until_accepted(endpoint, 2 * REDRIVEN_BEFORE_STOPPING)
        os.killpg(process.pid, signal.SIGKILL)
        await finish(process)
        hidden = held_in(system, queue_url)
        assert hidden > 0

        # Then the next run redrives what is visible, says how many are out of sight and when they are back, and
        # exits 3 (it starts well within the killed run's one-minute hold, synthesis included)
        exit_code, out, err = await finish(await start_redrive(registry, url))
        assert exit_code == EXIT_HELD
        assert f"held: {hidden} parked records are held by another or an interrupted run" in out
        assert "visible again within" in out
        assert f"{hidden} parked records are held" in err  # warned at the start too
        assert system.queue_depth(queue_url) == hidden

        # And a run with --wait redrives them once they are back: every record accepted, none left parked
        exit_code, out, err = await finish(await start_redrive(registry, url, "--wait"))
        assert exit_code == EXIT_OK, out + err
        assert sorted(set(webhook_ids_accepted(endpoint))) == sorted(parked)
        assert system.queue_depth(queue_url) == 0
    finally:
        await system.stop()
