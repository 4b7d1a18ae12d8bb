"""The GitHub workflows, read as data: what they run exists, and their credentials are as narrow as promised."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import constants
from tests.infra.conftest import REPOSITORY_ROOT

WORKFLOWS = sorted((REPOSITORY_ROOT / ".github" / "workflows").glob("*.yml"))
PINNED_ACTION = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")
MAKEFILE_TARGET = re.compile(r"^([A-Za-z][\w-]*)\s*:(?!=)", re.MULTILINE)
# Jobs that talk to AWS, and so the only ones that may ask GitHub for an OIDC token.
AWS_JOBS = {("deploy.yml", "deploy-staging"), ("deploy.yml", "deploy-prod"), ("pull-request.yml", "diff")}
DEPLOY_JOBS = {("deploy.yml", "deploy-staging"), ("deploy.yml", "deploy-prod")}


def load(path: Path) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            yield path.name, name, job


def steps() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for workflow, name, job in jobs():
        for step in job.get("steps", []):
            yield workflow, name, step


def commands() -> Iterator[list[str]]:
    """Every shell command of every `run:`, split into words (continued lines joined)."""
    for _, _, step in steps():
        for line in step.get("run", "").replace("\\\n", " ").splitlines():
            for command in re.split(r"\s*(?:\|\||&&|\||;)\s*", line.strip()):
                if command:
                    yield shlex.split(command)


def makefile_targets() -> set[str]:
    return set(MAKEFILE_TARGET.findall((REPOSITORY_ROOT / "Makefile").read_text(encoding="utf-8")))


def test_the_pipeline_has_its_two_workflows() -> None:
    assert [path.name for path in WORKFLOWS] == ["deploy.yml", "pull-request.yml"]


def test_every_make_target_a_workflow_runs_exists() -> None:
    called = {
        word
        for words in commands()
        if words[0] == "make"
        for word in words[1:]
        if not word.startswith("-") and "=" not in word and ">" not in word
    }

    assert called >= {"lint", "test", "synth", "diff", "deploy", "smoke-check", "pr-report"}
    assert called <= makefile_targets()


def test_every_repository_script_or_module_a_workflow_or_its_targets_run_exists() -> None:
    makefile = (REPOSITORY_ROOT / "Makefile").read_text(encoding="utf-8")
    modules = set(re.findall(r"-m ((?:pipeline|infra)[\w.]*)", makefile))
    scripts = {word for words in commands() for word in words if word.startswith(("./", ".ci/", "scripts/"))}

    assert {"pipeline.smoke_check", "pipeline.pr_report"} <= modules
    for module in modules:
        assert (REPOSITORY_ROOT / (module.replace(".", "/") + ".py")).is_file() or (
            REPOSITORY_ROOT / module.replace(".", "/") / "__main__.py"
        ).is_file(), module
    for script in scripts:
        assert (REPOSITORY_ROOT / script).is_file(), script


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_top_level_permissions_are_read_only(path: Path) -> None:
    assert load(path)["permissions"] == {"contents": "read"}


def test_only_the_aws_jobs_may_request_an_oidc_token() -> None:
    with_token = {
        (workflow, name) for workflow, name, job in jobs() if job.get("permissions", {}).get("id-token") == "write"
    }

    assert with_token == AWS_JOBS
    for path in WORKFLOWS:
        assert "id-token" not in load(path)["permissions"]


def test_aws_is_reached_only_through_oidc_roles_of_the_deploy_access_stack() -> None:
    allowed_roles = {
        constants.DEPLOY_ROLE_NAME,
        constants.DIFF_ROLE_NAME,
        constants.SMOKE_CHECK_ROLE_NAME,
    }
    for path in WORKFLOWS:
        text = path.read_text(encoding="utf-8")
        assert "aws-access-key-id" not in text
        assert "secrets.AWS" not in text
    for workflow, name, step in steps():
        if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"):
            assert (workflow, name) in AWS_JOBS
            role = step["with"]["role-to-assume"].rsplit(":role/", 1)[1]
            assert role in allowed_roles
            if (workflow, name) not in DEPLOY_JOBS:
                assert role == constants.DIFF_ROLE_NAME


def test_every_action_is_pinned_to_a_full_commit_sha() -> None:
    used = [step["uses"] for _, _, step in steps() if "uses" in step]

    assert used
    assert [action for action in used if not PINNED_ACTION.fullmatch(action)] == []


def test_checkouts_do_not_leave_the_token_on_disk() -> None:
    for _, _, step in steps():
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_deploys_run_in_their_github_environment_one_at_a_time_and_are_never_cancelled() -> None:
    deploys = {name: job for workflow, name, job in jobs() if (workflow, name) in DEPLOY_JOBS}

    for name, job in deploys.items():
        environment = name.removeprefix("deploy-")
        assert job["environment"] == environment
        assert job["concurrency"] == {"group": f"deploy-{environment}", "cancel-in-progress": False}
    assert deploys["deploy-prod"]["needs"] == "deploy-staging"
    assert "concurrency" not in load(REPOSITORY_ROOT / ".github" / "workflows" / "deploy.yml")


def test_the_github_environments_are_the_ones_the_deploy_role_trusts() -> None:
    environments = {job["environment"] for workflow, name, job in jobs() if (workflow, name) in DEPLOY_JOBS}

    assert environments == set(constants.GITHUB_DEPLOY_ENVIRONMENTS)


def test_staging_is_smoke_checked_after_its_deploy() -> None:
    staging = next(job for workflow, name, job in jobs() if name == "deploy-staging")
    runs = [step.get("run", "") for step in staging["steps"]]

    assert runs.index("make deploy DEPLOY_ENV=staging") < runs.index("make smoke-check DEPLOY_ENV=staging")
