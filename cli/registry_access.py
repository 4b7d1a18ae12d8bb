"""Loading the registry for a subcommand: every problem reported, none as a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.terminal import EXIT_FAILED, EXIT_USAGE, CommandError
from infra.registry import LoadedRegistry, RegistryError, limits, load_registry

DEFAULT_REGISTRY = Path("registry")


def add_registry_option(parser: argparse.ArgumentParser, default: Path | None = DEFAULT_REGISTRY) -> None:
    shown = f"default: {default}" if default is not None else "default: none"
    parser.add_argument(
        "--registry",
        type=Path,
        default=default,
        metavar="DIR",
        help=f"the registry directory holding sources.yaml and teams/ ({shown})",
    )


def load(root: Path, environment: limits.Environment) -> LoadedRegistry:
    """The validated registry, or CommandError listing every problem (exit 1)."""
    if not root.is_dir():
        raise CommandError(f"registry directory {str(root)!r} does not exist", EXIT_USAGE)
    try:
        return load_registry(root, environment)
    except RegistryError as error:
        raise CommandError(str(error), EXIT_FAILED) from None
