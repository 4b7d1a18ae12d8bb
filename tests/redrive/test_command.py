"""`dispatcher redrive`: the command line, and `--local` end to end against a running local system."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from cli.main import main
from cli.terminal import EXIT_OK, EXIT_USAGE
from dispatcher.config import PAYLOAD_BUCKET_ENV
from local.runtime import LocalSystem
from producer import KinesisProducer

pytestmark = pytest.mark.integration

STREAM = "events"
SUBSCRIPTION = "events-to-hook"
PARKED_TIMEOUT_SECONDS = 30.0  # far above what parking one record takes
POLL_SECONDS = 0.2
# Makes the record's JSON about 900 KB: under Kinesis's 1 MiB, far over what fits a dead-letter message inline.
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


def write_registry(root: Path, endpoint_port: int) -> Path:
    registry = root / "registry"
    (registry / "teams").mkdir(parents=True)
    sources = {"streams": [{"name": STREAM, "mode": "provisioned", "shards": 1, "retention_hours": 24}]}
    subscription = {
        "name": SUBSCRIPTION,
        "source": f"stream/{STREAM}",
        # A host name: the registry refuses literal loopback endpoints.
        "endpoint": f"http://localhost:{endpoint_port}/hook",
        "signing_secret": f"local/{SUBSCRIPTION}",
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
    system = LocalSystem(registry, tmp_path / "work", port=0)
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
        assert "evt-redrive-1" in planned
        assert "evt-redrive-2" in planned
        exit_code = await asyncio.to_thread(main, dry_run[:-1])

        # Then the endpoint received the exact records under their original webhook-ids, and the queue and the
        # parked-payload bucket are empty
        assert exit_code == EXIT_OK
        redriven = endpoint.received[2:]
        assert sorted(redriven) == [("evt-redrive-1", 204), ("evt-redrive-2", 204)]
        assert dict(zip([webhook_id for webhook_id, _ in redriven], endpoint.bodies[2:], strict=True)) == refused_bodies
        assert system.queue_depth(consumer.parked_records_url) == 0
        assert s3.list_objects_v2(Bucket=payload_bucket).get("Contents", []) == []
        assert "redriven" in capsys.readouterr().out
    finally:
        await system.stop()
