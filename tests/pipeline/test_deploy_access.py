"""The deploy-access stack: who GitHub lets assume each role, and the only thing each role may do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from infra import constants
from infra.compliance import add_compliance_checks
from infra.deploy_access import DeployAccessStack
from tests.infra.conftest import cdk_context

REPOSITORY = "example-org/callback-dispatcher"
SUB_CLAIM = f"{constants.GITHUB_OIDC_ISSUER}:sub"
AUD_CLAIM = f"{constants.GITHUB_OIDC_ISSUER}:aud"


def synthesize(tmp_path: Path, **kwargs: Any) -> Template:
    app = cdk.App(context=cdk_context(), outdir=str(tmp_path))
    add_compliance_checks(app)
    stack = DeployAccessStack(app, constants.DEPLOY_ACCESS_STACK_NAME, github_repository=REPOSITORY, **kwargs)
    app.synth()  # cdk-nag fails synthesis on any unacknowledged finding
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return synthesize(tmp_path_factory.mktemp("deploy-access"))


def role(template: Template, role_name: str) -> tuple[str, dict[str, Any]]:
    roles = template.find_resources("AWS::IAM::Role", {"Properties": {"RoleName": role_name}})
    assert len(roles) == 1
    logical_id, resource = next(iter(roles.items()))
    return logical_id, resource["Properties"]


def statements_of(template: Template, role_logical_id: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_logical_id}]}})
    return [
        statement for policy in policies.values() for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def resource_texts(statement: dict[str, Any]) -> list[str]:
    """Each Fn::Join'ed ARN as text, pseudo parameters as {AccountId} and {Region}."""
    resources = statement["Resource"]
    texts = []
    # One resource is written as an object, several as a list.
    for resource in resources if isinstance(resources, list) else [resources]:
        parts = resource["Fn::Join"][1]
        texts.append(
            "".join(part if isinstance(part, str) else "{" + part["Ref"].removeprefix("AWS::") + "}" for part in parts)
        )
    return texts


def assumable_role_names(statement: dict[str, Any]) -> list[str]:
    """`cdk-hnb659fds-deploy-role-{AccountId}-{Region}` out of each role ARN."""
    return [text.split(":role/", 1)[1] for text in resource_texts(statement)]


def assumable_names(statement: dict[str, Any]) -> list[str]:
    """`stream/prod-canary` out of arn:{Partition}:kinesis:{Region}:{AccountId}:stream/prod-canary."""
    return [text.split(":{AccountId}:", 1)[1] for text in resource_texts(statement)]


def test_one_oidc_provider_for_githubs_issuer_and_the_sts_audience(template: Template) -> None:
    template.resource_count_is("AWS::IAM::OIDCProvider", 1)
    template.has_resource_properties(
        "AWS::IAM::OIDCProvider",
        {"Url": "https://token.actions.githubusercontent.com", "ClientIdList": ["sts.amazonaws.com"]},
    )


def test_the_deploy_role_is_trusted_only_by_the_repositorys_deploy_environments(template: Template) -> None:
    _, properties = role(template, constants.DEPLOY_ROLE_NAME)

    [statement] = properties["AssumeRolePolicyDocument"]["Statement"]

    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            AUD_CLAIM: "sts.amazonaws.com",
            SUB_CLAIM: [f"repo:{REPOSITORY}:environment:staging", f"repo:{REPOSITORY}:environment:prod"],
        }
    }
    assert properties["MaxSessionDuration"] == 3600


def test_the_diff_role_is_trusted_only_by_the_repositorys_pull_requests(template: Template) -> None:
    _, properties = role(template, constants.DIFF_ROLE_NAME)

    [statement] = properties["AssumeRolePolicyDocument"]["Statement"]

    assert statement["Condition"] == {
        "StringEquals": {AUD_CLAIM: "sts.amazonaws.com", SUB_CLAIM: [f"repo:{REPOSITORY}:pull_request"]}
    }


def test_the_deploy_role_may_only_assume_the_cdk_bootstrap_roles(template: Template) -> None:
    logical_id, properties = role(template, constants.DEPLOY_ROLE_NAME)

    [statement] = statements_of(template, logical_id)

    assert "ManagedPolicyArns" not in properties
    assert "Policies" not in properties
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRole"
    assert assumable_role_names(statement) == [
        f"cdk-hnb659fds-{kind}-role-{{AccountId}}-{{Region}}"
        for kind in ("deploy", "file-publishing", "image-publishing", "lookup")
    ]


def test_the_diff_role_may_only_assume_the_read_only_lookup_role(template: Template) -> None:
    logical_id, properties = role(template, constants.DIFF_ROLE_NAME)

    [statement] = statements_of(template, logical_id)

    assert "ManagedPolicyArns" not in properties
    assert statement["Action"] == "sts:AssumeRole"
    assert assumable_role_names(statement) == ["cdk-hnb659fds-lookup-role-{AccountId}-{Region}"]


def test_the_smoke_check_role_may_only_put_canary_records_and_read_the_canary_functions_log(
    template: Template,
) -> None:
    logical_id, properties = role(template, constants.SMOKE_CHECK_ROLE_NAME)

    statements = statements_of(template, logical_id)

    [trust] = properties["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Condition"]["StringEquals"][SUB_CLAIM] == [
        f"repo:{REPOSITORY}:environment:staging",
        f"repo:{REPOSITORY}:environment:prod",
    ]
    assert [(statement["Action"], assumable_names(statement)) for statement in statements] == [
        (["kinesis:PutRecord", "kinesis:PutRecords"], ["stream/prod-canary", "stream/staging-canary"]),
        (
            "logs:FilterLogEvents",
            ["log-group:/aws/lambda/prod-canary:*", "log-group:/aws/lambda/staging-canary:*"],
        ),
    ]


def test_no_other_identity_or_permission_is_created(template: Template) -> None:
    template.resource_count_is("AWS::IAM::Role", 3)
    template.resource_count_is("AWS::IAM::Policy", 3)
    template.resource_count_is("AWS::IAM::User", 0)
    template.resource_count_is("AWS::IAM::AccessKey", 0)


def test_an_existing_provider_of_the_account_is_reused(tmp_path: Path) -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"

    template = synthesize(tmp_path, existing_oidc_provider_arn=arn)

    template.resource_count_is("AWS::IAM::OIDCProvider", 0)
    template.has_resource_properties(
        "AWS::IAM::Role",
        {"AssumeRolePolicyDocument": {"Statement": [Match.object_like({"Principal": {"Federated": arn}})]}},
    )


@pytest.mark.parametrize("slug", ["callback-dispatcher", "org/repo:environment:prod", "org/*", ""])
def test_a_repository_that_is_not_owner_slash_name_is_refused(slug: str) -> None:
    with pytest.raises(ValueError, match="github_repository must be owner/name"):
        DeployAccessStack(cdk.App(), "access", github_repository=slug)
