"""Function workers: real handler code in worker processes, with Lambda's context, timeout and concurrency."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from local.esm import KinesisPoller
from local.spec import ConsumerSpec, KinesisMappingSpec
from local.workers import FunctionRunner, RunnerClosedError
from tests.local.conftest import FAST_POLL_SECONDS, LOOPBACK, REGION, LocalAws, eventually, function_spec, running

pytestmark = pytest.mark.integration

SAMPLES = "tests.local.sample_functions"


def process_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie our test process has not reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
async def runners() -> AsyncIterator[list[FunctionRunner]]:
    """Runners a test creates are closed after it, whatever happens."""
    created: list[FunctionRunner] = []
    yield created
    for runner in created:
        await runner.close()


def runner_for(runners: list[FunctionRunner], handler: str, **options: Any) -> FunctionRunner:
    spec_fields = {
        key: options.pop(key) for key in ("timeout_seconds", "reserved_concurrency", "environment") if key in options
    }
    runner = FunctionRunner(function_spec(handler=handler, **spec_fields), region=REGION, **options)
    runners.append(runner)
    return runner


async def test_handler_runs_with_a_lambda_context_and_the_function_environment(
    runners: list[FunctionRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a function with its own variable, in a runtime that points the AWS SDK at a local endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    runner = runner_for(runners, f"{SAMPLES}.describe", environment={"GREETING": "hello"}, timeout_seconds=3.0)
    # When it is invoked
    result = await runner.invoke({"order": 1})
    # Then the handler saw the event, a Lambda-like context and both environments
    assert result.error is None
    assert isinstance(result.response, dict)
    seen = result.response
    assert seen["event"] == {"order": 1}
    assert (seen["function_name"], seen["memory_limit_in_mb"]) == ("consumer-fn", 512)
    assert seen["invoked_function_arn"] == f"arn:aws:lambda:{REGION}:123456789012:function:consumer-fn"
    assert seen["aws_request_id"] == result.request_id
    assert 0 < seen["remaining_millis"] <= 3000
    assert (seen["greeting"], seen["aws_endpoint_url"]) == ("hello", "http://127.0.0.1:4566")
    # And it ran in a separate process
    assert seen["pid"] != os.getpid()


async def test_a_warm_worker_serves_the_next_invocation_without_a_cold_start(runners: list[FunctionRunner]) -> None:
    # Given a function invoked once
    runner = runner_for(runners, f"{SAMPLES}.describe")
    first = await runner.invoke({})
    # When it is invoked again
    second = await runner.invoke({})
    # Then the same worker, still holding its module state, serves it
    assert isinstance(first.response, dict)
    assert isinstance(second.response, dict)
    assert (first.cold_start, second.cold_start) == (True, False)
    assert second.response["pid"] == first.response["pid"]
    assert second.response["invocations_served"] == 2


async def test_an_exception_is_a_function_error_and_the_worker_stays_warm(runners: list[FunctionRunner]) -> None:
    # Given a handler that raises
    runner = runner_for(runners, f"{SAMPLES}.fail")
    # When it is invoked twice
    first = await runner.invoke({"name": "order 42"})
    second = await runner.invoke({})
    # Then each invocation is a function error naming the exception, and the worker was kept
    assert (first.error_type, first.error) == ("ValueError", "ValueError: cannot handle order 42")
    assert first.response is None
    assert not first.timed_out
    assert second.failed
    assert not second.cold_start


async def test_an_invocation_past_the_timeout_is_killed_and_the_next_one_gets_a_fresh_worker(
    runners: list[FunctionRunner],
) -> None:
    # Given a function with a 1 s timeout, warm
    runner = runner_for(runners, f"{SAMPLES}.sleep", timeout_seconds=1.0)
    warm = await runner.invoke({"seconds": 0})
    assert isinstance(warm.response, dict)
    # When an invocation runs past the timeout
    result = await runner.invoke({"seconds": 30})
    # Then it is a timeout, its worker was killed, and the next invocation cold-starts another
    assert result.timed_out
    assert result.error_type == "Sandbox.Timedout"
    assert result.response is None
    assert not process_alive(warm.response["pid"])
    after = await runner.invoke({"seconds": 0})
    assert after.cold_start
    assert isinstance(after.response, dict)
    assert after.response["pid"] != warm.response["pid"]


async def test_reserved_concurrency_caps_the_invocations_running_at_once(runners: list[FunctionRunner]) -> None:
    # Given a function with reserved concurrency 2
    runner = runner_for(runners, f"{SAMPLES}.sleep", reserved_concurrency=2, timeout_seconds=10.0)
    # When four invocations arrive together
    results = await asyncio.gather(*(runner.invoke({"seconds": 0.5}) for _ in range(4)))
    # Then at most two ran at any moment, in at most two workers; the others waited their turn
    spans = [
        (result.response["started"], result.response["ended"])
        for result in results
        if isinstance(result.response, dict)
    ]
    assert len(spans) == 4
    most_at_once = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert most_at_once <= 2
    assert len({result.response["pid"] for result in results if isinstance(result.response, dict)}) <= 2


async def test_emf_lines_become_metrics_and_every_line_goes_to_the_log_file(
    runners: list[FunctionRunner], tmp_path: Path
) -> None:
    # Given a handler that prints a log line, a stderr line and an EMF document
    log_path = tmp_path / "consumer-fn.log"
    runner = runner_for(runners, f"{SAMPLES}.emit_metrics", log_path=log_path)
    # When it is invoked
    result = await runner.invoke({"delivered": 3})
    # Then the invocation carries the sums of its Count metrics
    assert result.metrics == {"Delivered": 4.0, "Retried": 2.0}
    # And the function's log holds its lines between Lambda's START and END lines
    await runner.close()
    lines = log_path.read_text().splitlines()
    assert lines[0] == f"START RequestId: {result.request_id} Version: $LATEST"
    assert {"delivering the batch", "a warning on stderr"} <= set(lines)
    assert any(line.startswith("{") and "CloudWatchMetrics" in line for line in lines)
    assert f"END RequestId: {result.request_id}" in lines


async def test_a_failing_cold_start_is_a_function_error(runners: list[FunctionRunner]) -> None:
    # Given a handler module that raises at import
    runner = runner_for(runners, "tests.local.broken_function.handler")
    # When it is invoked
    result = await runner.invoke({})
    # Then the invocation fails with the init error, and no worker is left behind
    assert (result.error_type, result.error) == ("RuntimeError", "RuntimeError: DISPATCHER_SUBSCRIPTION: missing")
    assert runner.worker_pids == []


async def test_crash_injection_kills_the_worker_mid_invocation(runners: list[FunctionRunner]) -> None:
    # Given a runner whose every invocation crashes
    runner = runner_for(runners, f"{SAMPLES}.sleep", crash_probability=1.0, timeout_seconds=5.0)
    # When it is invoked twice
    results = [await runner.invoke({"seconds": 0.2}) for _ in range(2)]
    # Then both were killed like a timeout, each in a fresh worker
    assert all(result.timed_out and result.response is None for result in results)
    assert all(result.cold_start for result in results)
    assert runner.worker_pids == []


async def test_close_stops_every_worker(runners: list[FunctionRunner]) -> None:
    # Given a runner with an idle worker and a busy one
    runner = runner_for(runners, f"{SAMPLES}.sleep", reserved_concurrency=2, timeout_seconds=30.0)
    await asyncio.gather(runner.invoke({"seconds": 0.3}), runner.invoke({"seconds": 0.3}))
    busy = asyncio.create_task(runner.invoke({"seconds": 20}))
    await eventually(lambda: "sleeping 20 s" in runner.recent_log_lines, "the busy invocation to start")
    pids = runner.worker_pids
    assert len(pids) == 2
    # When it is closed
    await runner.close()
    # Then no worker is left, the busy invocation ended as a function error, and the runner refuses new work
    assert not any(process_alive(pid) for pid in pids)
    assert (await busy).failed
    with pytest.raises(RunnerClosedError):
        await runner.invoke({"seconds": 0})


def test_workers_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    # Given a runtime process with a warm worker
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from local.spec import FunctionSpec
        from local.workers import FunctionRunner

        async def main():
            spec = FunctionSpec("orphan-fn", "orphans", {{}}, 5.0, 1, handler="{SAMPLES}.describe")
            result = await FunctionRunner(spec, region="{REGION}").invoke({{}})
            print(result.response["pid"], flush=True)
            os._exit(0)  # no close(): the runtime dies as if it were killed

        asyncio.run(main())
        """
    )
    # When that process exits without closing its runner
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2]
    )
    worker_pid = int(completed.stdout.split()[0])
    # Then its worker exits on its own
    deadline = time.monotonic() + 10
    while process_alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(worker_pid)


# -- the real dispatcher function -------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An endpoint on 127.0.0.1 that accepts every POST: (its URL, the requests it received)."""
    received: list[dict[str, Any]] = []

    async def accept(request: web.Request) -> web.Response:
        received.append({"headers": dict(request.headers), "body": await request.read()})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", accept)
    app_runner = web.AppRunner(app)
    await app_runner.setup()
    site = web.TCPSite(app_runner, LOOPBACK, 0)
    await site.start()
    port = app_runner.addresses[0][1]
    yield f"http://{LOOPBACK}:{port}/hooks", received
    await app_runner.cleanup()


async def test_the_dispatcher_function_delivers_a_stream_through_a_worker(
    aws: LocalAws, receiver: tuple[str, list[dict[str, Any]]], runners: list[FunctionRunner]
) -> None:
    # Given the dispatcher's table, DLQ and signing secret in moto, and a subscription to a local endpoint
    endpoint_url, received = receiver
    import boto3

    session = boto3.session.Session(region_name=REGION)
    suffix = uuid.uuid4().hex[:8]
    table = f"delivered-ids-{suffix}"
    session.client("dynamodb", endpoint_url=aws.endpoint_url).create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dlq_url = aws.sqs.create_queue(QueueName=f"dispatcher-dlq-{suffix}")["QueueUrl"]
    signing_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    secret_arn = session.client("secretsmanager", endpoint_url=aws.endpoint_url).create_secret(
        Name=f"dispatcher/signing-{suffix}", SecretString=signing_secret
    )["ARN"]
    subscription = {
        "name": "orders",
        "endpoint": endpoint_url,
        "signing_secret": secret_arn,
        "allow_http": True,
        "allow_private_cidrs": ["127.0.0.0/8"],
        "request_timeout_seconds": 2.0,
        "max_attempts": 2,
        "retry_schedule_seconds": [],  # no retry lane: this test is about the worker, not the lane
    }
    environment = {
        "DISPATCHER_SUBSCRIPTION": json.dumps(subscription),
        "DISPATCHER_IDEMPOTENCY_TABLE": table,
        "DISPATCHER_DLQ_URL": dlq_url,
        "DISPATCHER_PAYLOAD_BUCKET": "parked-payloads",
    }
    stream = aws.create_stream()
    payloads = [{"id": f"evt-{index}", "type": "order.created"} for index in range(3)]
    aws.put_records(stream[0], [("customer-1", json.dumps(payload).encode()) for payload in payloads])
    function = FunctionRunner(function_spec(environment=environment, timeout_seconds=10.0), region=REGION)
    runners.append(function)
    consumer = ConsumerSpec(function.spec, KinesisMappingSpec(stream[0], stream[1], batch_size=10))
    poller = KinesisPoller(
        consumer, function, endpoint_url=aws.endpoint_url, region=REGION, poll_interval_seconds=FAST_POLL_SECONDS
    )
    # When the mapping feeds the stream to the real handler in a worker
    async with running(poller):
        await eventually(lambda: poller.stats.delivered == 3, "the function's Delivered metric")
    # Then every record was POSTed, signed, in order, and the function's metrics reached the stats
    assert [json.loads(request["body"]) for request in received] == payloads
    assert all(
        {"webhook-id", "webhook-signature", "webhook-timestamp"} <= {name.lower() for name in request["headers"]}
        for request in received
    )
    assert (poller.stats.function_errors, poller.stats.parked, poller.stats.invocations) == (0, 0, 1)
