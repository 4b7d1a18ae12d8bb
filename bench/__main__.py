"""`python -m bench [a|b|c|d|e ...] [--skip-sequential] [--profile] [--instructions]`: run the figures (all by
default) and print them, profile one invocation of the handler, or count (b) in CPU instructions."""

from __future__ import annotations

import argparse
import contextlib
import time

from bench import report
from bench.report import Figure

FIGURES = "abcde"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("figures", nargs="*", metavar="a|b|c|d|e", help="figures to run (default: all)")
    parser.add_argument(
        "--skip-sequential",
        action="store_true",
        help="leave out the sequential BatchProcessor baseline of (a), which alone takes about 20 s",
    )
    parser.add_argument(
        "--profile", action="store_true", help="instead of the figures: cProfile one 1,000-record invocation"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead of the figures: (b) counted in CPU instructions under callgrind (minutes; needs valgrind)",
    )
    options = parser.parse_args()
    if options.instructions:
        from bench import instructions

        instructions.run()
        return
    if options.profile:
        from bench import profile

        profile.run()
        return
    wanted = set(options.figures or FIGURES)
    if not wanted <= set(FIGURES):
        parser.error(f"unknown figure(s): {', '.join(sorted(wanted - set(FIGURES)))}")
    from bench.cost_figure import machine_description

    started = time.perf_counter()
    print(f"callback-dispatcher benchmark (issues 2 and 10) on {machine_description()}")
    print(report.header())
    figures: list[Figure] = []
    if wanted & {"a", "b", "e"}:
        figures += _through_the_handler(wanted, sequential_baseline=not options.skip_sequential)
    if "c" in wanted:
        from bench import cold_start

        figures += cold_start.run()
    if "d" in wanted:
        from bench import dynamodb_requests

        figures += dynamodb_requests.run()
    _summary(figures, time.perf_counter() - started)


def _through_the_handler(wanted: set[str], sequential_baseline: bool) -> list[Figure]:
    """(a), (b) and (e): the Lambda handler with its AWS (moto) and its endpoint, each in its own process."""
    from bench import cost_figure, http_figures
    from bench.aws_process import AwsProcess
    from bench.endpoint import EndpointProcess

    figures: list[Figure] = []
    with contextlib.ExitStack() as stack:
        report.progress("starting the endpoint and moto")
        aws = stack.enter_context(AwsProcess())
        endpoint = stack.enter_context(EndpointProcess())
        if wanted & {"a", "b"}:
            figures += http_figures.run(
                aws,
                endpoint,
                figure_a="a" in wanted,
                figure_b="b" in wanted,
                sequential_baseline=sequential_baseline,
            )
        if "e" in wanted:
            figures += cost_figure.run(aws, endpoint)
    return figures


def _summary(figures: list[Figure], elapsed: float) -> None:
    judged = [figure for figure in figures if figure.passed is not None]
    missed = [figure for figure in judged if not figure.passed]
    report.section(f"{len(judged) - len(missed)}/{len(judged)} targets met in {elapsed:.0f} s")
    for figure in missed:
        print(f"MISS: {figure.name}: {figure.value} (target {figure.target})")


if __name__ == "__main__":
    main()
