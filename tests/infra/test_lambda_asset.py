"""The Docker-free asset build targets the function's runtime and leaves the SDK to Lambda."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from infra import constants
from infra.lambda_asset import RUNTIME_PROVIDED_PACKAGES, runtime_dependencies, zipped_size_bytes


def distribution_name(requirement: str) -> str:
    """ "aiohttp>=3.12" -> "aiohttp"."""
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match is not None, requirement
    return match.group()


def test_the_asset_is_built_for_the_functions_runtime_and_architecture() -> None:
    assert constants.FUNCTION_RUNTIME.name == f"python{constants.ASSET_PYTHON_VERSION}"
    assert constants.FUNCTION_ARCHITECTURE.name == "arm64"
    assert constants.ASSET_PIP_PLATFORM.endswith("_aarch64")


def test_the_asset_bundles_the_declared_runtime_dependencies_but_not_the_sdk() -> None:
    names = {distribution_name(requirement) for requirement in runtime_dependencies()}

    assert names == {"aiohttp", "aws-lambda-powertools", "pydantic", "tenacity"}
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
