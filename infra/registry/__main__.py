"""Registry tooling: `python -m infra.registry validate --env prod` and `python -m infra.registry schema`.

Run from the repository root (the default paths are relative to it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra.registry import limits
from infra.registry.loader import load_registry
from infra.registry.problems import RegistryError
from infra.registry.schema import write_generated_files

DEFAULT_ROOT = Path("registry")
FIELD_REFERENCE = Path("docs/registry.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.registry", description=__doc__)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="registry directory (default: registry)")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check every registry file; exit 1 listing every error")
    validate.add_argument("--env", choices=limits.ENVIRONMENTS, required=True)
    commands.add_parser("schema", help="regenerate the registry's JSON Schemas and docs/registry.md's field reference")
    arguments = parser.parse_args(argv)

    if arguments.command == "schema":
        for path in write_generated_files(arguments.root, FIELD_REFERENCE):
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
