"""The command skeleton: help on every subcommand, usage errors as exit 2, no tracebacks."""

from __future__ import annotations

import pytest

from cli.main import COMMANDS, build_parser, main

SMALLEST_COMMAND_LINES = {
    "demo": [],
    "local": [],
    "validate": [],
    "send": ["--stream", "dev-orders"],
    "plan": [],
    "redrive": ["orders-to-ledger"],
}
SUBCOMMANDS = tuple(SMALLEST_COMMAND_LINES)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # When help is asked of a subcommand
    exit_code = main([command, "--help"])

    # Then it prints its usage and exits 0
    assert exit_code == 0
    assert f"usage: dispatcher {command}" in capsys.readouterr().out


def test_the_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0

    out = capsys.readouterr().out
    assert all(command in out for command in SUBCOMMANDS)
    assert "exit status: 0 success, 1 the command failed, 2 the command line or its input" in " ".join(out.split())


def test_an_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy"]) == 2
    assert "invalid choice: 'deploy'" in capsys.readouterr().err


def test_each_module_registers_its_own_subcommand() -> None:
    # Given the modules main.py lists, when the parser is built, then each one's command parses
    parser = build_parser()
    for command, arguments in SMALLEST_COMMAND_LINES.items():
        assert parser.parse_args([command, *arguments]).command == command
    assert len(COMMANDS) == len(SMALLEST_COMMAND_LINES)
