"""The shipped registry synthesizes in every environment with zero unacknowledged cdk-nag findings."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.compliance import add_compliance_checks
from infra.registry import load_registry
from infra.registry.limits import ENVIRONMENTS, Environment
from tests.infra.conftest import REPOSITORY_ROOT, cdk_context, synthesize


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_example_registry_passes_the_aws_solutions_checks(environment: Environment, tmp_path: Path) -> None:
    # Given the shipped registry and the AwsSolutions pack on the app, as `make synth` runs it
    registry = load_registry(REPOSITORY_ROOT / "registry", environment).registry
    app = cdk.App(context=cdk_context(), outdir=str(tmp_path))
    add_compliance_checks(app)
    stack = synthesize(registry, environment, app)

    # When the app is synthesized (a finding without a written acknowledgment fails it)
    app.synth()

    # Then every physical name it sets carries the environment
    resources = Template.from_stack(stack).to_json()["Resources"]
    names = [
        properties[key]
        for resource in resources.values()
        for properties in [resource.get("Properties", {})]
        for key in ("FunctionName", "QueueName", "TableName", "TopicName", "AlarmName", "DashboardName", "Name")
        if isinstance(properties.get(key), str)
    ]
    assert names
    assert all(name.startswith(f"{environment}-") for name in names)


def test_dev_may_delete_its_stateful_resources_but_prod_keeps_them() -> None:
    registry = load_registry(REPOSITORY_ROOT / "registry", "dev").registry

    dev = Template.from_stack(synthesize(registry, "dev")).to_json()["Resources"]

    tables = [resource for resource in dev.values() if resource["Type"] == "AWS::DynamoDB::Table"]
    assert [table["DeletionPolicy"] for table in tables] == ["Delete"]
    assert tables[0]["Properties"]["DeletionProtectionEnabled"] is False
