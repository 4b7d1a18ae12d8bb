"""Production comes from the pipeline; every stack says which commit and which run it was synthesized from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infra import deploy_provenance
from infra.deploy_provenance import ProductionOutsideCiError, Provenance, synthesis_provenance
from tests.infra.conftest import REPOSITORY_ROOT, cdk_context

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GITHUB_RUN = {
    "GITHUB_ACTIONS": "true",
    "CI": "true",
    "GITHUB_SHA": COMMIT,
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "example-org/callback-dispatcher",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_RUN_ATTEMPT": "2",
}
RUN_URL = "https://github.com/example-org/callback-dispatcher/actions/runs/4242/attempts/2"
# Whatever runs these tests (CI sets CI=true), the environment each test means is the one it passes.
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", *GITHUB_RUN)


def local_commit() -> str:
    return "fedcba9876543210fedcba9876543210fedcba98-dirty"


def provenance(environ: dict[str, str], environment: Any = "prod", break_glass: str | None = None) -> Provenance:
    return synthesis_provenance(
        environ, environment, break_glass_reason=break_glass, read_commit=local_commit, user="alice"
    )


def test_prod_outside_ci_without_a_reason_is_refused_saying_how_to_break_glass() -> None:
    with pytest.raises(ProductionOutsideCiError, match=r"by the pipeline only .* -c break_glass="):
        provenance({})


@pytest.mark.parametrize("reason", ["", "   "])
def test_an_empty_break_glass_reason_is_no_reason(reason: str) -> None:
    with pytest.raises(ProductionOutsideCiError):
        provenance({}, break_glass=reason)


def test_breaking_glass_is_printed_and_tagged_with_who_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    result = provenance({}, break_glass="INC-123: ledger endpoint down, pipeline broken")

    assert result.tags() == {
        "git-commit": local_commit(),
        "pipeline-run": "local",
        "break-glass": "alice: INC-123: ledger endpoint down_ pipeline broken",
    }
    assert "BREAK GLASS: alice is synthesizing prod outside CI" in capsys.readouterr().err


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_other_environments_synthesize_anywhere_tagged_as_local(environment: Any) -> None:
    assert provenance({}, environment).tags() == {"git-commit": local_commit(), "pipeline-run": "local"}


def test_in_github_actions_the_tags_are_the_commit_and_the_run_attempts_page() -> None:
    assert provenance(GITHUB_RUN).tags() == {"git-commit": COMMIT, "pipeline-run": RUN_URL}


def test_another_ci_may_synthesize_prod_and_is_tagged_as_ci() -> None:
    assert provenance({"CI": "true"}).tags() == {"git-commit": local_commit(), "pipeline-run": "ci"}


def test_tag_values_keep_to_what_aws_accepts() -> None:
    assert deploy_provenance.tag_value("a;b" + "x" * 300) == ("a_b" + "x" * 300)[:256]


def test_the_commit_is_read_from_git_and_marked_dirty_with_uncommitted_changes(tmp_path: Path) -> None:
    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *arguments],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "--quiet")
    (tmp_path / "file").write_text("one", encoding="utf-8")
    git("add", "file")
    git("commit", "--quiet", "-m", "one")
    head = git("rev-parse", "HEAD")

    assert deploy_provenance.git_commit(tmp_path) == head
    (tmp_path / "file").write_text("two", encoding="utf-8")
    assert deploy_provenance.git_commit(tmp_path) == f"{head}-dirty"
    assert deploy_provenance.git_commit(tmp_path / "missing") == "unknown"


def test_the_tags_go_on_every_stack_and_not_into_the_templates(tmp_path: Path) -> None:
    # Given two stacks with a resource each
    app = cdk.App(outdir=str(tmp_path))
    for name in ("one", "two"):
        cdk.CfnResource(cdk.Stack(app, name), "Thing", type="AWS::SNS::Topic")

    # When the provenance is applied to the app
    Provenance(COMMIT, RUN_URL).apply(app)
    assembly = app.synth()

    # Then each stack carries the tags (CloudFormation copies them to its resources at deploy time) while the
    # templates stay the same from commit to commit, so `cdk diff` shows only real changes
    for name in ("one", "two"):
        stack = assembly.get_stack_artifact(name)
        assert stack.tags == {"git-commit": COMMIT, "pipeline-run": RUN_URL}
        assert "Tags" not in json.dumps(stack.template)


def run_app(context: dict[str, str], environ: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """app.py as the CDK CLI runs it, with exactly the CI variables given."""
    clean = {key: value for key, value in os.environ.items() if key not in CI_VARIABLES}
    return subprocess.run(
        [sys.executable, str(REPOSITORY_ROOT / "app.py")],
        cwd=REPOSITORY_ROOT,
        env={
            **clean,
            **environ,
            "CDK_CONTEXT_JSON": json.dumps({**cdk_context(), "lambda_asset": "functions", **context}),
            "CDK_OUTDIR": str(tmp_path / "out"),
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_app_refuses_prod_outside_ci(tmp_path: Path) -> None:
    result = run_app({"env": "prod"}, {}, tmp_path)

    assert result.returncode == 1
    assert "prod is synthesized and deployed by the pipeline only" in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_the_app_tags_the_dispatcher_and_the_deploy_access_stack_in_a_pipeline_run(tmp_path: Path) -> None:
    result = run_app({"env": "prod"}, GITHUB_RUN, tmp_path)

    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    stacks = {
        name: artifact["properties"].get("tags")
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    expected = {"git-commit": COMMIT, "pipeline-run": RUN_URL}
    assert stacks == {"prod-callback-dispatcher": expected, "callback-dispatcher-deploy-access": expected}
