"""CDK entry point: `cdk synth -c env=dev|staging|prod` turns the registry into one DispatcherStack.

Optional context: `-c registry=<dir>` (default registry/), `-c lambda_asset=<dir>` (default the
output of `make asset`).

The stack is environment-agnostic (account and region come from the deploying credentials), so synth
never looks anything up in AWS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

from infra.compliance import add_compliance_checks
from infra.dispatcher_stack import DispatcherStack
from infra.registry import RegistryError, load_registry
from infra.registry.limits import ENVIRONMENTS

DEFAULT_REGISTRY = Path(__file__).parent / "registry"
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

    add_compliance_checks(app)
    DispatcherStack(
        app,
        f"{environment}-callback-dispatcher",
        registry=loaded.registry,
        environment=environment,
        function_code=lambda_.Code.from_asset(str(asset)),
        description=f"Callback dispatcher ({environment}): one throttled consumer per registered subscription",
    )
    app.synth()


if __name__ == "__main__":
    main()
