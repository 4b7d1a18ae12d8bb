"""One printed line per figure: what was measured, the value, the target, PASS/MISS, and how."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

NAME_WIDTH = 58
VALUE_WIDTH = 14
TARGET_WIDTH = 16


@dataclass(frozen=True)
class Figure:
    name: str
    value: str
    target: str = ""  # empty for baselines and informational lines
    passed: bool | None = None  # None: no target (baseline or informational)
    detail: str = ""

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "info"
        return "PASS" if self.passed else "MISS"


def header() -> str:
    return _row("figure", "measured", "target", "result", "detail")


def line(figure: Figure) -> str:
    return _row(figure.name, figure.value, figure.target, figure.verdict, figure.detail)


def emit(figure: Figure) -> Figure:
    print(line(figure), flush=True)
    return figure


def section(title: str) -> None:
    print(f"\n{title}", flush=True)


def progress(message: str) -> None:
    """Progress notes go to stderr so stdout is only the table."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _row(name: str, value: str, target: str, verdict: str, detail: str) -> str:
    return f"{name:<{NAME_WIDTH}} {value:>{VALUE_WIDTH}}  {target:<{TARGET_WIDTH}} {verdict:<5} {detail}".rstrip()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def runs(values: Sequence[float], unit: str = "ms") -> str:
    """The individual runs, for the reader to judge the noise."""
    if unit == "ms":
        return "/".join(f"{value * 1000:.0f}" for value in values) + " ms"
    return "/".join(f"{value:.0f}" for value in values) + f" {unit}"
