"""Where a cloud assembly came from: the commit and the pipeline run, as tags on every stack.

Production is synthesized by the pipeline only. Outside CI, synthesizing prod needs an explicit
break-glass reason, which is printed and tagged on the stacks, so an emergency deploy from a terminal is
visible in AWS itself. The check stops accidents, not intent (anyone can set CI=true): what keeps
production deploys in the pipeline is that only its deploy role (infra/deploy_access.py) may assume the
bootstrap roles.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Tags
from constructs import IConstruct

from infra.registry.limits import Environment

PRODUCTION: Environment = "prod"
COMMIT_TAG = "git-commit"
RUN_TAG = "pipeline-run"
BREAK_GLASS_TAG = "break-glass"
LOCAL_RUN = "local"
UNKNOWN_COMMIT = "unknown"
# Tags go on the stacks only; CloudFormation copies stack tags onto every resource it deploys. Tagging the
# resources in the template instead would put a new commit into every resource of every `cdk diff`.
STACK_TAG_TYPE = "aws:cdk:stack"
# What AWS accepts in a tag value (letters, digits, spaces and _ . : / = + - @), and how long.
TAG_VALUE_FORBIDDEN = re.compile(r"[^\w .:/=+\-@]")
TAG_VALUE_MAX_LENGTH = 256


class ProductionOutsideCiError(Exception):
    """Production was synthesized outside the pipeline without a break-glass reason."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """The commit and pipeline run an assembly was synthesized from, and a break-glass reason if any."""

    commit: str
    run: str
    break_glass: str | None = None

    def tags(self) -> dict[str, str]:
        tags = {COMMIT_TAG: self.commit, RUN_TAG: self.run}
        if self.break_glass is not None:
            tags[BREAK_GLASS_TAG] = self.break_glass
        return {key: tag_value(value) for key, value in tags.items()}

    def apply(self, scope: IConstruct) -> None:
        """Tag every stack under `scope`."""
        for key, value in self.tags().items():
            Tags.of(scope).add(key, value, include_resource_types=[STACK_TAG_TYPE])


def in_ci(environ: Mapping[str, str]) -> bool:
    return environ.get("CI") == "true" or environ.get("GITHUB_ACTIONS") == "true"


def synthesis_provenance(
    environ: Mapping[str, str],
    environment: Environment,
    *,
    break_glass_reason: str | None,
    read_commit: Callable[[], str],
    user: str,
) -> Provenance:
    """The provenance of this synthesis; raises ProductionOutsideCiError for prod outside CI without a reason."""
    commit = environ.get("GITHUB_SHA") or read_commit()
    run = github_run_url(environ) or ("ci" if in_ci(environ) else LOCAL_RUN)
    if environment != PRODUCTION or in_ci(environ):
        return Provenance(commit, run)
    reason = (break_glass_reason or "").strip()
    if not reason:
        raise ProductionOutsideCiError(
            "prod is synthesized and deployed by the pipeline only (.github/workflows/deploy.yml); "
            "in an emergency, pass -c break_glass='<why, and the incident>' (it is logged and tagged on the stacks)"
        )
    print(f"BREAK GLASS: {user} is synthesizing prod outside CI at {commit}: {reason}", file=sys.stderr)
    return Provenance(commit, run, break_glass=f"{user}: {reason}")


def github_run_url(environ: Mapping[str, str]) -> str | None:
    """The workflow run's page (with its attempt: a re-run deploys again), when run by GitHub Actions."""
    run_id = environ.get("GITHUB_RUN_ID")
    if not run_id:
        return None
    server = environ.get("GITHUB_SERVER_URL", "https://github.com")
    url = f"{server}/{environ.get('GITHUB_REPOSITORY', '')}/actions/runs/{run_id}"
    attempt = environ.get("GITHUB_RUN_ATTEMPT")
    return f"{url}/attempts/{attempt}" if attempt else url


def git_commit(repository: Path) -> str:
    """HEAD, marked `-dirty` when tracked files differ from it: the commit alone would not say what shipped."""
    try:
        head = _git(repository, "rev-parse", "HEAD")
        changes = _git(repository, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN_COMMIT
    return f"{head}-dirty" if changes else head


def _git(repository: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repository, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def tag_value(value: str) -> str:
    return TAG_VALUE_FORBIDDEN.sub("_", value)[:TAG_VALUE_MAX_LENGTH]
