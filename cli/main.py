"""The `dispatcher` command line.

A subcommand is a module exposing `register(subcommands)`: it adds its parser and sets `run` as the
parser's default, a function (arguments, terminal) -> exit code. Adding one is one line in COMMANDS.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import demo, local, plan, redrive, send, validate
from cli.terminal import EXIT_FAILED, EXIT_USAGE, CommandError, Subcommand, Terminal

COMMANDS: tuple[Subcommand, ...] = (demo, local, validate, send, plan, redrive)

EPILOG = "exit status: 0 success, 1 the command failed, 2 the command line or its input is wrong"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description="Callback dispatcher: Kinesis and SQS records POSTed to registered endpoints.",
        epilog=EPILOG,
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_request:
        # argparse exits itself, 0 after --help and 2 after a usage error; callers and tests get the code.
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    terminal = Terminal.for_process()
    try:
        exit_code: int = arguments.run(arguments, terminal)
    except CommandError as error:
        terminal.error(error.message)
        return error.exit_code
    except KeyboardInterrupt:
        terminal.error("interrupted")
        return EXIT_FAILED
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
