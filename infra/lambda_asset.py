"""Build the function's Lambda asset without Docker: pinned wheels for Lambda's platform plus functions/.

`python -m infra.lambda_asset build build/lambda-asset` installs `[project].dependencies` with the pins of
requirements/constraints.txt for manylinux aarch64 / CPython 3.13 (the function's runtime), then copies
the function's code next to them. boto3 and botocore come from the Lambda runtime and must not be
bundled. `python -m infra.lambda_asset size build/lambda-asset` prints the zipped size Lambda will see.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from infra import constants

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
FUNCTION_SOURCE = REPOSITORY_ROOT / "functions"
PYPROJECT = REPOSITORY_ROOT / "pyproject.toml"
CONSTRAINTS = REPOSITORY_ROOT / "requirements" / "constraints.txt"
# Provided by the Lambda runtime; bundling them would pin an SDK the runtime already patches.
RUNTIME_PROVIDED_PACKAGES = ("boto3", "botocore")
IGNORED_WHEN_COPYING = shutil.ignore_patterns("__pycache__", "*.pyc")
BYTES_PER_MB = 1024 * 1024


def runtime_dependencies() -> list[str]:
    """The function's dependencies, as declared once in pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    dependencies: list[str] = project["dependencies"]
    return dependencies


def build(output: Path) -> None:
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--platform",
            constants.ASSET_PIP_PLATFORM,
            "--python-version",
            constants.ASSET_PYTHON_VERSION,
            "--implementation",
            "cp",
            "--only-binary=:all:",
            "--target",
            str(output),
            "--constraint",
            str(CONSTRAINTS),
            *runtime_dependencies(),
        ],
        check=True,
    )
    # Console scripts point at this machine's interpreter; nothing runs them inside Lambda.
    shutil.rmtree(output / "bin", ignore_errors=True)
    bundled_sdk = [name for name in RUNTIME_PROVIDED_PACKAGES if (output / name).exists()]
    if bundled_sdk:
        raise SystemExit(f"the asset must not bundle {', '.join(bundled_sdk)}: a dependency pulled it in")
    for package in sorted(FUNCTION_SOURCE.iterdir()):
        if package.is_dir() and (package / "__init__.py").exists():
            shutil.copytree(package, output / package.name, ignore=IGNORED_WHEN_COPYING)


def zipped_size_bytes(directory: Path) -> int:
    """The size of the directory zipped the way the CDK uploads it (deflate)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory))
    return buffer.getbuffer().nbytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.lambda_asset", description=__doc__)
    parser.add_argument("command", choices=("build", "size"))
    parser.add_argument("directory", type=Path)
    arguments = parser.parse_args(argv)
    if arguments.command == "build":
        build(arguments.directory)
    print(f"Lambda asset: {zipped_size_bytes(arguments.directory) / BYTES_PER_MB:.1f} MB zipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
