"""The command skeleton: help on every subcommand, usage errors as exit 2, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli.main import COMMANDS, build_parser, main
from tests.cli.conftest import SHIPPED_REGISTRY

SMALLEST_COMMAND_LINES = {
    "demo": [],
    "local": [],
    "validate": [],
    "send": ["--stream", "dev-orders"],
    "plan": [],
    "redrive": ["orders-to-ledger"],
}
SUBCOMMANDS = tuple(SMALLEST_COMMAND_LINES)
# What takes a second or more to import: none of it may load before `dispatcher redrive` checks its arguments.
SLOW_MODULES = ("boto3", "botocore", "moto", "aws_cdk", "rich.live", "rich.table", "rich.progress")
SUBPROCESS_TIMEOUT_SECONDS = 60  # a bound on a hung interpreter, not a speed requirement


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


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_a_subcommand_run_alone_has_the_help_it_has_among_all(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the help of a subcommand as the whole parser prints it
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    among_all = capsys.readouterr().out

    # When the command asks for it (only that subcommand's module loaded)
    assert main([command, "--help"]) == 0

    # Then it is the same text, examples included
    assert capsys.readouterr().out == among_all


@pytest.mark.parametrize(
    ("command_line", "exit_code", "answer"),
    [
        (["redrive", "--help"], 0, ""),
        (["redrive", "orders-to-ledgr"], 2, "no subscription 'orders-to-ledgr' in the registry"),
        (["redrive", "canary", "--wait", "--dry-run"], 2, "a dry run changes nothing"),
        (["redrvie", "canary"], 2, "invalid choice: 'redrvie'"),
        ([], 2, "the following arguments are required: COMMAND"),
    ],
)
def test_redrive_answers_before_loading_aws_or_the_cdk(command_line: list[str], exit_code: int, answer: str) -> None:
    # Given a fresh interpreter, when `dispatcher redrive` is given help, a misspelt name or clashing options
    # (or `dispatcher` a misspelt subcommand, or none)
    probe = (
        "import json, sys\n"
        "from cli.main import main\n"
        f"code = main({command_line!r})\n"
        f"print(json.dumps({{'code': code, 'loaded': [m for m in {SLOW_MODULES!r} if m in sys.modules]}}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=SHIPPED_REGISTRY.parent,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        check=True,
    )

    # Then it has answered (the name checked against the registry) with none of the slow modules loaded
    outcome = json.loads(completed.stdout.splitlines()[-1])
    assert outcome == {"code": exit_code, "loaded": []}
    assert answer in " ".join(completed.stderr.split())
