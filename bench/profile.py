"""`python -m bench --profile`: cProfile of one warm 1,000-record invocation of the Lambda handler against the
20 ms endpoint, the functions that took longest themselves first, and the same summed by package: where to look
before changing anything for figures (a) and (b). Beside it, the garbage collections of the same invocation,
which cProfile charges to whatever function happened to allocate when one started."""

from __future__ import annotations

import contextlib
import cProfile
import gc
import pstats
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import workload
from bench.aws_process import AwsProcess
from bench.endpoint import EndpointProcess
from bench.lambda_function import LambdaFunction
from bench.report import section

RECORDS = 1000
LATENCY_MS = 20
FUNCTIONS_SHOWN = 30
PACKAGES_SHOWN = 15


def run() -> None:
    section(f"cProfile of one warm {RECORDS}-record invocation through the handler, {LATENCY_MS} ms endpoint")
    with AwsProcess() as aws, EndpointProcess() as endpoint, LambdaFunction(aws, endpoint.url(LATENCY_MS)) as function:
        function.invoke(workload.kinesis_event(RECORDS))
        profiled_event = workload.kinesis_event(RECORDS, first=RECORDS)
        profile = cProfile.Profile()
        with _collections_timed() as collections:
            profile.enable()
            invocation = function.invoke(profiled_event)
            profile.disable()
    print(f"invocation: {invocation.seconds * 1000:.0f} ms under the profiler")
    print(
        f"garbage collection: {collections.seconds * 1000:.1f} ms in {sum(collections.by_generation)} collections "
        f"(by generation {collections.by_generation}), {gc.get_freeze_count():,} objects frozen"
    )
    statistics = pstats.Stats(profile)
    print("\nby package (own time):")
    for package, seconds in _by_package(statistics).most_common(PACKAGES_SHOWN):
        print(f"  {seconds * 1000:8.1f} ms  {package}")
    print()
    statistics.sort_stats(pstats.SortKey.TIME).print_stats(FUNCTIONS_SHOWN)


@dataclass
class _Collections:
    seconds: float = 0.0
    by_generation: list[int] = field(default_factory=lambda: [0, 0, 0])
    _started: float = 0.0


@contextlib.contextmanager
def _collections_timed() -> Iterator[_Collections]:
    """The time the interpreter spends in garbage collections while the block runs, by generation."""
    collections = _Collections()

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections._started = time.perf_counter()
        else:
            collections.seconds += time.perf_counter() - collections._started
            collections.by_generation[info["generation"]] += 1

    gc.callbacks.append(timed)
    try:
        yield collections
    finally:
        gc.callbacks.remove(timed)


def _by_package(statistics: pstats.Stats) -> Counter[str]:
    """Own time per top-level package (site-packages), per dispatcher module, or per standard-library file."""
    totals: Counter[str] = Counter()
    for (filename, _, _), (_, _, own_seconds, _, _) in statistics.stats.items():  # type: ignore[attr-defined]
        path = Path(filename)
        if "site-packages" in path.parts:
            name = path.parts[path.parts.index("site-packages") + 1]
        elif "dispatcher" in path.parts:
            name = "dispatcher/" + "/".join(path.parts[path.parts.index("dispatcher") + 1 :])
        else:
            name = path.name
        totals[name] += own_seconds
    return totals
