"""Who may deploy: GitHub's OIDC provider and the pipeline's two roles, deployed once by an administrator.

- The deploy role is trusted only by workflow jobs of one repository running in its deploy environments
  (`staging`, `prod`), and may only assume the CDK bootstrap roles of this account and region.
- The diff role is trusted only by pull-request jobs of that repository, and may only assume the bootstrap
  lookup role (read-only), which is what `cdk diff` needs to read the deployed template.
- The smoke-check role is trusted like the deploy role, and may only put records on the environments' canary
  streams and read their canary functions' logs (pipeline/smoke_check.py).

Neither role holds any other permission: what a deploy can change is what the bootstrap's CloudFormation
execution role allows (scope it when bootstrapping, with `--cloudformation-execution-policies`). Nobody
holds long-lived keys: GitHub mints a token per job, STS trades it for a one-hour session.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aws_cdk import ArnFormat, Stack, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import constants
from infra.compliance import acknowledge

# owner/name as GitHub spells it; the sub claim embeds it verbatim.
GITHUB_REPOSITORY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")


class DeployAccessStack(Stack):
    """The GitHub OIDC provider (or an existing one of the account) and the deploy and diff roles."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        github_repository: str,
        existing_oidc_provider_arn: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not GITHUB_REPOSITORY_PATTERN.fullmatch(github_repository):
            raise ValueError(f"github_repository must be owner/name, got {github_repository!r}")
        # Deleting this stack would lock the pipeline out of every environment.
        super().__init__(scope, construct_id, termination_protection=True, **kwargs)
        provider = self._build_oidc_provider(existing_oidc_provider_arn)
        deploy_subjects = [
            f"repo:{github_repository}:environment:{environment}"
            for environment in constants.GITHUB_DEPLOY_ENVIRONMENTS
        ]
        self.deploy_role = self._build_role(
            "DeployRole",
            provider,
            role_name=constants.DEPLOY_ROLE_NAME,
            subjects=deploy_subjects,
            bootstrap_roles=constants.CDK_DEPLOY_BOOTSTRAP_ROLES,
            description=f"cdk deploy from {github_repository}'s deploy environments (GitHub Actions, OIDC)",
        )
        self.diff_role = self._build_role(
            "DiffRole",
            provider,
            role_name=constants.DIFF_ROLE_NAME,
            subjects=[f"repo:{github_repository}:pull_request"],
            bootstrap_roles=constants.CDK_DIFF_BOOTSTRAP_ROLES,
            description=f"Read-only cdk diff for {github_repository}'s pull requests (GitHub Actions, OIDC)",
        )
        self.smoke_check_role = self._build_role(
            "SmokeCheckRole",
            provider,
            role_name=constants.SMOKE_CHECK_ROLE_NAME,
            subjects=deploy_subjects,
            bootstrap_roles=(),
            description=f"Post-deploy canary of {github_repository}'s deploy environments (GitHub Actions, OIDC)",
        )
        self._allow_canary(self.smoke_check_role)
        Tags.of(self).add("service", constants.SERVICE_NAME)

    def _allow_canary(self, role: iam.Role) -> None:
        environments = constants.GITHUB_DEPLOY_ENVIRONMENTS
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kinesis:PutRecord", "kinesis:PutRecords"],
                resources=[
                    self.format_arn(
                        service="kinesis", resource="stream", resource_name=f"{env}-{constants.CANARY_STREAM}"
                    )
                    for env in environments
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:FilterLogEvents"],
                resources=[
                    self.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name=f"/aws/lambda/{env}-{constants.CANARY_SUBSCRIPTION}:*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for env in environments
                ],
            )
        )
        for env in environments:
            log_group = f"/aws/lambda/{env}-{constants.CANARY_SUBSCRIPTION}"
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                f"{log_group}:*]",
                "':*' is IAM's form of one log group with its streams: the canary function's, nothing else.",
            )

    def _build_oidc_provider(self, existing_arn: str | None) -> iam.IOidcProvider:
        # An account holds one provider per issuer URL: reuse the account's if another stack made it already.
        if existing_arn:
            return iam.OidcProviderNative.from_oidc_provider_arn(self, "GitHubOidcProvider", existing_arn)
        # No thumbprints: IAM verifies GitHub's issuer against its own trusted certificate authorities.
        return iam.OidcProviderNative(
            self,
            "GitHubOidcProvider",
            url=f"https://{constants.GITHUB_OIDC_ISSUER}",
            client_ids=[constants.GITHUB_OIDC_AUDIENCE],
        )

    def _build_role(
        self,
        construct_id: str,
        provider: iam.IOidcProvider,
        *,
        role_name: str,
        subjects: Sequence[str],
        bootstrap_roles: Sequence[str],
        description: str,
    ) -> iam.Role:
        issuer = constants.GITHUB_OIDC_ISSUER
        role = iam.Role(
            self,
            construct_id,
            role_name=role_name,
            description=description,
            max_session_duration=constants.PIPELINE_SESSION_DURATION,
            # StringEquals, never StringLike: each subject is one exact repository + environment or event.
            assumed_by=iam.WebIdentityPrincipal(
                provider.oidc_provider_arn,
                conditions={
                    "StringEquals": {f"{issuer}:aud": constants.GITHUB_OIDC_AUDIENCE, f"{issuer}:sub": list(subjects)}
                },
            ),
        )
        if bootstrap_roles:
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["sts:AssumeRole"],
                    resources=[self._bootstrap_role_arn(kind) for kind in bootstrap_roles],
                )
            )
        return role

    def _bootstrap_role_arn(self, kind: str) -> str:
        """The role `cdk bootstrap` created in this stack's account and region."""
        return self.format_arn(
            service="iam",
            region="",
            resource="role",
            resource_name=f"cdk-{constants.CDK_BOOTSTRAP_QUALIFIER}-{kind}-role-{self.account}-{self.region}",
        )
