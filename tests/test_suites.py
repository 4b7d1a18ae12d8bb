"""Every folder of tests belongs to exactly one of the Makefile's suites (make unit, integration, infra, e2e),
so a new folder cannot fall out of the targets developers run one by one."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE_VARIABLES = ("UNIT_TESTS", "INTEGRATION_TESTS", "INFRA_TESTS", "E2E_TESTS")


def suites() -> dict[str, list[str]]:
    makefile = (ROOT / "Makefile").read_text()
    found = {}
    for variable in SUITE_VARIABLES:
        match = re.search(rf"^{variable} := (.+)$", makefile, flags=re.MULTILINE)
        assert match is not None, f"Makefile defines no {variable}"
        found[variable] = match.group(1).split()
    return found


def test_each_folder_of_tests_is_in_exactly_one_suite() -> None:
    # Given the folders of tests and the suites the Makefile names
    folders = {f"tests/{path.name}" for path in (ROOT / "tests").iterdir() if (path / "__init__.py").exists()}
    listed = Counter(folder for members in suites().values() for folder in members)
    # Then every folder is listed once, and nothing listed is missing
    assert set(listed) == folders
    assert [folder for folder, count in listed.items() if count > 1] == []
