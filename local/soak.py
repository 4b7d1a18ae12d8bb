"""`make soak`: the demo run after run on a machine kept busy on purpose, with and without faults.

The demo's failures that matter most (order lost, events lost or duplicated by the local runtime) showed only
when other work held the CPUs, so the soak makes that work itself: one busy-loop process per CPU, started
before the first run and always stopped after the last. Runs alternate between a clean endpoint and one with
every fault knob on, a key outage among them, so every other run sends records through the retry lanes. Each
run is a fresh `dispatcher demo --json` process; one line per run, then a summary.
The exit status is 0 only if every run was clean.

    python -m local.soak [--runs N]      (make soak, SOAK_RUNS=N)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

DEFAULT_RUNS = 5
# The faults of every other run: the knobs README's example uses, and a quarter of the keys refused for a while.
FAULT_ARGUMENTS = (
    "--fail-rate",
    "0.1",
    "--timeout-rate",
    "0.02",
    "--crash-rate",
    "0.05",
    "--key-outage-rate",
    "0.25",
    "--outage-seconds",
    "10",
)
DEMO_COMMAND = (sys.executable, "-m", "cli.main", "demo", "--json")
BUSY_LOOP_EXIT_GRACE_SECONDS = 5.0  # a busy loop gets this long to die after SIGTERM before SIGKILL
# A busy loop that ends by itself when the soak that started it is gone (even if the soak is killed outright),
# so none outlives it.
_BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"


@dataclass(frozen=True)
class RunResult:
    number: int
    faults: bool
    exit_code: int
    seconds: float
    report: dict[str, Any] | None  # the demo's JSON report; None when it printed none (it crashed)

    @property
    def clean(self) -> bool:
        return self.exit_code == 0 and self.report is not None and bool(self.report.get("ok"))

    def line(self) -> str:
        report = self.report or {}

        def field(name: str) -> str:
            value = report.get(name, "-")
            return f"{value:.0f}" if isinstance(value, float) else str(value)

        return (
            f"run {self.number}: faults={'on' if self.faults else 'off'} delivered={field('delivered')} "
            f"lost={field('lost')} out_of_order={field('out_of_order')} duplicates={field('duplicates_absorbed')} "
            f"held_keys={field('max_held_keys')} iterator_age_ms={field('max_iterator_age_ms')} "
            f"exit={self.exit_code} seconds={self.seconds:.1f}"
        )


@contextmanager
def cpu_load(processes: int | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Keep `processes` CPUs (default: all of them) busy for the body of the `with`; always stopped after it."""
    count = processes if processes is not None else os.cpu_count() or 1
    loops: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            loops.append(subprocess.Popen([sys.executable, "-c", _BUSY_LOOP]))
        yield loops
    finally:
        for loop in loops:
            loop.terminate()
        for loop in loops:
            try:
                loop.wait(timeout=BUSY_LOOP_EXIT_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                loop.kill()
                loop.wait()


def run_demo(number: int, faults: bool) -> RunResult:
    """One `dispatcher demo --json` in its own process; its report is read from its standard output (its
    progress goes to standard error, which stays on the terminal)."""
    started = time.monotonic()
    completed = subprocess.run(
        [*DEMO_COMMAND, *(FAULT_ARGUMENTS if faults else ())], stdout=subprocess.PIPE, text=True, check=False
    )
    seconds = time.monotonic() - started
    try:
        report = json.loads(completed.stdout)
    except ValueError:
        report = None
    return RunResult(number, faults, completed.returncode, seconds, report if isinstance(report, dict) else None)


def soak(runs: int, output: TextIO = sys.stdout) -> bool:
    """`runs` demos under CPU load, the odd-numbered without faults and the even-numbered with them; whether
    every one was clean."""
    results = []
    with cpu_load():
        for number in range(1, runs + 1):
            result = run_demo(number, faults=number % 2 == 0)
            print(result.line(), file=output, flush=True)
            results.append(result)
    clean = sum(result.clean for result in results)
    failed = [str(result.number) for result in results if not result.clean]
    verdict = "every run clean" if not failed else f"FAILED runs: {', '.join(failed)}"
    print(f"soak: {clean}/{runs} runs clean under CPU load ({os.cpu_count()} busy loops): {verdict}", file=output)
    return not failed


def positive_runs(text: str) -> int:
    try:
        runs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the number of runs must be a whole number, got {text!r}") from None
    if runs < 1:
        raise argparse.ArgumentTypeError(f"the number of runs must be at least 1, got {runs}")
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=positive_runs, default=DEFAULT_RUNS, help=f"default {DEFAULT_RUNS}")
    arguments = parser.parse_args(argv)
    return 0 if soak(arguments.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
