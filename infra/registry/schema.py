"""JSON Schemas of the two registry file formats, generated from the models for editor completion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from infra.registry.model import SourcesFile, TeamFile

SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "sources.schema.json": SourcesFile,
    "team.schema.json": TeamFile,
}


def render_schema(model: type[BaseModel]) -> str:
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(),
    }
    return json.dumps(schema, indent=2) + "\n"


def stale_schema_files(root: Path) -> list[Path]:
    """The schema files under `root` that are missing or differ from what the models generate."""
    return [
        root / name
        for name, model in SCHEMA_FILES.items()
        if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != render_schema(model)
    ]


def write_schema_files(root: Path) -> list[Path]:
    written = []
    for name, model in SCHEMA_FILES.items():
        path = root / name
        path.write_text(render_schema(model), encoding="utf-8")
        written.append(path)
    return written
