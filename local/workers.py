"""Function workers: a deployed function's real handler code, run in separate processes the way Lambda runs it.

A `FunctionRunner` owns the execution environments of one function. Each environment is a long-lived worker
process started with the function's environment variables; it imports the handler once (the cold start) and
then serves invocations while warm. What Lambda guarantees, the runner reproduces:

- a Lambda-like context (function name, memory, ARN, request id, `get_remaining_time_in_millis()` counting
  down from the function's timeout);
- an invocation that outlives the timeout is killed (SIGKILL) and reported as a timeout; the environment is
  gone and the next invocation cold-starts a fresh one;
- an exception in the handler is a function error carrying its type and message; the environment stays warm;
- at most `reserved_concurrency` environments run at once: further invocations wait (throttling);
- the function's stdout and stderr are its log stream: EMF lines become metrics of the invocation, every line
  goes to the function's log file (never the terminal).

Protocol between the runner and a worker: requests are JSON lines on the worker's stdin. The worker's stdout
and stderr are one pipe; the worker writes its answers on that same pipe as lines carrying a per-worker random
marker, after flushing the function's own output, so every log line read before an answer belongs to that
invocation. A worker exits on stdin EOF and when the process that started it is gone, so none outlive the
runtime, even if the runtime itself is killed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import json
import os
import random
import secrets
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from local.spec import FunctionSpec, function_arn

FALLBACK_REGION = "us-east-1"  # when neither the caller nor AWS_REGION / AWS_DEFAULT_REGION names one
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's limit on the init phase; not part of the function's timeout
WORKER_EXIT_GRACE_SECONDS = 2.0  # close(): an idle worker gets this long to exit on stdin EOF before SIGKILL
PARENT_CHECK_INTERVAL_SECONDS = 0.5  # how often a worker checks that the runtime that started it still lives
OUTPUT_LINE_LIMIT_BYTES = 16 * 1024 * 1024  # longest worker output line (a response may be up to 6 MB)
RECENT_LOG_LINES = 1_000  # log lines kept in memory per function when no log file is given
# Environment variables a worker inherits besides AWS_*: what a Python process needs to run at all.
INHERITED_PROCESS_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
# How the worker imports this module: the runtime's sys.path first, so the handler and its packages resolve
# exactly as they do in the runtime (argv[1] is that path as JSON, argv[2] the answer marker).
_WORKER_BOOTSTRAP = (
    "import json, sys\n"
    "sys.path[:0] = [entry for entry in json.loads(sys.argv[1]) if entry not in sys.path]\n"
    "from local.workers import serve_invocations\n"
    "serve_invocations(sys.argv[2])\n"
)


class RunnerClosedError(RuntimeError):
    """invoke() was called on a FunctionRunner that has been closed."""


@dataclass(frozen=True)
class InvocationResult:
    """What one invocation produced, as the event source mapping sees it.

    `response` is the handler's JSON-decoded return value (None when it failed or returned None). `error` is set
    for every function error: "<type>: <message>" of an exception, a timeout, a crash or an init failure.
    `metrics` sums the values of every Count metric of the EMF lines the invocation printed, by metric name.
    """

    request_id: str
    response: object = None
    error: str | None = None
    error_type: str | None = None
    timed_out: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    duration_seconds: float = 0.0
    cold_start: bool = False

    @property
    def failed(self) -> bool:
        return self.error is not None


class FunctionRunner:
    """The execution environments of one function: `await invoke(event)` as Lambda's synchronous Invoke would.

    `crash_probability` (0..1) is a fault knob: with that probability an invocation's worker is SIGKILLed at a
    random moment while it runs, as a Lambda timeout would (the invocation is a timeout, its response lost).
    `log_path` receives every line the function prints, between Lambda-style START / END / REPORT lines.
    `environment_overrides` wins over both the inherited and the function's own variables.

    Bound to the event loop it is first used on. `close()` stops every worker within a few seconds.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        crash_probability: float = 0.0,
        log_path: Path | None = None,
        region: str | None = None,
        environment_overrides: Mapping[str, str] | None = None,
        random_source: random.Random | None = None,
    ) -> None:
        if not 0.0 <= crash_probability <= 1.0:
            raise ValueError(f"crash_probability must be within 0..1, got {crash_probability}")
        if spec.reserved_concurrency < 1:
            raise ValueError(f"{spec.name}: reserved_concurrency must be at least 1, got {spec.reserved_concurrency}")
        self.spec = spec
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or FALLBACK_REGION
        self.function_arn = function_arn(self.region, spec.name)
        self.recent_log_lines: collections.deque[str] = collections.deque(maxlen=RECENT_LOG_LINES)
        self._crash_probability = crash_probability
        self._random = random_source or random.Random()
        self._environment = worker_environment(spec, self.region, environment_overrides or {})
        self._log_file: IO[str] | None = log_path.open("a", encoding="utf-8", buffering=1) if log_path else None
        self._concurrency = asyncio.Semaphore(spec.reserved_concurrency)
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._typical_duration_seconds = spec.timeout_seconds  # where a crash lands: see _draw_crash_moment
        self._closed = False

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers alive now (busy or idle)."""
        return [worker.process.pid for worker in self._workers]

    async def invoke(self, event: dict[str, Any]) -> InvocationResult:
        """Run the handler on `event` in a warm worker (or a fresh one); waits while the function is at its
        reserved concurrency. Never raises for a function error: that is in the result."""
        async with self._concurrency:
            if self._closed:
                raise RunnerClosedError(f"{self.spec.name}: the runner is closed")
            request_id = str(uuid.uuid4())
            cold_start = not self._idle
            if cold_start:
                started = await self._start_worker(request_id)
                if isinstance(started, InvocationResult):
                    return started
                worker = started
            else:
                worker = self._idle.pop()
            result = await self._invoke_in(worker, event, request_id, cold_start)
            if worker.alive and not self._closed:
                self._idle.append(worker)
            return result

    async def close(self) -> None:
        """Stop every worker: idle ones exit on stdin EOF, busy or stubborn ones are killed."""
        self._closed = True
        idle, self._idle = self._idle, []
        busy = self._workers.difference(idle)
        for worker in busy:
            worker.kill()
        for worker in idle:
            worker.close_input()
        await asyncio.gather(*(worker.stop(WORKER_EXIT_GRACE_SECONDS) for worker in self._workers))
        self._workers.clear()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def _start_worker(self, request_id: str) -> _Worker | InvocationResult:
        """A fresh worker that has imported the handler, or the failed invocation its init failure makes."""
        started = time.monotonic()
        worker = await _Worker.spawn(self._environment)
        self._workers.add(worker)
        try:
            answer = await asyncio.wait_for(worker.read_answer(self._log), INIT_TIMEOUT_SECONDS)
        except TimeoutError:
            answer = {"kind": "init_error", "error_type": "Runtime.InitTimeout", "message": "init phase timed out"}
        except BaseException:
            await self._discard(worker)
            raise
        if answer.get("kind") == "ready":
            return worker
        await self._discard(worker)
        error_type = str(answer.get("error_type", "Runtime.InitError"))
        message = str(answer.get("message", "the worker exited during init"))
        self._log(f"INIT_REPORT RequestId: {request_id} Status: error {error_type}: {message}")
        return InvocationResult(
            request_id,
            error=f"{error_type}: {message}",
            error_type=error_type,
            duration_seconds=time.monotonic() - started,
            cold_start=True,
        )

    async def _invoke_in(
        self, worker: _Worker, event: dict[str, Any], request_id: str, cold_start: bool
    ) -> InvocationResult:
        timeout = self.spec.timeout_seconds
        crash_at = self._draw_crash_moment()
        metrics: dict[str, float] = collections.defaultdict(float)

        def collect(line: str) -> None:
            self._log(line)
            add_emf_metrics(line, metrics)

        self._log(f"START RequestId: {request_id} Version: $LATEST")
        started = time.monotonic()
        try:
            await worker.send({"request_id": request_id, "event": event, "timeout_seconds": timeout})
            time_limit = timeout if crash_at is None else min(timeout, crash_at)
            answer = await asyncio.wait_for(worker.read_answer(collect), time_limit)
        except TimeoutError:
            answer = None
        except BaseException:
            # Cancelled mid-invocation: the worker's answer would land in the next invocation; end it.
            await self._discard(worker)
            raise
        duration = time.monotonic() - started
        if answer is None or crash_at is not None:
            await self._discard(worker)
            killed_by = "crash injection" if crash_at is not None and crash_at < timeout else "its timeout"
            message = f"Task timed out after {duration:.2f} seconds (worker killed by {killed_by})"
            self._log(f"{request_id} {message}")
            result = InvocationResult(
                request_id,
                error=message,
                error_type="Sandbox.Timedout",
                timed_out=True,
                metrics=dict(metrics),
                duration_seconds=duration,
                cold_start=cold_start,
            )
        else:
            self._typical_duration_seconds = duration
            result = _result_from_answer(answer, request_id, dict(metrics), duration, cold_start)
            if not worker.alive:
                await self._discard(worker)
        self._log(f"END RequestId: {request_id}")
        self._log(
            f"REPORT RequestId: {request_id} Duration: {duration * 1000:.2f} ms "
            f"Memory Size: {self.spec.memory_mb} MB{' (cold start)' if cold_start else ''}"
        )
        return result

    def _draw_crash_moment(self) -> float | None:
        """Seconds into the invocation at which to kill the worker, or None for no crash.

        The moment is drawn over the previous invocation's duration, the best guess of this one's, so it lands
        mid-batch. If the handler answers first, the answer is thrown away and the worker killed anyway: the
        crash then happened just before the response reached Lambda, which loses it just the same.
        """
        if self._crash_probability == 0.0 or self._random.random() >= self._crash_probability:
            return None
        return self._random.uniform(0.0, min(self._typical_duration_seconds, self.spec.timeout_seconds))

    async def _discard(self, worker: _Worker) -> None:
        worker.kill()
        await worker.stop(0.0)
        self._workers.discard(worker)

    def _log(self, line: str) -> None:
        self.recent_log_lines.append(line)
        if self._log_file is not None:
            self._log_file.write(line + "\n")


def worker_environment(spec: FunctionSpec, region: str, overrides: Mapping[str, str]) -> dict[str, str]:
    """A worker's environment: process basics and the runtime's AWS_* settings (endpoint, credentials,
    region), Lambda's reserved variables, then the function's own variables, then `overrides`."""
    environment = {name: os.environ[name] for name in INHERITED_PROCESS_VARIABLES if name in os.environ}
    environment |= {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    environment |= {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "_HANDLER": spec.handler,
        # Unbuffered, so the lines a killed invocation printed before dying still reach its log.
        "PYTHONUNBUFFERED": "1",
    }
    return environment | dict(spec.environment) | dict(overrides)


def add_emf_metrics(line: str, sums: dict[str, float]) -> None:
    """Add the Count metrics of one CloudWatch Embedded Metric Format line to `sums` (other lines: no-op).

    Only Count metrics are summed: a sum of latencies or percentages would mean nothing.
    """
    document = _emf_document(line)
    if document is None:
        return
    for name in _count_metric_names(document):
        values = document.get(name)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, int | float) and not isinstance(value, bool):
                sums[name] = sums.get(name, 0.0) + value


def _emf_document(line: str) -> dict[str, Any] | None:
    """The JSON object of an EMF line; None for any other line."""
    if not line.startswith("{") or "_aws" not in line:
        return None
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _count_metric_names(document: dict[str, Any]) -> Iterator[str]:
    """The names of the Count metrics (the default unit) an EMF document's directives declare."""
    metadata = document.get("_aws")
    directives = metadata.get("CloudWatchMetrics") if isinstance(metadata, dict) else None
    for directive in directives if isinstance(directives, list) else []:
        definitions = directive.get("Metrics") if isinstance(directive, dict) else None
        for definition in definitions if isinstance(definitions, list) else []:
            name = definition.get("Name") if isinstance(definition, dict) else None
            if isinstance(name, str) and definition.get("Unit", "Count") == "Count":
                yield name


def _result_from_answer(
    answer: dict[str, Any], request_id: str, metrics: dict[str, float], duration: float, cold_start: bool
) -> InvocationResult:
    if answer.get("kind") == "result":
        return InvocationResult(
            request_id,
            response=answer.get("response"),
            metrics=metrics,
            duration_seconds=duration,
            cold_start=cold_start,
        )
    error_type = str(answer.get("error_type", "Runtime.ExitError"))
    message = str(answer.get("message", "the worker exited without answering"))
    return InvocationResult(
        request_id,
        error=f"{error_type}: {message}",
        error_type=error_type,
        metrics=metrics,
        duration_seconds=duration,
        cold_start=cold_start,
    )


class _Worker:
    """One worker process, seen from the runner."""

    def __init__(self, process: asyncio.subprocess.Process, marker: str) -> None:
        self.process = process
        self.marker = marker
        self.alive = True

    @classmethod
    async def spawn(cls, environment: dict[str, str]) -> _Worker:
        marker = f"\x1e{secrets.token_hex(16)}\x1e"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER_BOOTSTRAP,
            json.dumps([entry for entry in sys.path if entry]),
            marker,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=environment,
            limit=OUTPUT_LINE_LIMIT_BYTES,
        )
        return cls(process, marker)

    async def send(self, request: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()

    async def read_answer(self, on_log_line: Callable[[str], None]) -> dict[str, Any]:
        """Pass the function's output lines to `on_log_line` until the worker's answer; a worker that exits
        first answers {"kind": "exit"}."""
        assert self.process.stdout is not None
        while True:
            try:
                raw = await self.process.stdout.readline()
            except ValueError:  # a line longer than OUTPUT_LINE_LIMIT_BYTES: the stream cannot resync
                self.kill()
                return {"kind": "exit", "error_type": "Runtime.OutputTooLarge", "message": "an output line is too long"}
            if not raw:
                self.alive = False
                code = await self.process.wait()
                return {"kind": "exit", "error_type": "Runtime.ExitError", "message": f"worker exited with {code}"}
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            log_part, marker, answer = line.partition(self.marker)
            if log_part:
                on_log_line(log_part)
            if marker:
                decoded: dict[str, Any] = json.loads(answer)
                return decoded

    def close_input(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()

    def kill(self) -> None:
        self.alive = False
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def stop(self, grace_seconds: float) -> None:
        """Wait up to `grace_seconds` for the process to exit, then kill it and reap it."""
        try:
            await asyncio.wait_for(self.process.wait(), grace_seconds)
        except TimeoutError:
            self.kill()
            await self.process.wait()
        self.alive = False


# -- inside the worker process --------------------------------------------------------------------------------


class LocalLambdaContext:
    """The Lambda context object, with the attributes handlers and Powertools read."""

    def __init__(self, request_id: str, timeout_seconds: float) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.invoked_function_arn = function_arn(os.environ["AWS_REGION"], self.function_name)
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{self.function_name}")
        self.log_stream_name = f"local/{os.getpid()}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def serve_invocations(marker: str) -> None:
    """The worker's main loop: import the handler (cold start), then answer invocations until stdin closes."""
    # Ctrl-C reaches the whole process group; the runtime decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_when_orphaned(os.getppid())
    module_name, _, attribute = os.environ["_HANDLER"].rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:
        traceback.print_exc()
        _answer(marker, {"kind": "init_error", "error_type": type(error).__name__, "message": str(error)})
        sys.exit(1)
    _answer(marker, {"kind": "ready"})
    for request_line in sys.stdin.buffer:
        request = json.loads(request_line)
        context = LocalLambdaContext(request["request_id"], request["timeout_seconds"])
        try:
            response = handler(request["event"], context)
        except Exception as error:
            traceback.print_exc()
            _answer(marker, {"kind": "error", "error_type": type(error).__name__, "message": str(error)})
            continue
        try:
            _answer(marker, {"kind": "result", "response": response})
        except (TypeError, ValueError) as error:
            _answer(marker, {"kind": "error", "error_type": "Runtime.MarshalError", "message": str(error)})


def _answer(marker: str, answer: dict[str, Any]) -> None:
    line = (marker + json.dumps(answer) + "\n").encode()  # serialise first: a marshal error must not half-write
    sys.stdout.flush()
    sys.stderr.flush()
    # A leading newline keeps the marker off the end of a line the function left unterminated.
    remaining = memoryview(b"\n" + line)
    while remaining:
        written = os.write(sys.stdout.fileno(), remaining)
        remaining = remaining[written:]


def _exit_when_orphaned(parent_pid: int) -> None:
    """Exit as soon as the process that started this worker is gone (reparenting changes getppid())."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_INTERVAL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
