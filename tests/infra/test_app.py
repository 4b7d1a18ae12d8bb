"""app.py refuses to synthesize an unknown environment or an invalid registry, saying why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.infra.conftest import REPOSITORY_ROOT


def run_app(context: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run app.py the way the CDK CLI does: context in CDK_CONTEXT_JSON, output to CDK_OUTDIR."""
    environment = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path / "out")}
    return subprocess.run(
        [sys.executable, str(REPOSITORY_ROOT / "app.py")],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def registry_report(stderr: str) -> list[str]:
    """stderr without the node runtime's own notices (jsii prints them as b'!! ... !!' lines)."""
    return [line for line in stderr.splitlines() if not line.startswith("b'!!")]


def test_an_unknown_environment_is_refused(tmp_path: Path) -> None:
    result = run_app({"env": "qa"}, tmp_path)

    assert result.returncode == 1
    assert "choose an environment with -c env=<dev|staging|prod> (got 'qa')" in result.stderr


def test_an_invalid_registry_fails_synthesis_listing_every_error(tmp_path: Path) -> None:
    # Given a registry with two mistakes in one team file
    registry = tmp_path / "registry"
    (registry / "teams").mkdir(parents=True)
    (registry / "sources.yaml").write_text("streams:\n  - name: orders\n", encoding="utf-8")
    (registry / "teams" / "payments.yaml").write_text(
        "team: payments\nalerts_email: p@example.com\nsubscriptions:\n"
        "  - {name: hook, source: stream/orders, endpoint: 'https://a.example.com/x', max_attempts: 50}\n"
        "  - {name: hook-2, source: stream/invoices, endpoint: 'https://127.0.0.1/x'}\n",
        encoding="utf-8",
    )

    # When the app is synthesized with it
    result = run_app({"env": "prod", "registry": str(registry)}, tmp_path)

    # Then it fails before building anything, listing all of them
    assert result.returncode == 1
    assert registry_report(result.stderr) == [
        "the registry has 3 errors:",
        "  registry/teams/payments.yaml: subscription 'hook': max_attempts: 50 is out of range; allowed: 1 to 20",
        "  registry/teams/payments.yaml: subscription 'hook-2': endpoint: 127.0.0.1 is a loopback address and "
        "not in allow_private_cidrs; allowed: a public address or DNS name, or a private one inside "
        "allow_private_cidrs",
        "  registry/teams/payments.yaml: subscription 'hook-2': source: 'stream/invoices' is not declared in "
        "registry/sources.yaml; allowed: stream/orders",
    ]
