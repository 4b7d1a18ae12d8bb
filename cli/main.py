"""The `dispatcher` command line.

A subcommand is a module exposing `register(subcommands)`: it adds its parser and sets `run` as the
parser's default, a function (arguments, terminal) -> exit code. Adding one is one line in COMMANDS.

Only the module of the subcommand being run is imported: some pull in boto3, moto and the CDK (a second or
more), and `dispatcher redrive` must check its arguments before anything slow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import cast

from cli.terminal import EXIT_FAILED, EXIT_USAGE, CommandError, Subcommand, Terminal

# Each subcommand's name and the module registering it, in the order `dispatcher --help` lists them.
COMMANDS: dict[str, str] = {
    "demo": "cli.demo",
    "local": "cli.local",
    "validate": "cli.validate",
    "send": "cli.send",
    "plan": "cli.plan",
    "redrive": "cli.redrive",
}

EPILOG = "exit status: 0 success, 1 the command failed, 2 the command line or its input is wrong"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with `only`, one where only that subcommand is registered by its module and the others
    are bare names (their modules not loaded; a name that is no subcommand leaves them all bare)."""
    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description="Callback dispatcher: Kinesis and SQS records POSTed to registered endpoints.",
        epilog=EPILOG,
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            cast(Subcommand, import_module(module)).register(subcommands)
        else:
            subcommands.add_parser(name)  # never parses: the command line names `only`
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments_given = sys.argv[1:] if argv is None else list(argv)
    first = arguments_given[0] if arguments_given else ""
    # The subcommand comes first: the top level has no option but --help, the one answer that needs every
    # subcommand's module (for its summary). A missing or misspelt subcommand is answered from the names alone.
    parser = build_parser(only=None if first.startswith("-") else first)
    try:
        arguments = parser.parse_args(arguments_given)
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
