"""A helper process of the benchmark (the endpoint, the embedded AWS): its own interpreter, so it does not
share the measured process's interpreter lock, on 127.0.0.1 only, stopped when the benchmark closes its
stdin or dies, and after a bounded lifetime.

The child prints `READY <port>` once it listens; the parent waits for that line.
"""

from __future__ import annotations

import contextlib
import selectors
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Self

LOOPBACK = "127.0.0.1"  # the only address a helper ever binds or is reached at
MAX_LIFETIME_SECONDS = 900.0
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def stop_when_parent_leaves(stop: Callable[[], object]) -> None:
    """In the child: call `stop` (from another thread) once the parent closed the pipe or died."""

    def parent_gone() -> None:
        sys.stdin.buffer.read()  # returns at EOF
        stop()

    threading.Thread(target=parent_gone, daemon=True).start()


def announce_ready(port: int) -> None:
    """In the child: tell the parent where it listens."""
    print(f"READY {port}", flush=True)


class ChildProcess:
    """`python -m <module>` started on enter and always stopped on exit."""

    def __init__(self, module: str, description: str) -> None:
        self._module = module
        self._description = description
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, "-m", self._module],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            self.port = self._await_ready(self._process)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def _await_ready(self, process: subprocess.Popen[bytes]) -> int:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(READY_TIMEOUT_SECONDS):
                raise RuntimeError(f"{self._description} not ready after {READY_TIMEOUT_SECONDS:.0f}s")
        line = process.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"{self._description} failed to start (said {line!r}, exit code {process.poll()})")
        return int(line.split()[1])
