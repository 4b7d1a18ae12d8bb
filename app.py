"""CDK entry point: `cdk synth -c env=dev|staging|prod` turns the registry into one DispatcherStack.

Optional context: `-c registry=<dir>` (default registry/), `-c lambda_asset=<dir>` (default the
output of `make asset`), `-c break_glass=<reason>` (synthesize prod outside CI; logged and tagged).

The app also holds the DeployAccessStack (callback-dispatcher-deploy-access: GitHub's OIDC provider and the
pipeline's roles), deployed once by an administrator and never by the pipeline. Its context, set in cdk.json:
`github_repository` (owner/name of the repository whose workflows may deploy), optionally `deploy_account`
(the account it must be deployed to) and `github_oidc_provider_arn` (reuse the account's existing provider).

Every stack is tagged `git-commit` and `pipeline-run` (infra/deploy_provenance.py). The stacks are
environment-agnostic (account and region come from the deploying credentials), so synth never looks
anything up in AWS.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

from infra import constants, deploy_provenance
from infra.compliance import add_compliance_checks
from infra.deploy_access import DeployAccessStack
from infra.dispatcher_stack import DispatcherStack
from infra.registry import RegistryError, load_registry
from infra.registry.limits import ENVIRONMENTS

REPOSITORY_ROOT = Path(__file__).parent
DEFAULT_REGISTRY = REPOSITORY_ROOT / "registry"
# Built by `make asset`: the function's code plus its dependencies for Lambda's platform.
DEFAULT_LAMBDA_ASSET = Path(__file__).parent / "build" / "lambda-asset"


def main() -> None:
    app = cdk.App()
    environment = app.node.try_get_context("env")
    if environment not in ENVIRONMENTS:
        sys.exit(f"choose an environment with -c env=<{'|'.join(ENVIRONMENTS)}> (got {environment!r})")
    registry = Path(app.node.try_get_context("registry") or DEFAULT_REGISTRY)
    asset = Path(app.node.try_get_context("lambda_asset") or DEFAULT_LAMBDA_ASSET)
    try:
        loaded = load_registry(registry, environment)
    except RegistryError as error:
        sys.exit(str(error))
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not (asset / "dispatcher").is_dir():
        sys.exit(f"the Lambda asset {asset} is missing or incomplete: run `make asset`")
    try:
        provenance = deploy_provenance.synthesis_provenance(
            os.environ,
            environment,
            break_glass_reason=app.node.try_get_context("break_glass"),
            read_commit=lambda: deploy_provenance.git_commit(REPOSITORY_ROOT),
            user=getpass.getuser(),
        )
    except deploy_provenance.ProductionOutsideCiError as error:
        sys.exit(str(error))

    add_compliance_checks(app)
    DispatcherStack(
        app,
        f"{environment}-callback-dispatcher",
        registry=loaded.registry,
        environment=environment,
        function_code=lambda_.Code.from_asset(str(asset)),
        description=f"Callback dispatcher ({environment}): one throttled consumer per registered subscription",
    )
    deploy_account = app.node.try_get_context("deploy_account")
    DeployAccessStack(
        app,
        constants.DEPLOY_ACCESS_STACK_NAME,
        github_repository=app.node.get_context("github_repository"),
        existing_oidc_provider_arn=app.node.try_get_context("github_oidc_provider_arn"),
        # A pinned account makes the CDK CLI refuse credentials of any other account.
        env=cdk.Environment(account=str(deploy_account)) if deploy_account else None,
        description="Who may deploy the callback dispatcher: GitHub OIDC provider, pipeline deploy and diff roles",
    )
    provenance.apply(app)
    app.synth()


if __name__ == "__main__":
    main()
