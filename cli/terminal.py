"""What every subcommand shares: the consoles, the exit codes, and the error that ends a command cleanly."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the command ran and did not succeed: an invalid registry, records not put
EXIT_USAGE: Final = 2  # the command line or its input is wrong; nothing was done (argparse's own code)

# Piped output goes to logs and CI, not a terminal: rich would otherwise wrap table rows at 80 columns.
NON_TERMINAL_WIDTH: Final = 160  # columns


class CommandError(Exception):
    """Ends a command with `message` on stderr (no traceback) and `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Terminal:
    """Results on stdout; progress, warnings and errors on stderr, so stdout can be piped."""

    out: Console
    err: Console

    @classmethod
    def for_process(cls) -> Terminal:
        out = Console(highlight=False)
        err = Console(stderr=True, highlight=False)
        for console in (out, err):
            if not console.is_terminal:
                console.width = NON_TERMINAL_WIDTH
        return cls(out, err)

    def error(self, message: str) -> None:
        # Text, not markup: messages quote user input and regular expressions full of [brackets].
        self.err.print(Text(f"error: {message}", style="bold red"))

    def warning(self, message: str) -> None:
        self.err.print(Text(f"warning: {message}", style="yellow"))


NumberT = TypeVar("NumberT", int, float)


class Subcommand(Protocol):
    """A subcommand module: `register` adds its parser and sets as its `run` default a function
    (arguments: argparse.Namespace, terminal: Terminal) -> exit code."""

    def register(self, subcommands: Subcommands) -> None: ...


def positive_int(text: str) -> int:
    value = _parse(int, text, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _parse(float, text, "a number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _parse(float, text, "a number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def fraction(text: str) -> float:
    value = _parse(float, text, "a number")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


def _parse(kind: type[NumberT], text: str, what: str) -> NumberT:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value
