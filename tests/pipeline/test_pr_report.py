"""The pull-request report: which subscriptions a branch changes, and the comment that shows them."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from pipeline.pr_report import REPORT_MARKER, RegistryChanges, plan, registry_at, registry_changes, report
from tests.infra.conftest import REPOSITORY_ROOT

SOURCES = Path("registry/sources.yaml")
PAYMENTS = Path("registry/teams/payments.yaml")
FULFILMENT = Path("registry/teams/fulfilment.yaml")


def sources(shards: int) -> str:
    return yaml.safe_dump({"streams": [{"name": "orders", "shards": shards}], "queues": [{"name": "jobs"}]})


def team(name: str, *subscriptions: Mapping[str, object]) -> str:
    return yaml.safe_dump({"team": name, "subscriptions": list(subscriptions)})


LEDGER = {"name": "ledger", "source": "stream/orders", "endpoint": "https://ledger.example.com"}
INVOICES = {"name": "invoices", "source": "queue/jobs", "endpoint": "https://ledger.example.com/i"}
WAREHOUSE = {"name": "warehouse", "source": "stream/orders", "endpoint": "https://wms.example.com"}
BASE = {SOURCES: sources(1), PAYMENTS: team("payments", LEDGER, INVOICES), FULFILMENT: team("fulfilment", WAREHOUSE)}


def test_an_unchanged_registry_changes_nothing() -> None:
    assert registry_changes(BASE, dict(BASE)) == RegistryChanges((), ())


def test_added_and_modified_subscriptions_are_changed_and_deleted_ones_removed() -> None:
    head = {
        **BASE,
        PAYMENTS: team("payments", {**LEDGER, "batch_size": 50}, {**INVOICES, "name": "invoices-v2"}),
    }

    assert registry_changes(BASE, head) == RegistryChanges(("ledger", "invoices-v2"), ("invoices",))


def test_a_changed_source_changes_every_subscription_reading_it() -> None:
    head = {**BASE, SOURCES: sources(4)}

    assert registry_changes(BASE, head).changed == ("warehouse", "ledger")


def test_a_file_that_is_not_valid_yaml_counts_as_empty() -> None:
    head = {**BASE, FULFILMENT: "team: [unclosed"}

    assert registry_changes(BASE, head) == RegistryChanges((), ("warehouse",))


def test_the_registry_is_read_as_committed(tmp_path: Path) -> None:
    def git(*arguments: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *arguments], cwd=tmp_path, check=True
        )

    git("init", "--quiet")
    (tmp_path / "registry" / "teams").mkdir(parents=True)
    (tmp_path / SOURCES).write_text(sources(1), encoding="utf-8")
    (tmp_path / PAYMENTS).write_text(team("payments", LEDGER), encoding="utf-8")
    git("add", ".")
    git("commit", "--quiet", "-m", "registry")
    (tmp_path / PAYMENTS).write_text("changed after the commit", encoding="utf-8")

    assert registry_at("HEAD", tmp_path) == {SOURCES: sources(1), PAYMENTS: team("payments", LEDGER)}


def test_the_comment_carries_the_diff_each_plan_and_the_removals() -> None:
    text = report(
        "Resources\n[~] AWS::Lambda::Function", RegistryChanges(("ledger",), ("old-hook",)), {"ledger": "plan"}
    )

    assert text.startswith(REPORT_MARKER)
    assert "[~] AWS::Lambda::Function" in text
    assert "### `ledger`\n\n```\nplan\n```" in text
    assert "`old-hook`" in text


def test_a_huge_diff_is_cut_to_fit_a_github_comment() -> None:
    text = report("x" * 200_000, RegistryChanges((), ()), {})

    assert len(text) < 65_536
    assert "truncated" in text


def test_the_plan_is_dispatcher_plans_plain_output_for_the_shipped_registry() -> None:
    output = plan("order-created-to-ledger", REPOSITORY_ROOT)

    assert "order-created-to-ledger" in output
    assert "\x1b[" not in output
