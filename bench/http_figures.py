"""Figures (a) and (b): the function through its Lambda entry point against the endpoint process on
127.0.0.1, side by side with a bare aiohttp loop against the same endpoint.

The dispatcher is measured as Lambda calls it: `dispatcher.handler.handler(event, context)` (event parsing,
Powertools logging and metrics, the delivered-ids read against the benchmark's moto), warm, on its one event
loop. The bare loop runs on its own loop, also warm. Runs alternate (dispatcher, bare, dispatcher, ...), so
drifting machine load hits both alike, and the best of REPEATS runs of each is compared: the least disturbed
run says best what the code costs. Every invocation gets records it has never seen (fresh positions), so none
is skipped as already delivered.
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
from bench.aws_process import AwsProcess
from bench.endpoint import EndpointProcess
from bench.lambda_function import LambdaFunction
from bench.report import Figure, emit, ms, progress, runs, section
from dispatcher.records import parse_event

LATENCY_MS = 20
BATCH_A = 1000
BATCH_B = 5000
REPEATS = 3  # best of three
IDEAL_SECONDS = BATCH_A / workload.MAX_IN_FLIGHT * LATENCY_MS / 1000  # 625 ms
TARGET_A_OVER_BARE = 1.1  # the dispatcher at most 10% slower than the bare loop of the same run
TARGET_B = 0.8  # the dispatcher's records/s at least 80% of the bare loop's requests/s
JSON_HEADERS = {"Content-Type": "application/json"}


class Positions:
    """Hands out fresh record positions, so no invocation sees a record an earlier one delivered."""

    def __init__(self) -> None:
        self._next = 0

    def event(self, records: int) -> dict[str, Any]:
        first, self._next = self._next, self._next + records
        return workload.kinesis_event(records, first)


def run(
    aws: AwsProcess,
    endpoint: EndpointProcess,
    figure_a: bool = True,
    figure_b: bool = True,
    sequential_baseline: bool = True,
) -> list[Figure]:
    loop = asyncio.new_event_loop()  # the bare loop's and the Powertools baselines'
    figures: list[Figure] = []
    positions = Positions()
    try:
        if figure_a:
            with LambdaFunction(aws, endpoint.url(LATENCY_MS)) as function:
                figures += _figure_a(loop, function, positions, endpoint.url(LATENCY_MS), sequential_baseline)
        if figure_b:
            with LambdaFunction(aws, endpoint.url(0)) as function:
                figures += _figure_b(loop, function, positions, endpoint.url(0))
        return figures
    finally:
        loop.close()


# (a) ------------------------------------------------------------------------------------------------


def _figure_a(
    loop: asyncio.AbstractEventLoop,
    function: LambdaFunction,
    positions: Positions,
    url: str,
    sequential_baseline: bool,
) -> list[Figure]:
    section(
        f"(a) {BATCH_A}-record Kinesis batch through the Lambda handler, endpoint answers after {LATENCY_MS} ms, "
        f"{workload.MAX_IN_FLIGHT} in flight, ordering none; ideal {BATCH_A}/{workload.MAX_IN_FLIGHT} x "
        f"{LATENCY_MS} ms = {ms(IDEAL_SECONDS)}"
    )
    events = [positions.event(BATCH_A) for _ in range(REPEATS + 1)]
    lambda_event = events[0]
    bodies = workload.event_bodies(lambda_event)
    session = loop.run_until_complete(open_session())
    async_client = httpx.AsyncClient(
        # No pool timeout: all the batch's coroutines start at once and wait their turn for one of the 32.
        timeout=httpx.Timeout(10.0, pool=None),
        limits=httpx.Limits(max_connections=workload.MAX_IN_FLIGHT, max_keepalive_connections=workload.MAX_IN_FLIGHT),
    )
    try:
        progress("warming up (the first invocation fetches the secret and opens the pool)")
        _invoke(function, events[0])
        loop.run_until_complete(bare_aiohttp(session, url, bodies))
        dispatcher_times, bare_times = [], []
        for repeat in range(REPEATS):
            progress(f"handler and bare aiohttp, run {repeat + 1}/{REPEATS}")
            dispatcher_times.append(_invoke(function, events[repeat + 1]))
            bare_times.append(_timed(lambda: loop.run_until_complete(bare_aiohttp(session, url, bodies))))
        progress("AsyncBatchProcessor + httpx.AsyncClient(32), one warm-up and one run")
        _async_powertools(loop, async_client, url, lambda_event)
        async_time = _timed(lambda: _async_powertools(loop, async_client, url, lambda_event))
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(async_client.aclose())

    best, best_bare = min(dispatcher_times), min(bare_times)
    figures = [
        emit(
            Figure(
                "(a) handler: wall time / bare aiohttp loop of the same run",
                f"{best / best_bare:.2f}x",
                f"<= {TARGET_A_OVER_BARE}x",
                best / best_bare <= TARGET_A_OVER_BARE,
                f"best of {REPEATS}: {ms(best)} vs {ms(best_bare)}",
            )
        ),
        emit(
            Figure(
                "(a) handler: wall time / ideal",
                f"{best / IDEAL_SECONDS:.2f}x",
                detail=f"runs {runs(dispatcher_times)}; ideal {ms(IDEAL_SECONDS)}",
            )
        ),
        emit(
            Figure(
                "(a) baseline: bare aiohttp loop (no signing, no logic) / ideal",
                f"{best_bare / IDEAL_SECONDS:.2f}x",
                detail=f"runs {runs(bare_times)}; the floor on this machine",
            )
        ),
        emit(
            Figure(
                "(a) baseline: AsyncBatchProcessor + httpx.AsyncClient(32)",
                f"{async_time / IDEAL_SECONDS:.1f}x",
                "(issue: ~12x)",
                detail=f"one run: {ms(async_time)}",
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
    return figures


def _invoke(function: LambdaFunction, lambda_event: dict[str, Any]) -> float:
    """Seconds the handler took; fails the benchmark unless every record was delivered."""
    invocation = function.invoke(lambda_event)
    failures = invocation.response["batchItemFailures"]
    if failures:
        raise RuntimeError(f"the handler reported {len(failures)} of {len(lambda_event['Records'])} records failed")
    return invocation.seconds


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
        asyncio.set_event_loop(None)
        if previous is None:
            del os.environ["LAMBDA_TASK_ROOT"]
        else:
            os.environ["LAMBDA_TASK_ROOT"] = previous


def _expect_no_failures(response: Any) -> None:
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if failures:
        raise RuntimeError(f"baseline reported {len(failures)} failures")


# (b) ------------------------------------------------------------------------------------------------


def _figure_b(
    loop: asyncio.AbstractEventLoop, function: LambdaFunction, positions: Positions, url: str
) -> list[Figure]:
    section(
        f"(b) throughput through the Lambda handler, endpoint answers at once, {workload.MAX_IN_FLIGHT} in flight, "
        f"{BATCH_B} records per run"
    )
    events = [positions.event(BATCH_B) for _ in range(REPEATS + 1)]
    bodies = workload.event_bodies(events[0])
    signed = workload.contract_headers(workload.subscription(url), parse_event(events[0]))
    session = loop.run_until_complete(open_session())
    try:
        progress("warming up")
        _invoke(function, events[0])
        loop.run_until_complete(bare_aiohttp(session, url, bodies))
        dispatcher_rates, bare_rates, contract_rates = [], [], []
        for repeat in range(REPEATS):
            progress(f"handler, bare aiohttp and bare aiohttp with the contract's headers, run {repeat + 1}/{REPEATS}")
            dispatcher_rates.append(BATCH_B / _invoke(function, events[repeat + 1]))
            bare_rates.append(BATCH_B / _timed(lambda: loop.run_until_complete(bare_aiohttp(session, url, bodies))))
            contract_rates.append(
                BATCH_B / _timed(lambda: loop.run_until_complete(bare_aiohttp(session, url, bodies, signed)))
            )
    finally:
        loop.run_until_complete(session.close())

    best, best_bare, best_contract = max(dispatcher_rates), max(bare_rates), max(contract_rates)
    return [
        emit(
            Figure(
                "(b) handler records/s / bare aiohttp requests/s",
                f"{best / best_bare:.2f}",
                f">= {TARGET_B}",
                best / best_bare >= TARGET_B,
                f"best of {REPEATS}: {best:,.0f}/s vs {best_bare:,.0f}/s",
            )
        ),
        emit(Figure("(b) handler records/s", f"{best:,.0f}/s", detail=f"runs {runs(dispatcher_rates, 'rec/s')}")),
        emit(
            Figure(
                "(b) baseline: bare aiohttp requests/s (1 session, semaphore 32)",
                f"{best_bare:,.0f}/s",
                detail=f"runs {runs(bare_rates, 'req/s')}",
            )
        ),
        # The contract's share of the gap: the same loop sending each record with the headers the dispatcher
        # sends (signed in advance), so what is left between it and the handler is the dispatcher's own work.
        emit(
            Figure(
                "(b) baseline: bare aiohttp with the contract's signed headers",
                f"{best_contract / best_bare:.2f}",
                detail=f"of bare requests/s; runs {runs(contract_rates, 'req/s')}",
            )
        ),
        emit(
            Figure(
                "(b) handler records/s / bare aiohttp with the contract's headers",
                f"{best / best_contract:.2f}",
                detail="what the dispatcher's own work leaves of a bare client that sends the same requests",
            )
        ),
    ]


async def open_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


async def bare_aiohttp(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], headers: list[dict[str, str]] | None = None
) -> None:
    """The fastest plain client: one session, a semaphore of 32, the same bodies, no signing; with `headers`
    (one dict per body), those instead of a Content-Type alone."""
    semaphore = asyncio.Semaphore(workload.MAX_IN_FLIGHT)

    async def post(body: bytes, body_headers: dict[str, str]) -> None:
        async with semaphore, session.post(url, data=body, headers=body_headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"bare aiohttp got HTTP {response.status}")

    each = headers or [JSON_HEADERS] * len(bodies)
    await asyncio.gather(*(post(body, body_headers) for body, body_headers in zip(bodies, each, strict=True)))


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started
