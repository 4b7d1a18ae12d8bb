"""Figures (a) and (b): the HTTP pipeline against the endpoint process on 127.0.0.1.

Every contender runs on one event loop that lives for the whole section, as in a warm Lambda
environment (the handler keeps one loop and one pooled session), and is warmed up once before it
is measured, so connection set-up is not what is compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import httpx
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    BatchProcessor,
    EventType,
    async_process_partial_response,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from bench import workload
from bench.endpoint import running_endpoint
from bench.report import Figure, emit, median, ms, progress, runs, section
from dispatcher.delivery import Dispatcher
from dispatcher.records import Batch

LATENCY_MS = 20
BATCH_A = 1000
BATCH_B = 5000
REPEATS = 5
REPEATS_B = 7  # (b) runs are short; more pairs steady the median
IDEAL_SECONDS = BATCH_A / workload.MAX_IN_FLIGHT * LATENCY_MS / 1000  # 625 ms
TARGET_A = 1.3
TARGET_B = 0.5
JSON_HEADERS = {"Content-Type": "application/json"}


def run(figure_a: bool = True, figure_b: bool = True, sequential_baseline: bool = True) -> list[Figure]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    figures: list[Figure] = []
    try:
        with running_endpoint() as endpoint:
            if figure_a:
                figures += _figure_a(loop, endpoint.url(LATENCY_MS), sequential_baseline)
            if figure_b:
                figures += _figure_b(loop, endpoint.url(0))
        return figures
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# (a) ------------------------------------------------------------------------------------------------


def _figure_a(loop: asyncio.AbstractEventLoop, url: str, sequential_baseline: bool) -> list[Figure]:
    section(
        f"(a) {BATCH_A}-record Kinesis batch, endpoint answers after {LATENCY_MS} ms, "
        f"{workload.MAX_IN_FLIGHT} in flight, ordering none; ideal {BATCH_A}/{workload.MAX_IN_FLIGHT} x "
        f"{LATENCY_MS} ms = {ms(IDEAL_SECONDS)}"
    )
    lambda_event = workload.kinesis_event(BATCH_A)
    batch = workload.kinesis_batch(BATCH_A)
    dispatcher = workload.production_dispatcher(workload.subscription(url))
    async_client = httpx.AsyncClient(
        timeout=10.0,
        limits=httpx.Limits(max_connections=workload.MAX_IN_FLIGHT, max_keepalive_connections=workload.MAX_IN_FLIGHT),
    )
    bodies = workload.bodies(batch)
    session = loop.run_until_complete(_open_session())
    try:
        progress("warming up")
        _dispatch(loop, dispatcher, batch)
        _async_powertools(loop, async_client, url, lambda_event)
        loop.run_until_complete(_bare_aiohttp(session, url, bodies))
        dispatcher_times, async_times, bare_times = [], [], []
        for repeat in range(REPEATS):  # alternated, so drifting machine load hits all alike
            progress(f"dispatcher, bare aiohttp and AsyncBatchProcessor, run {repeat + 1}/{REPEATS}")
            dispatcher_times.append(_timed(lambda: _dispatch(loop, dispatcher, batch)))
            bare_times.append(_timed(lambda: loop.run_until_complete(_bare_aiohttp(session, url, bodies))))
            async_times.append(_timed(lambda: _async_powertools(loop, async_client, url, lambda_event)))
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(async_client.aclose())
        loop.run_until_complete(dispatcher.sender.close())

    figures = [
        emit(
            Figure(
                "(a) dispatcher: wall time / ideal",
                f"{median(dispatcher_times) / IDEAL_SECONDS:.2f}x",
                f"<= {TARGET_A}x",
                median(dispatcher_times) / IDEAL_SECONDS <= TARGET_A,
                f"median of {REPEATS}: {ms(median(dispatcher_times))} ({runs(dispatcher_times)})",
            )
        ),
        emit(
            Figure(
                "(a) reference: bare aiohttp loop (no signing, no logic)",
                f"{median(bare_times) / IDEAL_SECONDS:.2f}x",
                detail=f"median of {REPEATS}: {ms(median(bare_times))} ({runs(bare_times)}); the floor here",
            )
        ),
    ]
    if sequential_baseline:
        progress("sequential BatchProcessor + httpx.Client (about 20 s, one run)")
        with httpx.Client(timeout=10.0) as client:
            _sequential_powertools(client, url, workload.kinesis_event(8))  # warm-up: open the connection
            sequential = _timed(lambda: _sequential_powertools(client, url, lambda_event))
        figures.append(
            emit(
                Figure(
                    "(a) baseline: BatchProcessor + httpx.Client, sequential",
                    f"{sequential / IDEAL_SECONDS:.1f}x",
                    "(issue: ~33x)",
                    detail=f"one run: {ms(sequential)}",
                )
            )
        )
    figures.append(
        emit(
            Figure(
                "(a) baseline: AsyncBatchProcessor + httpx.AsyncClient(32)",
                f"{median(async_times) / IDEAL_SECONDS:.1f}x",
                "(issue: ~12x)",
                detail=f"median of {REPEATS}: {ms(median(async_times))} ({runs(async_times)})",
            )
        )
    )
    return figures


def _dispatch(loop: asyncio.AbstractEventLoop, dispatcher: Dispatcher, batch: Batch) -> None:
    report = loop.run_until_complete(dispatcher.dispatch(batch, workload.REMAINING_SECONDS))
    if report.stats.delivered != len(batch.records):
        raise RuntimeError(f"dispatcher delivered {report.stats.delivered} of {len(batch.records)}: {report.stats}")


def _sequential_powertools(client: httpx.Client, url: str, lambda_event: dict[str, Any]) -> None:
    """What a user writes first: Powertools' batch processor, one blocking POST per record."""
    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

    def record_handler(record: KinesisStreamRecord) -> None:
        response = client.post(url, content=record.kinesis.data_as_bytes(), headers=JSON_HEADERS)
        response.raise_for_status()

    _expect_no_failures(
        process_partial_response(event=lambda_event, record_handler=record_handler, processor=processor)
    )


def _async_powertools(
    loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient, url: str, lambda_event: dict[str, Any]
) -> None:
    """The async variant: every record's coroutine gathered at once, the client pool capped at 32."""
    processor = AsyncBatchProcessor(event_type=EventType.KinesisDataStreams)

    async def record_handler(record: KinesisStreamRecord) -> None:
        response = await client.post(url, content=record.kinesis.data_as_bytes(), headers=JSON_HEADERS)
        response.raise_for_status()

    with _lambda_environment(loop):
        response = async_process_partial_response(
            event=lambda_event, record_handler=record_handler, processor=processor
        )
    _expect_no_failures(response)


@contextlib.contextmanager
def _lambda_environment(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Powertools runs the coroutines on the current event loop when LAMBDA_TASK_ROOT is set (as in a
    Lambda environment, where the loop and the pooled client live across invocations), and in a fresh
    `asyncio.run` loop otherwise, which would orphan the client's pooled connections."""
    previous = os.environ.get("LAMBDA_TASK_ROOT")
    os.environ["LAMBDA_TASK_ROOT"] = os.getcwd()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["LAMBDA_TASK_ROOT"]
        else:
            os.environ["LAMBDA_TASK_ROOT"] = previous


def _expect_no_failures(response: Any) -> None:
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if failures:
        raise RuntimeError(f"baseline reported {len(failures)} failures")


# (b) ------------------------------------------------------------------------------------------------


def _figure_b(loop: asyncio.AbstractEventLoop, url: str) -> list[Figure]:
    section(f"(b) throughput, endpoint answers at once, {workload.MAX_IN_FLIGHT} in flight, {BATCH_B} records per run")
    batch = workload.kinesis_batch(BATCH_B)
    bodies = workload.bodies(batch)
    dispatcher = workload.production_dispatcher(workload.subscription(url))
    session = loop.run_until_complete(_open_session())
    try:
        progress("warming up")
        _dispatch(loop, dispatcher, batch)
        loop.run_until_complete(_bare_aiohttp(session, url, bodies))
        bare_rates, dispatcher_rates = [], []
        for repeat in range(REPEATS_B):  # back to back, so each pair sees the same machine load
            progress(f"bare aiohttp and dispatcher, run {repeat + 1}/{REPEATS_B}")
            bare_rates.append(BATCH_B / _timed(lambda: loop.run_until_complete(_bare_aiohttp(session, url, bodies))))
            dispatcher_rates.append(BATCH_B / _timed(lambda: _dispatch(loop, dispatcher, batch)))
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(dispatcher.sender.close())

    ratios = [mine / bare for mine, bare in zip(dispatcher_rates, bare_rates, strict=True)]
    ratio = median(ratios)
    return [
        emit(
            Figure(
                "(b) dispatcher throughput / bare aiohttp loop",
                f"{ratio:.2f}",
                f">= {TARGET_B}",
                ratio >= TARGET_B,
                f"median of {REPEATS_B} back-to-back pairs ({'/'.join(f'{r:.2f}' for r in ratios)})",
            )
        ),
        emit(
            Figure(
                "(b) dispatcher requests/s",
                f"{median(dispatcher_rates):,.0f}/s",
                detail=f"runs: {runs(dispatcher_rates, 'req/s')}",
            )
        ),
        emit(
            Figure(
                "(b) bare aiohttp loop requests/s (1 session, semaphore 32)",
                f"{median(bare_rates):,.0f}/s",
                detail=f"runs: {runs(bare_rates, 'req/s')}",
            )
        ),
    ]


async def _open_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


async def _bare_aiohttp(session: aiohttp.ClientSession, url: str, bodies: list[bytes]) -> None:
    """The fastest plain client: one session, a semaphore of 32, the same bodies, no signing."""
    semaphore = asyncio.Semaphore(workload.MAX_IN_FLIGHT)

    async def post(body: bytes) -> None:
        async with semaphore, session.post(url, data=body, headers=JSON_HEADERS) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"bare aiohttp got HTTP {response.status}")

    await asyncio.gather(*(post(body) for body in bodies))


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started
