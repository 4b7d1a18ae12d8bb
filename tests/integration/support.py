"""Real boundaries for the integration tests: a scripted HTTP endpoint on 127.0.0.1 (aiohttp.web in its
own thread, so both the async Dispatcher and the synchronous Lambda handler can reach it), a counter of
the requests reaching the moto server, and small helpers to read what the function printed."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Reply:
    """What the endpoint answers to one request."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0  # wait this long before answering (a slow or hanging endpoint)


@dataclass
class Received:
    """One request as it arrived on the socket (recorded on arrival, before the scripted delay)."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float  # time.monotonic() when the request reached the handler
    responded_at: float | None = None  # time.monotonic() when the answer was ready; None: never answered

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class LoopbackEndpoint:
    """An HTTP server on 127.0.0.1 answering from a script keyed by webhook-id (a list is consumed
    request by request; once empty, `default` answers). Records every request it receives."""

    def __init__(self) -> None:
        self.default = Reply()
        self._script: dict[str, list[Reply]] = {}
        self._always: dict[str, Reply] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback-endpoint", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> LoopbackEndpoint:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown timeout: a request still sleeping in a "hang" reply must not delay teardown.
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((LOOPBACK, 0))  # port 0: the kernel picks a free port
        self.port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener).start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Requests still sleeping in a scripted delay (their client gave up long ago) end here.
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- script -----------------------------------------------------------------------------------

    def url(self, path: str = "/hook") -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def script(self, webhook_id: str, *replies: Reply | int) -> None:
        """Answer the next requests carrying `webhook_id` with these replies, in order."""
        with self._lock:
            self._script[webhook_id] = [_reply(reply) for reply in replies]

    def always(self, webhook_id: str, reply: Reply | int) -> None:
        """Answer every request carrying `webhook_id` with this reply."""
        with self._lock:
            self._always[webhook_id] = _reply(reply)

    def heal(self) -> None:
        """Forget every script: from now on, `default` answers everything."""
        with self._lock:
            self._script.clear()
            self._always.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            method=request.method,
            path=request.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.read(),
            received_at=time.monotonic(),
        )
        with self._lock:
            self._received.append(received)
            queued = self._script.get(received.webhook_id)
            reply = queued.pop(0) if queued else self._always.get(received.webhook_id, self.default)
        if reply.delay_seconds:
            await asyncio.sleep(reply.delay_seconds)
        received.responded_at = time.monotonic()
        return web.Response(status=reply.status, headers=dict(reply.headers), text="ok")

    # -- what arrived -----------------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every request that arrived, in arrival order."""
        with self._lock:
            return list(self._received)

    def to(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    def for_id(self, webhook_id: str) -> list[Received]:
        return [request for request in self.received if request.webhook_id == webhook_id]

    def hits(self) -> Counter[str]:
        return Counter(request.webhook_id for request in self.received)


def _reply(reply: Reply | int) -> Reply:
    return Reply(reply) if isinstance(reply, int) else reply


# -- requests reaching moto ---------------------------------------------------------------------------

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
_TARGET_SERVICES = {"DynamoDB_20120810": "dynamodb", "secretsmanager": "secretsmanager", "AmazonSQS": "sqs"}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AwsRequestLog:
    """A WSGI middleware in front of the moto server: records (service, operation) of every request."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        prefix, _, operation = target.partition(".")
        service = _TARGET_SERVICES.get(prefix, "")
        if not service:
            scope = _CREDENTIAL_SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
            service = scope.group(1) if scope else "unknown"
        with self._lock:
            self._calls.append((service, operation or "unknown"))
        return self._app(environ, start_response)

    @property
    def calls(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def of(self, service: str) -> list[str]:
        """Operations sent to `service`, in order."""
        return [operation for name, operation in self.calls if name == service]


# -- what the function printed ----------------------------------------------------------------------


def emf_documents(stdout: str) -> Iterator[dict[str, Any]]:
    """The CloudWatch embedded-metric-format documents among the printed lines."""
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            yield document


def emf_values(stdout: str, name: str) -> list[float]:
    """Every value of metric `name` in the printed EMF documents, in order."""
    values: list[float] = []
    for document in emf_documents(stdout):
        declared = {
            metric["Name"] for directive in document["_aws"]["CloudWatchMetrics"] for metric in directive["Metrics"]
        }
        if name in declared:
            value = document[name]
            values.extend(value if isinstance(value, list) else [value])
    return values


def emf_metric(stdout: str, name: str) -> float:
    """The sum of the values of metric `name` in the printed EMF documents (0 when never emitted)."""
    return sum(emf_values(stdout, name))


# -- what the function logged -----------------------------------------------------------------------


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def recorded_logs(*logger_names: str) -> Iterator[list[logging.LogRecord]]:
    """The records these loggers emit meanwhile. Powertools' handlers keep the stream that was stdout
    when they were made (an earlier test's capture), and the function's loggers do not propagate, so
    capsys and caplog cannot be relied on for them."""
    collector = _Collector()
    loggers = [logging.getLogger(name) for name in logger_names]
    for logger in loggers:
        logger.addHandler(collector)
    try:
        yield collector.records
    finally:
        for logger in loggers:
            logger.removeHandler(collector)
