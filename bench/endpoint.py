"""The callback endpoint the HTTP figures post to: a separate process on 127.0.0.1.

A separate process, not a thread, so it does not share the benchmark's interpreter lock. It is a
minimal HTTP/1.1 keep-alive server on bare asyncio protocols (no framework), so that with requests
answered at once it is faster than the clients measured and the figures describe the clients.

`POST /delay/<ms>` answers 200 after <ms> milliseconds; any other path answers at once.
The process stops by itself when its parent closes its stdin (or dies), and after a bounded lifetime.

Run as `python -m bench.endpoint`; it prints `READY <port>` once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

from bench.child_process import (
    LOOPBACK,
    MAX_LIFETIME_SECONDS,
    ChildProcess,
    announce_ready,
    stop_when_parent_leaves,
)

MAX_HEADER_BYTES = 16 * 1024

RESPONSE_OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
RESPONSE_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Connection(asyncio.Protocol):
    """One keep-alive connection; requests are answered one at a time, in order."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy = False  # a delayed response is pending: hold the next request until it is sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._serve()

    def _serve(self) -> None:
        while not self._busy and self._transport is not None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    self._reject()
                return
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            length, close = 0, False
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding":
                    self._reject()  # the clients measured send Content-Length; keep the parser honest
                    return
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if len(self._buffer) < end + 4 + length:
                return
            del self._buffer[: end + 4 + length]
            delay_ms = _delay_ms(head[0])
            if delay_ms > 0:
                self._busy = True
                asyncio.get_running_loop().call_later(delay_ms / 1000, self._respond, close)
                return
            self._respond(close, serve_next=False)
            if close:
                return

    def _respond(self, close: bool, serve_next: bool = True) -> None:
        self._busy = False
        if self._transport is None:
            return
        self._transport.write(RESPONSE_OK)
        if close:
            self._transport.close()
        elif serve_next:
            self._serve()

    def _reject(self) -> None:
        if self._transport is not None:
            self._transport.write(RESPONSE_BAD)
            self._transport.close()


def _delay_ms(request_line: str) -> int:
    parts = request_line.split(" ")
    path = parts[1] if len(parts) > 1 else "/"
    if path.startswith("/delay/"):
        with contextlib.suppress(ValueError):
            return max(0, int(path[len("/delay/") :].split("?", 1)[0]))
    return 0


async def _serve_forever() -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def finish() -> None:
        if not stop.done():
            stop.set_result(None)

    stop_when_parent_leaves(lambda: loop.call_soon_threadsafe(finish))
    loop.call_later(MAX_LIFETIME_SECONDS, finish)
    server = await loop.create_server(_Connection, LOOPBACK, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    announce_ready(port)
    async with server:
        await stop


class EndpointProcess(ChildProcess):
    """The endpoint in its own interpreter, always stopped (use as a context manager)."""

    def __init__(self) -> None:
        super().__init__("bench.endpoint", "benchmark endpoint")

    def url(self, delay_ms: int = 0) -> str:
        return f"http://{LOOPBACK}:{self.port}/delay/{delay_ms}"


@contextlib.contextmanager
def running_endpoint() -> Iterator[EndpointProcess]:
    with EndpointProcess() as endpoint:
        yield endpoint


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever())
    os._exit(0)
