"""The shipped example registry and the generated JSON Schemas next to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.registry import load_registry
from infra.registry.limits import ENVIRONMENTS, Environment
from infra.registry.schema import stale_generated_files

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
REGISTRY_ROOT = REPOSITORY_ROOT / "registry"
FIELD_REFERENCE = REPOSITORY_ROOT / "docs" / "registry.md"


def test_the_committed_json_schemas_and_field_reference_match_the_models() -> None:
    # When the schemas and the field reference are generated from the models
    stale = stale_generated_files(REGISTRY_ROOT, FIELD_REFERENCE)

    # Then the committed files are identical (regenerate with `make schema`)
    assert stale == [], f"stale generated files, run `make schema`: {[path.name for path in stale]}"


def test_every_registry_file_points_editors_at_its_schema() -> None:
    expected_first_lines = {
        REGISTRY_ROOT / "sources.yaml": "# yaml-language-server: $schema=./sources.schema.json",
        **{
            path: "# yaml-language-server: $schema=../team.schema.json"
            for path in (REGISTRY_ROOT / "teams").glob("*.yaml")
        },
    }

    for path, expected in expected_first_lines.items():
        assert path.read_text(encoding="utf-8").splitlines()[0] == expected, path


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_example_registry_is_valid_in_every_environment(environment: Environment) -> None:
    # When the shipped registry is loaded
    registry = load_registry(REGISTRY_ROOT, environment).registry

    # Then it shows what the platform supports: two teams, a fanned-out stream, a standard and a FIFO queue
    assert len(registry.teams) >= 2
    assert len(registry.subscriptions_of("stream/orders")) == 3
    queues = {queue.name: queue for queue in registry.sources.queues}
    assert any(queue.is_fifo for queue in queues.values())
    assert any(not queue.is_fifo for queue in queues.values())
    assert all(len(registry.subscriptions_of(f"queue/{name}")) == 1 for name in queues)
