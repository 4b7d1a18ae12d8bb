"""The CLI tests reuse the producer's in-process moto fixtures and write registries into tmp_path."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.producer.conftest import aws, kinesis, sqs

__all__ = ["SHIPPED_REGISTRY", "aws", "copy_registry", "kinesis", "sqs"]

SHIPPED_REGISTRY = Path(__file__).resolve().parents[2] / "registry"

RegistryCopier = Callable[[dict[str, str]], Path]


@pytest.fixture
def copy_registry(tmp_path: Path) -> RegistryCopier:
    """A copy of the shipped registry with some files replaced: {"teams/payments.yaml": "..."}."""

    def copy(replacements: dict[str, str]) -> Path:
        root = tmp_path / "registry"
        shutil.copytree(SHIPPED_REGISTRY, root)
        for relative_path, text in replacements.items():
            (root / relative_path).write_text(text, encoding="utf-8")
        return root

    return copy
