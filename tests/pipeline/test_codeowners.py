"""CODEOWNERS: the platform team owns everything; each registry team file also belongs to its team."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.infra.conftest import REPOSITORY_ROOT

CODEOWNERS = REPOSITORY_ROOT / ".github" / "CODEOWNERS"
ORGANISATION = "@example-org"
PLATFORM = f"{ORGANISATION}/platform"


def owner_rules() -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    for line in CODEOWNERS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pattern, *owners = line.split()
            rules[pattern] = owners
    return rules


def test_the_platform_team_owns_everything_not_named_otherwise() -> None:
    assert owner_rules()["*"] == [PLATFORM]
    assert next(iter(owner_rules())) == "*", "the catch-all must come first: the last matching line wins"


def test_each_team_file_is_owned_by_the_team_it_declares_and_the_platform_team() -> None:
    team_files = sorted((REPOSITORY_ROOT / "registry" / "teams").glob("*.yaml"))
    expected = {
        # dict.fromkeys: the platform team's own file names it once
        f"/{path.relative_to(REPOSITORY_ROOT).as_posix()}": list(
            dict.fromkeys([f"{ORGANISATION}/{team_of(path)}", PLATFORM])
        )
        for path in team_files
    }

    rules = {pattern: owners for pattern, owners in owner_rules().items() if pattern != "*"}

    assert team_files
    assert rules == expected


def team_of(path: Path) -> str:
    team: str = yaml.safe_load(path.read_text(encoding="utf-8"))["team"]
    return team
