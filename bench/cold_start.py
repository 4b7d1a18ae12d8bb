"""Figure (c): cold import of `dispatcher.handler` against `import boto3`, each in a fresh interpreter.

The import is timed inside the child, so interpreter start-up (the same for both) is left out.
Runs alternate between the two so that drifting machine load hits both alike; medians are compared.

Both sides import from byte-code, as boto3 does in the Lambda runtime: the children write and read
their byte-code under a temporary PYTHONPYCACHEPREFIX (nothing is written into the repository), and
one untimed run fills it. An informational line shows the function's own modules compiled from
source, which is what every cold start pays if the asset ships without byte-code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import Figure, emit, median, ms, progress, runs, section

REPEATS = 7
TARGET = 1.5
REPO_ROOT = Path(__file__).resolve().parent.parent

# What the first invocation imports (build_dispatcher and the adapters' lazy imports).
FIRST_INVOCATION_IMPORTS = (
    "dispatcher.adapters.http",
    "dispatcher.adapters.dynamodb",
    "dispatcher.adapters.sqs",
    "dispatcher.adapters.secrets",
    "dispatcher.adapters.aws",
    "dispatcher.guard",
    "aiohttp",
    "boto3",
    "botocore.config",
    "aws_lambda_powertools.utilities.parameters",
)

_TIMER = """
import importlib, sys, time
before = [m for m in sys.argv[1].split(",") if m]
measured = [m for m in sys.argv[2].split(",") if m]
for module in before:
    importlib.import_module(module)
started = time.perf_counter()
for module in measured:
    importlib.import_module(module)
elapsed = time.perf_counter() - started
handler = sys.modules.get("dispatcher.handler")
print(getattr(handler, "__file__", "-"))
print(elapsed)
"""


def _environment(pycache: Path | None, code_root: Path) -> dict[str, str]:
    """pycache: byte-code written and read there; None: no byte-code written (site-packages' is read)."""
    subscription = {
        "name": "bench",
        "endpoint": "https://callbacks.example.com/hook",
        "ordering": "none",
        "max_in_flight": 32,
        "signing_secret": "bench/signing-secret",
    }
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment.pop("PYTHONPYCACHEPREFIX", None)
    if pycache is None:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        environment["PYTHONPYCACHEPREFIX"] = str(pycache)
    environment.update(
        {
            "PYTHONPATH": str(code_root),  # the Lambda asset root
            "DISPATCHER_SUBSCRIPTION": json.dumps(subscription),
            "DISPATCHER_IDEMPOTENCY_TABLE": "bench-delivered-ids",
            "DISPATCHER_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/bench-dlq",
            "DISPATCHER_PAYLOAD_BUCKET": "bench-parked-payloads",
            "DISPATCHER_RETRY_LANE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/bench-retry-lane",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    )
    return environment


def _import_seconds(
    measured: tuple[str, ...],
    before: tuple[str, ...] = (),
    pycache: Path | None = None,
    code_root: Path = REPO_ROOT / "functions",
) -> float:
    """Seconds to import `measured` in a fresh interpreter, after `before` (not timed)."""
    completed = subprocess.run(
        [sys.executable, "-c", _TIMER, ",".join(before), ",".join(measured)],
        cwd=code_root,
        env=_environment(pycache, code_root),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"importing {measured} failed:\n{completed.stderr}")
    lines = completed.stdout.strip().splitlines()
    if measured == ("dispatcher.handler",) and lines[0] != str(code_root / "dispatcher" / "handler.py"):
        raise RuntimeError(f"imported the handler from {lines[0]}, not from {code_root}")
    return float(lines[-1])


def run() -> list[Figure]:
    section(f"(c) cold import in a fresh interpreter (PYTHONPATH=functions), median of {REPEATS} alternating runs")
    handler_times, boto3_times, setup_times, source_times = [], [], [], []
    with (
        tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache_dir,
        tempfile.TemporaryDirectory(prefix="bench-asset-") as asset_dir,
    ):
        pycache = Path(pycache_dir)
        asset = Path(asset_dir)  # a copy of the function without byte-code: compiled on every import
        shutil.copytree(
            REPO_ROOT / "functions" / "dispatcher",
            asset / "dispatcher",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        progress("filling the byte-code cache")
        _import_seconds(FIRST_INVOCATION_IMPORTS, before=("dispatcher.handler",), pycache=pycache)
        _import_seconds(("boto3",), pycache=pycache)
        for repeat in range(REPEATS):
            progress(f"cold imports, run {repeat + 1}/{REPEATS}")
            handler_times.append(_import_seconds(("dispatcher.handler",), pycache=pycache))
            boto3_times.append(_import_seconds(("boto3",), pycache=pycache))
            setup_times.append(
                _import_seconds(FIRST_INVOCATION_IMPORTS, before=("dispatcher.handler",), pycache=pycache)
            )
            source_times.append(_import_seconds(("dispatcher.handler",), code_root=asset))
    ratio = median(handler_times) / median(boto3_times)
    return [
        emit(
            Figure(
                "(c) import dispatcher.handler / import boto3",
                f"{ratio:.2f}x",
                f"<= {TARGET}x",
                ratio <= TARGET,
                f"{ms(median(handler_times))} vs {ms(median(boto3_times))} "
                f"({runs(handler_times)} vs {runs(boto3_times)})",
            )
        ),
        emit(
            Figure(
                "(c) the same, function code without byte-code",
                f"{median(source_times) / median(boto3_times):.2f}x",
                detail=f"{ms(median(source_times))}: dispatcher/*.py compiled at import ({runs(source_times)})",
            )
        ),
        emit(
            Figure(
                "(c) first invocation's imports (adapters, aiohttp, boto3)",
                ms(median(setup_times)),
                detail=f"deferred by the handler to its first invocation ({runs(setup_times)})",
            )
        ),
    ]
