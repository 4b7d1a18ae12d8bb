"""The delivered-ids table: which records each subscription has already delivered (the function's DeliveredIds port),
and which keys of a subscription with a retry lane are held (its HeldKeys port, one item per subscription)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import constants
from infra.naming import ResourceNames

# What the function does with its items: look up delivered ids, mark new ones, one at a time or in batches.
ITEM_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem")
# What the function does to its held-keys item besides reading it: add and remove entry ids of a key's set.
HELD_KEYS_ACTIONS = ("dynamodb:UpdateItem",)


class DeliveredIdsTable(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, names: ResourceNames, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=names.name("dispatcher", "delivered-ids"),
            partition_key=dynamodb.Attribute(
                name=constants.DELIVERED_IDS_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=constants.DELIVERED_IDS_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=removal_policy == RemovalPolicy.RETAIN,
            removal_policy=removal_policy,
        )

    def grant_subscription_items(self, role: iam.IRole, subscription_name: str) -> None:
        """Read and write only the items whose key starts with "<subscription name>#"."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(ITEM_ACTIONS),
                resources=[self.table.table_arn],
                conditions={
                    "ForAllValues:StringLike": {
                        "dynamodb:LeadingKeys": [f"{subscription_name}{constants.DELIVERED_IDS_KEY_SEPARATOR}*"]
                    }
                },
            )
        )

    def grant_held_keys_item(self, role: iam.IRole, subscription_name: str) -> None:
        """Update only the item "<subscription name>#held" (reading it is among the subscription's item grants)."""
        held_keys_item = f"{subscription_name}{constants.DELIVERED_IDS_KEY_SEPARATOR}{constants.HELD_KEYS_ITEM_SUFFIX}"
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(HELD_KEYS_ACTIONS),
                resources=[self.table.table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [held_keys_item]}},
            )
        )
