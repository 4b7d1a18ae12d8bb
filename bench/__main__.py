"""`python -m bench [a|b|c|d ...] [--skip-sequential]`: run the figures (all by default) and print them."""

from __future__ import annotations

import argparse
import os
import platform
import time

from bench import report
from bench.report import Figure


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("figures", nargs="*", metavar="a|b|c|d", help="figures to run (default: all)")
    parser.add_argument(
        "--skip-sequential",
        action="store_true",
        help="leave out the sequential BatchProcessor baseline of (a), which alone takes about 20 s",
    )
    options = parser.parse_args()
    wanted = set(options.figures or "abcd")
    if not wanted <= set("abcd"):
        parser.error(f"unknown figure(s): {', '.join(sorted(wanted - set('abcd')))}")
    started = time.perf_counter()
    print(f"callback-dispatcher benchmark (issue 2 section 11) on Python {platform.python_version()}, {_cpus()}")
    print(report.header())
    figures: list[Figure] = []
    if wanted & {"a", "b"}:
        from bench import http_figures

        figures += http_figures.run(
            figure_a="a" in wanted, figure_b="b" in wanted, sequential_baseline=not options.skip_sequential
        )
    if "c" in wanted:
        from bench import cold_start

        figures += cold_start.run()
    if "d" in wanted:
        from bench import dynamodb_requests

        figures += dynamodb_requests.run()
    _summary(figures, time.perf_counter() - started)


def _summary(figures: list[Figure], elapsed: float) -> None:
    judged = [figure for figure in figures if figure.passed is not None]
    missed = [figure for figure in judged if not figure.passed]
    report.section(f"{len(judged) - len(missed)}/{len(judged)} targets met in {elapsed:.0f} s")
    for figure in missed:
        print(f"MISS: {figure.name}: {figure.value} (target {figure.target})")


def _cpus() -> str:
    return f"{os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
