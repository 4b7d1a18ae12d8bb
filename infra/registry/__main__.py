"""Registry tooling: `python -m infra.registry validate --env prod` and `python -m infra.registry schema`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra.registry import limits
from infra.registry.loader import load_registry
from infra.registry.problems import RegistryError
from infra.registry.schema import write_schema_files

DEFAULT_ROOT = Path("registry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.registry", description=__doc__)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="registry directory (default: registry)")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check every registry file; exit 1 listing every error")
    validate.add_argument("--env", choices=limits.ENVIRONMENTS, required=True)
    commands.add_parser("schema", help="regenerate the JSON Schemas of the registry files")
    arguments = parser.parse_args(argv)

    if arguments.command == "schema":
        for path in write_schema_files(arguments.root):
            print(f"wrote {path}")
        return 0
    try:
        loaded = load_registry(arguments.root, arguments.env)
    except RegistryError as error:
        print(error, file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    count = sum(1 for _ in loaded.registry.registrations())
    print(f"registry valid for {arguments.env}: {count} subscriptions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
