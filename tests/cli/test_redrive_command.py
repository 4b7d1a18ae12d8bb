"""`dispatcher redrive` answers plainly before anything slow: a wrong name or option costs no synthesis and no
AWS call, and the help's examples and exit codes are the ones the command uses."""

from __future__ import annotations

import re
import shlex
import socket
from typing import Any

import pytest

import cli.redrive
import local.synth
import redrive
from cli.main import build_parser, main
from cli.terminal import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from infra.registry import load_registry
from redrive.local_target import embedded_aws_port
from tests.cli.conftest import SHIPPED_REGISTRY, RegistryCopier


@pytest.fixture
def nothing_slow(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every slow step of a redrive (synthesis, finding the deployed or local target) fails the test if called;
    the list names the steps that were called."""
    called: list[str] = []

    def forbidden(name: str) -> Any:
        def step(*_: Any, **__: Any) -> Any:
            called.append(name)
            raise AssertionError(f"{name} was called before the command line was checked")

        return step

    monkeypatch.setattr(local.synth, "synthesize", forbidden("synthesize"))
    monkeypatch.setattr(redrive, "aws_target", forbidden("aws_target"))
    monkeypatch.setattr(redrive, "local_target", forbidden("local_target"))
    return called


@pytest.mark.parametrize("mode", [["--env", "prod"], ["--local"]])
def test_an_unknown_subscription_is_refused_before_anything_slow_with_the_names_close_to_it(
    mode: list[str], nothing_slow: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # When a redrive names a subscription with a typo
    exit_code = main(["redrive", "orders-to-warehous", *mode, "--registry", str(SHIPPED_REGISTRY)])

    # Then it exits 2 naming the close match, and neither synthesized nor looked anything up
    assert exit_code == EXIT_USAGE
    assert "did you mean orders-to-warehouse" in " ".join(capsys.readouterr().err.split())
    assert nothing_slow == []


def test_an_invalid_registry_is_a_usage_error_before_anything_slow(
    copy_registry: RegistryCopier, nothing_slow: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a registry whose team file is not YAML
    registry = copy_registry({"teams/fulfilment.yaml": "team: [unclosed"})

    # When a redrive runs against it
    exit_code = main(["redrive", "orders-to-warehouse", "--env", "prod", "--registry", str(registry)])

    # Then it exits 2 saying the registry does not load, having done nothing slow
    assert exit_code == EXIT_USAGE
    assert "the registry does not load" in capsys.readouterr().err
    assert nothing_slow == []


@pytest.mark.parametrize(
    "options",
    [
        ["--dry-run", "--wait"],
        ["--local", "--env", "prod"],
        ["--local", "--endpoint-url", "https://example.com"],
        ["--rate", "0"],
        ["--limit", "-1"],
        ["--hold-seconds", str(cli.redrive.MIN_HOLD_SECONDS - 1)],
        ["--hold-seconds", str(cli.redrive.MAX_HOLD_SECONDS + 1)],
    ],
)
def test_options_that_cannot_work_are_usage_errors_before_anything_slow(
    options: list[str], nothing_slow: list[str]
) -> None:
    arguments = ["redrive", "orders-to-warehouse", "--registry", str(SHIPPED_REGISTRY), *options]

    assert main(arguments) == EXIT_USAGE
    assert nothing_slow == []


@pytest.fixture
def help_text(capsys: pytest.CaptureFixture[str]) -> str:
    """What `dispatcher redrive --help` prints."""
    assert main(["redrive", "--help"]) == EXIT_OK
    return capsys.readouterr().out


def examples(help_text: str) -> list[str]:
    return [line.strip() for line in help_text.splitlines() if line.strip().startswith("dispatcher redrive ")]


def test_every_help_example_parses_and_names_a_registered_subscription(help_text: str) -> None:
    # Given the examples of `dispatcher redrive --help`
    assert len(examples(help_text)) >= 4
    parser = build_parser()
    registry = load_registry(SHIPPED_REGISTRY, "dev").registry
    names = {subscription.name for _, subscription in registry.registrations()}

    for example in examples(help_text):
        # When each is parsed as the shell would pass it
        arguments = parser.parse_args(shlex.split(example)[1:])

        # Then it names a subscription of the shipped registry
        assert arguments.subscription in names, example


def test_the_local_example_names_what_dispatcher_local_runs_with_by_default(help_text: str) -> None:
    # Given the --local example and `dispatcher local`'s own defaults
    (example,) = [example for example in examples(help_text) if "--local" in example]
    arguments = build_parser().parse_args(shlex.split(example)[1:])
    local_defaults = build_parser().parse_args(["local"])

    # Then the example spells out the registry and the endpoint `dispatcher local` uses when given no options
    assert "--registry" in example
    assert "--endpoint-url" in example
    assert arguments.registry == local_defaults.registry
    assert embedded_aws_port(arguments.endpoint_url) == local_defaults.port


def test_the_help_documents_each_exit_status_the_command_returns(help_text: str) -> None:
    # Given the exit statuses the command returns
    statuses = {EXIT_OK, EXIT_FAILED, EXIT_USAGE, cli.redrive.EXIT_HELD, cli.redrive.EXIT_INTERRUPTED}

    # Then the help lists each, one line each, and only those
    documented = {int(code) for code in re.findall(r"^\s+(\d+)\s+\S", help_text.split("exit status:")[1], re.M)}
    assert documented == statuses
    assert len(statuses) == 5  # distinct


def test_a_subscription_registered_but_not_deployed_is_a_usage_error_with_a_summary(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an AWS account (moto) where the registered subscription was never deployed
    # When it is redriven
    exit_code = main(["redrive", "orders-to-warehouse", "--env", "prod", "--registry", str(SHIPPED_REGISTRY)])

    # Then it exits 2 naming the missing function, after a summary that says nothing was read
    assert exit_code == EXIT_USAGE
    captured = capsys.readouterr()
    assert "function prod-orders-to-warehouse" in captured.err
    assert "read: nothing" in captured.out
    assert "exit status 2" in captured.out


def test_a_run_that_cannot_reach_aws_exits_1_with_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    # Given an endpoint on the loopback interface where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    arguments = ["redrive", "orders-to-warehouse", "--env", "prod", "--registry", str(SHIPPED_REGISTRY)]

    # When a redrive runs against it
    exit_code = main([*arguments, "--endpoint-url", f"http://127.0.0.1:{port}"])

    # Then it exits 1 with the summary and the error, no traceback
    assert exit_code == EXIT_FAILED
    captured = capsys.readouterr()
    assert "exit status 1 (the run failed: the error follows)" in captured.out
    assert "error: AWS: Could not connect" in captured.err
    assert "Traceback" not in captured.err
