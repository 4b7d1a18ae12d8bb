"""The Docker-free asset build targets the function's runtime, leaves the SDK to Lambda, fits its size
budget and removes nothing the function imports.

The asset is built once per session by `make asset` (which reuses build/lambda-asset while its inputs are
unchanged). Its arm64 extensions cannot load on this x86_64 machine, so the imports are proven on its
twin: the same build for this machine's architecture, holding the same files but for the extensions'
platform tag (a test checks that): Python 3.13, with nothing but the twin, the standard library and the
SDK Lambda's runtime provides on sys.path, imports the function and its adapters and invokes the handler
once against moto and an endpoint on 127.0.0.1. Both builds fetch the pinned wheels with pip.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import re
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tests.integration.conftest as integration
from infra import constants
from infra.lambda_asset import (
    LAMBDA_TARGET,
    MAX_ZIPPED_BYTES,
    REMOVED,
    REPOSITORY_ROOT,
    RUNTIME_PROVIDED_PACKAGES,
    Removal,
    Target,
    build,
    drop_long_descriptions,
    remove,
    runtime_dependencies,
    zipped_size_bytes,
)
from tests.events import event, kinesis_record
from tests.integration.support import LoopbackEndpoint

ASSET_DIRECTORY = REPOSITORY_ROOT / "build" / "lambda-asset"  # the Makefile's ASSET_DIR
# What Lambda's Python runtime puts on sys.path after the asset: the SDK and the packages it imports.
LAMBDA_RUNTIME_MODULES = (*RUNTIME_PROVIDED_PACKAGES, "s3transfer", "jmespath", "dateutil", "six", "urllib3")
# What the function imports from its dependencies, at cold start or lazily in its adapters.
DEPENDENCY_MODULES = (
    "aiohttp",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.utilities.parameters",
    "pydantic",
)
ELF_MACHINES = {"aarch64": 183, "x86_64": 62}  # e_machine of the ELF header
EXTENSION_PLATFORM_TAG = re.compile(r"\.cpython-\d+-[^.]+\.so$")

# Runs in the fresh interpreter: imports the function and its dependencies, invokes the handler as Lambda
# would, and reports what it saw to a file (Powertools prints to stdout).
COLD_START = """
import importlib, importlib.metadata, json, os, sys
asset, runtime, modules, lambda_event, report = sys.argv[1:]
sys.path[:0] = [asset, runtime]
for module in json.loads(modules):
    importlib.import_module(module)

class Context:  # what Powertools and the handler read from Lambda's context
    function_name = "asset-check"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:asset-check"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    def get_remaining_time_in_millis(self):
        return 30_000

handler = sys.modules["dispatcher.handler"]
response = handler.handler(json.loads(lambda_event), Context())
from_asset = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith(asset)]
with open(report, "w") as out:
    json.dump({
        "handler": handler.__file__,
        "response": response,
        "not_compiled": sorted(m.__file__ for m in from_asset
                               if m.__file__.endswith(".py") and not os.path.exists(m.__cached__)),
        "versions": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions(path=[asset])},
    }, out)
"""
# The integration suite's moto on 127.0.0.1 (with the function's table, queue, bucket and secret) and its
# scripted endpoint on 127.0.0.1: pytest finds fixtures by name in this module.
moto_server = integration.moto_server
aws = integration.aws
endpoint = integration.endpoint


@pytest.fixture(scope="session")
def lambda_asset() -> Path:
    made = subprocess.run(
        ["make", "--no-print-directory", "asset"], cwd=REPOSITORY_ROOT, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    return ASSET_DIRECTORY


@pytest.fixture(scope="session")
def host_twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    twin = tmp_path_factory.mktemp("host-twin") / "asset"
    build(twin, Target(f"manylinux2014_{platform.machine()}", LAMBDA_TARGET.python_version))
    return twin


def distribution_name(requirement: str) -> str:
    """ "aiohttp>=3.12" -> "aiohttp"."""
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match is not None, requirement
    return match.group()


def files_without_platform_tags(directory: Path) -> set[str]:
    return {
        EXTENSION_PLATFORM_TAG.sub(".so", str(path.relative_to(directory)))
        for path in directory.rglob("*")
        if path.is_file()
    }


def lambda_runtime_stand_in(directory: Path) -> Path:
    """Links to this environment's SDK, laid out as Lambda's runtime provides it beside the asset."""
    directory.mkdir()
    for name in LAMBDA_RUNTIME_MODULES:
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        assert spec.origin is not None, name
        source = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
        (directory / source.name).symlink_to(source)
    return directory


def test_the_asset_is_built_for_the_functions_runtime_and_architecture() -> None:
    assert constants.FUNCTION_RUNTIME.name == f"python{constants.ASSET_PYTHON_VERSION}"
    assert constants.FUNCTION_ARCHITECTURE.name == "arm64"
    assert constants.ASSET_PIP_PLATFORM.endswith("_aarch64")
    assert Target(constants.ASSET_PIP_PLATFORM, constants.ASSET_PYTHON_VERSION) == LAMBDA_TARGET


def test_the_asset_bundles_the_declared_runtime_dependencies_but_not_the_sdk() -> None:
    names = {distribution_name(requirement) for requirement in runtime_dependencies()}

    assert names == {"aiohttp", "aws-lambda-powertools", "pydantic"}
    assert names.isdisjoint(RUNTIME_PROVIDED_PACKAGES)


def test_the_reported_size_is_the_deflated_zip_of_the_directory(tmp_path: Path) -> None:
    # Given a directory with a compressible file
    asset = tmp_path / "asset"
    (asset / "package").mkdir(parents=True)
    (asset / "package" / "module.py").write_text("x = 1\n" * 10_000, encoding="utf-8")

    # When its zipped size is measured
    size = zipped_size_bytes(asset)

    # Then it matches a real deflate zip of it, far below the raw size
    with zipfile.ZipFile(tmp_path / "reference.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(asset / "package" / "module.py", "package/module.py")
    assert size == (tmp_path / "reference.zip").stat().st_size
    assert size < 60_000 / 10


def test_a_removal_pattern_that_matches_nothing_fails_naming_it_and_deletes_nothing(tmp_path: Path) -> None:
    # Given an installed package with a stub, and removals of which one no longer matches anything
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "module.pyi").write_text("x: int\n", encoding="utf-8")
    removals = (Removal("**/*.pyi", "stubs"), Removal("package/tests", "the package's tests"))

    # When the removals are applied
    with pytest.raises(SystemExit, match="'package/tests'") as failure:
        remove(tmp_path, removals)

    # Then the build stops naming the stale pattern, and the stub is still there
    assert "'**/*.pyi'" not in str(failure.value)
    assert (tmp_path / "package" / "module.pyi").exists()


def test_removals_inside_a_removed_directory_are_not_an_error(tmp_path: Path) -> None:
    # Given a directory one pattern removes whole and another pattern reaches into
    (tmp_path / "unused" / "sub").mkdir(parents=True)
    (tmp_path / "unused" / "sub" / "module.pyi").write_text("x: int\n", encoding="utf-8")
    (tmp_path / "used.py").write_text("x = 1\n", encoding="utf-8")

    # When both are applied
    remove(tmp_path, (Removal("unused", "unused"), Removal("**/*.pyi", "stubs")))

    # Then both are gone and nothing else is
    assert sorted(path.name for path in tmp_path.iterdir()) == ["used.py"]


README_TEXT = st.text(st.characters(codec="utf-8"))


@given(summary=README_TEXT.map(lambda text: " ".join(text.split())), readme=README_TEXT)
def test_distribution_metadata_keeps_what_importlib_metadata_reads(summary: str, readme: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        # Given a distribution whose METADATA carries any README as its long description
        dist_info = Path(directory) / "example-1.2.3.dist-info"
        dist_info.mkdir()
        headers = (
            f"Metadata-Version: 2.4\nName: example\nVersion: 1.2.3\nSummary: {summary}\nRequires-Dist: yarl>=1.0\n"
        )
        (dist_info / "METADATA").write_text(f"{headers}\n{readme}", encoding="utf-8")

        # When the long descriptions are dropped
        drop_long_descriptions(Path(directory))

        # Then every header still reads the same, and the README is gone
        distribution = importlib.metadata.PathDistribution(dist_info)
        assert (distribution.metadata["Name"], distribution.version) == ("example", "1.2.3")
        assert distribution.metadata["Summary"] == summary
        assert distribution.requires == ["yarl>=1.0"]
        assert (dist_info / "METADATA").read_text(encoding="utf-8") == headers


def test_every_removal_says_why_it_is_safe() -> None:
    assert all(removal.why_safe for removal in REMOVED)
    assert len({removal.pattern for removal in REMOVED}) == len(REMOVED)


def test_the_zipped_asset_fits_the_size_budget(lambda_asset: Path) -> None:
    size = zipped_size_bytes(lambda_asset)

    assert size <= MAX_ZIPPED_BYTES, f"the asset zips to {size:,} bytes, over the budget of {MAX_ZIPPED_BYTES:,}"


def test_the_asset_keeps_its_compiled_extensions_for_lambdas_architecture(lambda_asset: Path) -> None:
    architecture = constants.ASSET_PIP_PLATFORM.split("_", 1)[1]
    extensions = sorted(lambda_asset.rglob("*.so"))

    assert {path.relative_to(lambda_asset).parts[0] for path in extensions} >= {
        "aiohttp",
        "frozenlist",
        "multidict",
        "propcache",
        "pydantic_core",
        "yarl",
    }
    for extension in extensions:
        header = extension.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", extension
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINES[architecture], extension
        assert extension.name.endswith(f"-{architecture}-linux-gnu.so"), extension


def test_the_host_twin_holds_the_same_files_as_the_lambda_asset(lambda_asset: Path, host_twin: Path) -> None:
    assert files_without_platform_tags(host_twin) == files_without_platform_tags(lambda_asset)


def test_the_asset_ships_python_3_13_byte_code_only(lambda_asset: Path) -> None:
    byte_code = {path.name.split(".")[1] for path in lambda_asset.rglob("*.pyc")}

    assert byte_code == {f"cpython-{LAMBDA_TARGET.python_version.replace('.', '')}"}


@pytest.mark.integration
def test_a_cold_start_on_the_asset_alone_delivers_a_batch(
    host_twin: Path, aws: integration.AwsResources, endpoint: LoopbackEndpoint, tmp_path: Path
) -> None:
    # Given the twin, the SDK as Lambda's runtime provides it, the function's environment (moto and the
    # endpoint on 127.0.0.1) and a one-record Kinesis batch
    runtime = lambda_runtime_stand_in(tmp_path / "runtime")
    function_modules = sorted(
        ".".join(path.relative_to(host_twin).with_suffix("").parts).removesuffix(".__init__")
        for path in (host_twin / "dispatcher").rglob("*.py")
    )
    environment = {
        "DISPATCHER_SUBSCRIPTION": json.dumps(integration.subscription(endpoint.url(), aws.secret_id)),
        "DISPATCHER_IDEMPOTENCY_TABLE": aws.table,
        "DISPATCHER_DLQ_URL": aws.parked_queue_url,
        "DISPATCHER_PAYLOAD_BUCKET": aws.payload_bucket,
    }
    record = {"order": 1}
    report = tmp_path / "report.json"

    # When Python 3.13 (isolated: no site-packages, no byte-code written) imports everything from the twin
    # and invokes the handler once
    completed = subprocess.run(
        [
            LAMBDA_TARGET.interpreter,
            "-I",
            "-S",
            "-B",
            "-c",
            COLD_START,
            str(host_twin),
            str(runtime),
            json.dumps([*function_modules, *DEPENDENCY_MODULES]),
            json.dumps(event(kinesis_record(0, record))),
            str(report),
        ],
        env={**LAMBDA_TARGET.interpreter_environment(), **environment},
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    seen: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))

    # Then the function ran from the twin and delivered the record, signed, with nothing to retry
    assert seen["handler"] == str(host_twin / "dispatcher" / "handler.py")
    assert seen["response"] == {"batchItemFailures": []}
    assert [json.loads(request.body) for request in endpoint.received] == [record]
    assert all("webhook-signature" in request.headers for request in endpoint.received)
    # and Powertools logged the batch and published its metrics
    printed = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [line["delivered"] for line in printed if line.get("message") == "batch dispatched"] == [1]
    assert [line["Delivered"] for line in printed if "Delivered" in line] == [[1.0]]
    # and every module it imported from the asset was loaded from shipped byte-code
    assert seen["not_compiled"] == []
    # and every distribution still reports its version
    assert {"aiohttp", "pydantic", "pydantic_core", "attrs"} <= set(seen["versions"])
    assert all(seen["versions"].values())
