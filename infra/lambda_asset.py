"""Build the function's Lambda asset without Docker: pinned wheels for Lambda's platform plus functions/.

`python -m infra.lambda_asset build build/lambda-asset` installs `[project].dependencies` with the pins of
requirements/constraints.txt for manylinux aarch64 / CPython 3.13 (the function's runtime), removes what
the function never imports (REMOVED), strips the compiled extensions' debug information, copies the
function's code next to them and compiles the byte-code Lambda's Python 3.13 loads. boto3 and botocore
come from the Lambda runtime and must not be bundled. `python -m infra.lambda_asset size
build/lambda-asset` prints the zipped size Lambda will see.

The build needs, besides pip: `llvm-strip` (Debian/Ubuntu package `llvm`) and a Python 3.13 interpreter
as `python3.13` (a pyenv-installed 3.13 is found too).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
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
# Issue 10's budget for the zipped asset (it was 6.5 MB): a smaller zip is a faster cold start.
MAX_ZIPPED_BYTES = 5 * BYTES_PER_MB  # 5 MB
# Where Lambda unpacks the asset: the byte-code names its files there, so tracebacks read as in Lambda and
# the bytes do not depend on where the asset was built (the CDK hashes them to decide whether to deploy).
LAMBDA_TASK_ROOT = "/var/task"


@dataclass(frozen=True)
class Target:
    """The platform the wheels are chosen for and the Python the byte-code is compiled by."""

    pip_platform: str
    python_version: str  # "3.13"

    @property
    def interpreter(self) -> str:
        return f"python{self.python_version}"

    def interpreter_environment(self) -> dict[str, str]:
        # pyenv's `python3.13` shim runs only while 3.13 is a selected version: PYENV_VERSION selects it
        # for this call. A python3.13 that is not a pyenv shim ignores the variable.
        return {**os.environ, "PYENV_VERSION": self.python_version}


LAMBDA_TARGET = Target(constants.ASSET_PIP_PLATFORM, constants.ASSET_PYTHON_VERSION)


@dataclass(frozen=True)
class Removal:
    """Files the function never imports, as a glob relative to the asset root, and why that is safe."""

    pattern: str
    why_safe: str


# Powertools ships a dozen independent utilities; the function uses Logger, Metrics, Tracer (imported by
# the package itself), parameters (the signing secret), typing (LambdaContext) and jmespath_utils (Logger).
UNUSED_POWERTOOLS_UTILITIES = (
    "auth_alpha",
    "batch",
    "circuit_breaker",
    "data_classes",
    "data_masking",
    "feature_flags",
    "idempotency",
    "kafka",
    "metadata",
    "parser",
    "serialization.py",
    "streaming",
    "validation",
)

# Nothing here is imported by the function or by anything it imports: tests/infra/test_lambda_asset.py
# imports every module of the function and its adapters from the built asset, in a fresh interpreter with
# nothing else on sys.path. A pattern that matches nothing fails the build, so the list stays true when a
# dependency changes. Kept on purpose: licence files (the licences ask for them to travel with the code),
# each distribution's METADATA headers (importlib.metadata reads them; attrs and pydantic call it), the
# pure-Python fallbacks of the compiled extensions (used if an extension fails to load).
REMOVED = (
    Removal("**/*.pyi", "type stubs: read by type checkers, never by the interpreter"),
    Removal("**/py.typed", "PEP 561 marker: read by type checkers only"),
    Removal("**/*.pyx", "Cython sources of the compiled extensions shipped next to them"),
    Removal("**/*.pxd", "Cython declarations, for building other extensions against these"),
    Removal("**/*.pxi", "Cython include files, read only when compiling"),
    Removal("**/*.h", "C headers, for building extensions against multidict's C API"),
    Removal("*.dist-info/RECORD", "pip's list of installed files for uninstalling; no longer true once stripped"),
    Removal("*.dist-info/INSTALLER", "pip's bookkeeping: which tool installed the distribution"),
    Removal("*.dist-info/REQUESTED", "pip's bookkeeping: whether the distribution was asked for by name"),
    Removal("*.dist-info/WHEEL", "the wheel format's own metadata, read by installers"),
    Removal("*.dist-info/sboms", "software bills of materials, read by scanners of the wheel"),
    Removal("multidict/_testcapi.*.so", "a compiled extension only multidict's own test suite imports"),
    Removal("aiohttp/test_utils.py", "helpers for testing aiohttp applications"),
    Removal("aiohttp/pytest_plugin.py", "aiohttp's pytest plugin"),
    Removal("aiohttp/web*.py", "aiohttp's HTTP server; the function is a client and `import aiohttp` skips it"),
    Removal("aiohttp/worker.py", "the gunicorn worker for aiohttp's HTTP server"),
    Removal("aws_lambda_powertools/event_handler", "REST/GraphQL routing and its Swagger UI (1.7 MB of JS/CSS)"),
    Removal("aws_lambda_powertools/middleware_factory", "handler decorators used only by the utilities removed"),
    *(
        Removal(f"aws_lambda_powertools/utilities/{utility}", "a Powertools utility the function does not use")
        for utility in UNUSED_POWERTOOLS_UTILITIES
    ),
    Removal("aws_lambda_powertools/metrics/provider/datadog", "the Datadog provider; the function emits EMF"),
    Removal("pydantic/v1", "pydantic 1's API, for models not migrated to pydantic 2; the function has none"),
    Removal("pydantic/mypy.py", "pydantic's mypy plugin, loaded by mypy"),
    Removal("pydantic/experimental", "opt-in experimental APIs the function does not use"),
)

# Lambda cannot write byte-code (/var/task is read-only), so without it every cold start compiles each
# imported module from source. Measured here (CPython 3.13 on an x86_64 twin of this asset, busy 2-CPU
# machine, medians of 9 runs alternating with and without byte-code): importing the handler took 1.6 s
# from source against 0.6 s, its first invocation's imports (adapters, boto3) 1.3 s against 0.7 s. So the
# asset ships byte-code, compiled by Python 3.13 itself: a .pyc of another minor version is ignored by
# 3.13 and would be dead weight.
# "unchecked-hash": the CDK zips every file dated 1980-01-01 (cdk-assets' zipDirectory, for stable
# hashes), so a timestamp-checked .pyc would never match its unzipped source and every cold start would
# compile again; the asset never changes once built, so hashing the source at each import would only
# cost time.
# Not compiled (kept as source, as they are rarely imported): the pure-Python fallbacks of the compiled
# extensions (`*_py.py`, imported only if an extension fails to load) and idna's UTS 46 table (imported
# only for non-ASCII host names); compiling them would cost 0.1 MB of the zip for no cold start.
NOT_PRECOMPILED = r"(_py|/idna/uts46data)\.py$"

# llvm-strip knows every architecture, so this x86_64 machine can strip Lambda's aarch64 extensions (GNU
# strip cannot: forced to a generic ELF target, it rewrites the header's machine type). --strip-unneeded
# drops debug information and the static symbol table, what Debian strips from every shared library;
# the dynamic symbols Python loads an extension by are kept. Several wheels ship their extensions with
# debug information: stripping takes the extensions from 15 MB to 7 MB.
STRIP_TOOL = "llvm-strip"


def runtime_dependencies() -> list[str]:
    """The function's dependencies, as declared once in pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    dependencies: list[str] = project["dependencies"]
    return dependencies


def build(output: Path, target: Target = LAMBDA_TARGET) -> None:
    require_interpreter(target)
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
            target.pip_platform,
            "--python-version",
            target.python_version,
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
    remove(output, REMOVED)
    drop_long_descriptions(output)
    strip_extensions(output)
    for package in sorted(FUNCTION_SOURCE.iterdir()):
        if package.is_dir() and (package / "__init__.py").exists():
            shutil.copytree(package, output / package.name, ignore=IGNORED_WHEN_COPYING)
    precompile(output, target)


def remove(directory: Path, removals: tuple[Removal, ...]) -> None:
    """Delete what each removal matches; fails, deleting nothing, when a pattern matches nothing."""
    matches = {removal.pattern: sorted(directory.glob(removal.pattern)) for removal in removals}
    unmatched = [pattern for pattern, paths in matches.items() if not paths]
    if unmatched:
        raise SystemExit(
            f"removal pattern(s) {', '.join(map(repr, unmatched))} matched nothing in {directory}: "
            "a dependency changed, update REMOVED in infra/lambda_asset.py"
        )
    for path in (path for paths in matches.values() for path in paths):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            # Already gone when a directory matched by an earlier pattern held it.
            path.unlink(missing_ok=True)


def drop_long_descriptions(directory: Path) -> None:
    """Keep each distribution's metadata headers, drop the body: the project's README, for PyPI's page."""
    # Core metadata is an email-style message; importlib.metadata reads only its headers.
    for metadata in directory.glob("*.dist-info/METADATA"):
        headers, _, _description = metadata.read_text(encoding="utf-8").partition("\n\n")
        metadata.write_text(headers.rstrip("\n") + "\n", encoding="utf-8")


def strip_extensions(directory: Path) -> None:
    tool = shutil.which(STRIP_TOOL)
    if tool is None:
        raise SystemExit(f"building the asset needs {STRIP_TOOL} on PATH (Debian/Ubuntu: apt-get install llvm)")
    subprocess.run([tool, "--strip-unneeded", *map(str, sorted(directory.rglob("*.so")))], check=True)


def require_interpreter(target: Target) -> None:
    """Fail before any work when the Python that must compile the byte-code is missing."""
    try:
        completed = subprocess.run(
            [target.interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            env=target.interpreter_environment(),
            capture_output=True,
            text=True,
            check=False,
        )
        found = completed.stdout.strip() if completed.returncode == 0 else None
    except FileNotFoundError:
        found = None
    if found != target.python_version:
        raise SystemExit(
            f"building the asset needs Python {target.python_version} (the function's runtime) as "
            f"`{target.interpreter}` on PATH, to compile its byte-code: install it (pyenv install "
            f"{target.python_version}, or actions/setup-python with python-version {target.python_version})"
        )


def precompile(directory: Path, target: Target) -> None:
    subprocess.run(
        [
            target.interpreter,
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            "-x",
            NOT_PRECOMPILED,
            "-s",
            str(directory.resolve()),
            "-p",
            LAMBDA_TASK_ROOT,
            str(directory.resolve()),
        ],
        env=target.interpreter_environment(),
        check=True,
    )


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
    size = zipped_size_bytes(arguments.directory)
    print(f"Lambda asset: {size / BYTES_PER_MB:.1f} MB zipped (limit {MAX_ZIPPED_BYTES / BYTES_PER_MB:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
