"""The pull-request comment: what merging deploys to staging (`cdk diff`) and the capacity of what it changes.

Subscriptions count as changed when their YAML differs from the base commit's, or when the source they read
does (a new shard count changes every reader's capacity). Each gets `dispatcher plan --subscription`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
REGISTRY = Path("registry")
SOURCES_FILE = REGISTRY / "sources.yaml"
TEAMS_DIRECTORY = REGISTRY / "teams"
# Finds the previous report to update instead of adding another comment on every push.
REPORT_MARKER = "<!-- callback-dispatcher: pull-request report -->"
# GitHub refuses comments over 65,536 characters; the rest of the diff stays in the job's log.
MAX_DIFF_CHARACTERS = 50_000
PLAN_COLUMNS = "120"


@dataclass(frozen=True, slots=True)
class RegistryChanges:
    changed: tuple[str, ...]  # added or modified subscriptions, and the readers of modified sources
    removed: tuple[str, ...]


def registry_changes(base: Mapping[Path, str], head: Mapping[Path, str]) -> RegistryChanges:
    """Compare two registries given as {path: YAML text}; invalid YAML counts as empty (validation reports it)."""
    base_subscriptions, base_sources = _subscriptions(base), _sources(base)
    head_subscriptions, head_sources = _subscriptions(head), _sources(head)
    changed_sources = {
        reference
        for reference in base_sources.keys() | head_sources.keys()
        if base_sources.get(reference) != head_sources.get(reference)
    }
    changed = tuple(
        name
        for name, subscription in head_subscriptions.items()
        if base_subscriptions.get(name) != subscription or subscription.get("source") in changed_sources
    )
    removed = tuple(name for name in base_subscriptions if name not in head_subscriptions)
    return RegistryChanges(changed, removed)


def _load(text: str | None) -> Any:
    try:
        return yaml.safe_load(text or "")
    except yaml.YAMLError:
        return None


def _subscriptions(files: Mapping[Path, str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(files):
        document = _load(files[path]) if path.parent == TEAMS_DIRECTORY else None
        subscriptions = document.get("subscriptions") if isinstance(document, dict) else None
        for subscription in subscriptions if isinstance(subscriptions, list) else []:
            if isinstance(subscription, dict) and isinstance(subscription.get("name"), str):
                found[subscription["name"]] = subscription
    return found


def _sources(files: Mapping[Path, str]) -> dict[str, Any]:
    document = _load(files.get(SOURCES_FILE))
    if not isinstance(document, dict):
        return {}
    return {
        f"{kind}/{source['name']}": source
        for kind, key in (("stream", "streams"), ("queue", "queues"))
        for source in document.get(key) or []
        if isinstance(source, dict) and "name" in source
    }


def registry_at(commit: str, repository: Path) -> dict[Path, str]:
    """The registry's YAML files as committed at `commit`."""
    listing = _git(repository, "ls-tree", "-r", "--name-only", commit, "--", str(REGISTRY))
    return {
        Path(name): _git(repository, "show", f"{commit}:{name}")
        for name in listing.splitlines()
        if name.endswith(".yaml")
    }


def registry_in(repository: Path) -> dict[Path, str]:
    """The registry's YAML files in the working tree."""
    return {
        path.relative_to(repository): path.read_text(encoding="utf-8")
        for path in sorted((repository / REGISTRY).rglob("*.yaml"))
    }


def _git(repository: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repository, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def plan(subscription: str, repository: Path) -> str:
    """`dispatcher plan --subscription NAME` as plain text (with the exit status when it failed)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "plan",
            "--registry",
            str(repository / REGISTRY),
            "--subscription",
            subscription,
        ],
        cwd=repository,
        env={**os.environ, "COLUMNS": PLAN_COLUMNS, "NO_COLOR": "1", "TERM": "dumb"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    return output if result.returncode == 0 else f"{output}\n(dispatcher plan exited with {result.returncode})"


def report(diff: str, changes: RegistryChanges, plans: Mapping[str, str]) -> str:
    if len(diff) > MAX_DIFF_CHARACTERS:
        diff = diff[:MAX_DIFF_CHARACTERS] + "\n... (truncated: the whole diff is in the diff job's log)"
    sections = [
        REPORT_MARKER,
        "## What merging deploys to staging",
        "`cdk diff` of `staging-callback-dispatcher` against the deployed stack (read-only role).",
        f"<details><summary>cdk diff</summary>\n\n```\n{diff.strip() or '(no output)'}\n```\n</details>",
        "## Capacity of the changed subscriptions (`dispatcher plan`)",
    ]
    if not changes.changed:
        sections.append("No subscription is added or changed.")
    sections.extend(f"### `{name}`\n\n```\n{plans[name]}\n```" for name in changes.changed)
    if changes.removed:
        sections.append(
            "Removed (their functions, mappings and alarms are deleted; parked records stay in the retained "
            "queues outside dev): " + ", ".join(f"`{name}`" for name in changes.removed)
        )
    return "\n\n".join(sections) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.pr_report", description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit the pull request merges into")
    parser.add_argument("--diff", type=Path, required=True, help="the output of `cdk diff`")
    parser.add_argument("--output", type=Path, required=True, help="where to write the comment (Markdown)")
    arguments = parser.parse_args(argv)
    changes = registry_changes(registry_at(arguments.base, REPOSITORY_ROOT), registry_in(REPOSITORY_ROOT))
    plans = {name: plan(name, REPOSITORY_ROOT) for name in changes.changed}
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(report(arguments.diff.read_text(encoding="utf-8"), changes, plans), encoding="utf-8")
    print(f"wrote {arguments.output}: {len(changes.changed)} changed, {len(changes.removed)} removed subscriptions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
