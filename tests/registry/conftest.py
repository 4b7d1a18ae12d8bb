"""Fixtures writing a registry into a temporary directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.registry.builders import SOURCES, Document

RegistryWriter = Callable[..., Path]


@pytest.fixture
def write_registry(tmp_path: Path) -> RegistryWriter:
    """Writes registry/sources.yaml and registry/teams/<team>.yaml; returns the registry directory."""

    def write(*teams: Document, sources: Document = SOURCES, raw_files: dict[str, str] | None = None) -> Path:
        root = tmp_path / "registry"
        (root / "teams").mkdir(parents=True, exist_ok=True)
        (root / "sources.yaml").write_text(yaml.safe_dump(sources), encoding="utf-8")
        for document in teams:
            (root / "teams" / f"{document['team']}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
        for relative_path, text in (raw_files or {}).items():
            (root / relative_path).write_text(text, encoding="utf-8")
        return root

    return write
