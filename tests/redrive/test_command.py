"""`dispatcher redrive`: the command on in-process moto, and `--local` end to end against a running local system."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from moto.moto_api._internal.models import moto_api_backend

import redrive
from cli.main import main
from cli.redrive import DEFAULT_HOLD_SECONDS, EXIT_HELD, EXIT_INTERRUPTED
from cli.terminal import EXIT_OK, EXIT_USAGE
from dispatcher.config import PAYLOAD_BUCKET_ENV
from local.runtime import LocalSystem
from producer import KinesisProducer
from tests.events import sqs_record
from tests.redrive.conftest import ParkedSubscription
from tests.redrive.test_holds import hold_as_an_interrupted_run_would

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

        # When the endpoint accepts again and `dispatcher redrive --local` runs against the system (its dry run is
        # test_a_dry_run_counts_the_parked_records_and_changes_nothing: a dry run reads the same target)
        endpoint.status = 204
        arguments = ["redrive", SUBSCRIPTION, "--local", "--registry", str(registry)]
        exit_code = await asyncio.to_thread(main, [*arguments, "--endpoint-url", system.aws.endpoint_url])

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
# The killed run's hold, half the default: what the --wait run after it waits for. Its records are out of sight
# for two thirds of it at least after the kill (renewed every third), far longer than the next check takes.
KILLED_RUN_HOLD_SECONDS = 30
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

        # When a run holding its records briefly is killed (kill -9, its function worker too) once it has redriven
        # some more
        hold = ("--hold-seconds", str(KILLED_RUN_HOLD_SECONDS))
        process = await start_redrive(registry, url, "--rate", str(SLOW_RATE), *hold)
        await until_accepted(endpoint, 2 * REDRIVEN_BEFORE_STOPPING)
        os.killpg(process.pid, signal.SIGKILL)
        await finish(process)

        # Then the records it received are out of sight (it could not release them) ...
        assert held_in(system, queue_url) > 0

        # ... and a run with --wait redrives them once they are back: every record accepted, none left parked (a
        # run that finds records held and leaves them, exiting 3, is test_a_run_that_finds_records_held_...)
        exit_code, out, err = await finish(await start_redrive(registry, url, "--wait"))
        assert exit_code == EXIT_OK, out + err
        assert sorted(set(webhook_ids_accepted(endpoint))) == sorted(parked)
        assert system.queue_depth(queue_url) == 0
    finally:
        await system.stop()


# -- the command run in this process on a subscription's stores (in-process moto) -------------------------------


RedriveCommand = Callable[..., int]


@pytest.fixture
def redrive_command(
    parked_subscription: ParkedSubscription, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RedriveCommand:
    """`dispatcher redrive` of the parked subscription with the given options, its deployed target being the
    parked subscription's own (the function, its parked-records queue and on-failure store on in-process moto)."""
    monkeypatch.setattr(redrive, "aws_target", lambda *_: parked_subscription.target())
    name = parked_subscription.target().subscription
    registry = write_registry(tmp_path, endpoint_port=1, subscription_name=name)
    return lambda *options: main(["redrive", name, "--registry", str(registry), *options])


def test_a_dry_run_counts_the_parked_records_and_changes_nothing(
    parked_subscription: ParkedSubscription, redrive_command: RedriveCommand, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two parked records
    asyncio.run(parked_subscription.park(*(sqs_record(f"m-{n}", {"type": "a"}) for n in range(2))))

    # When a dry run of the redrive runs
    exit_code = redrive_command("--dry-run")

    # Then it counts them, sends nothing and leaves them parked
    assert exit_code == EXIT_OK
    assert "dry run: 2 records parked in the parked-records queue" in " ".join(capsys.readouterr().out.split())
    assert parked_subscription.endpoint.ids_posted() == []
    assert len(parked_subscription.parked_bodies()) == 2


def test_a_run_that_finds_records_held_by_another_run_redrives_the_rest_says_so_and_exits_3(
    parked_subscription: ParkedSubscription, redrive_command: RedriveCommand, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three parked records, two of them out of sight as a killed run leaves them (received, never released)
    asyncio.run(parked_subscription.park(*(sqs_record(f"m-{n}", {"type": "a"}) for n in range(3))))
    hold_as_an_interrupted_run_would(parked_subscription, 2)

    # When the subscription is redriven
    exit_code = redrive_command()

    # Then the visible record is redriven, and the two held ones are named at the start (stderr) and in the summary
    # with when they are back (the run's own hold, longer than the queue's default): the run exits 3
    assert exit_code == EXIT_HELD
    assert len(parked_subscription.endpoint.ids_posted()) == 1
    captured = capsys.readouterr()
    out, err = " ".join(captured.out.split()), " ".join(captured.err.split())
    assert "redrive: 1 redriven, 0 parked again, 0 still failing (kept), 0 skipped" in out
    held = "2 parked records are held by another or an interrupted run, out of sight"
    assert f"held: {held}; visible again within {DEFAULT_HOLD_SECONDS} s" in out
    assert held in err
    assert "exit status 3" in out
