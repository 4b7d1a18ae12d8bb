"""The delivered-ids table: keyed by pk alone, on demand, expiring, recoverable and encrypted."""

from __future__ import annotations

from aws_cdk.assertions import Template

from tests.infra.conftest import Resources


def test_the_table_matches_what_the_function_writes_and_survives_mistakes(
    resources: Resources, template: Template
) -> None:
    table_id, table = resources.named("AWS::DynamoDB::Table", "TableName", "prod-dispatcher-delivered-ids")

    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["DeletionProtectionEnabled"] is True
    assert template.to_json()["Resources"][table_id]["DeletionPolicy"] == "Retain"
