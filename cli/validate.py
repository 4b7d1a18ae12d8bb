"""`dispatcher validate`: check the subscription registry the way the CDK app and the function read it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from cli import registry_access
from cli.terminal import EXIT_OK, Terminal
from infra.registry import limits

if TYPE_CHECKING:
    from cli.terminal import Subcommands

STRICTEST_ENVIRONMENT: limits.Environment = "prod"


def register(subcommands: Subcommands) -> None:
    parser = subcommands.add_parser(
        "validate",
        help="check the subscription registry; exit 1 listing every error",
        description="Validate registry/sources.yaml and registry/teams/*.yaml: every error is listed "
        "(exit 1); warnings, such as allow_http or private address ranges outside dev, are printed "
        "and do not fail the check.",
    )
    registry_access.add_registry_option(parser)
    parser.add_argument(
        "--env",
        choices=limits.ENVIRONMENTS,
        default=STRICTEST_ENVIRONMENT,
        help=f"the environment whose rules apply (default: {STRICTEST_ENVIRONMENT}, the strictest)",
    )
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace, terminal: Terminal) -> int:
    loaded = registry_access.load(arguments.registry, arguments.env)
    for warning in loaded.warnings:
        terminal.warning(str(warning))
    table = Table(title=f"Subscriptions ({arguments.env})", title_justify="left")
    for column in ("team", "subscription", "source", "batch", "concurrency", "in flight", "timeout s"):
        table.add_column(
            column, justify="right" if column in ("batch", "concurrency", "in flight", "timeout s") else "left"
        )
    registrations = list(loaded.registry.registrations())
    for team, subscription in registrations:
        table.add_row(
            team.definition.team,
            subscription.name,
            subscription.source,
            str(subscription.batch_size),
            str(subscription.reserved_concurrency),
            str(subscription.max_in_flight),
            str(subscription.function_timeout_seconds),
        )
    terminal.out.print(table)
    warnings = f", {len(loaded.warnings)} warning{'s' if len(loaded.warnings) != 1 else ''}" if loaded.warnings else ""
    terminal.out.print(
        Text(f"registry valid for {arguments.env}: {len(registrations)} subscriptions{warnings}", style="green")
    )
    return EXIT_OK
