"""Where the functions keep the payloads of parked records too large for their parked message (claim check).

One bucket for the environment. Each subscription's function may only put objects under its own prefix
(`parked/<subscription>/`), never read or delete them; `dispatcher redrive` (an operator's credentials) reads a
payload to re-deliver it and deletes it once re-delivered.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import CfnElement, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from dispatcher.adapters.s3 import parked_payload_prefix
from infra import constants
from infra.access_logs_bucket import private_logged_bucket
from infra.compliance import acknowledge


class ParkedPayloadBucket(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        access_logs: s3.IBucket,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        # Not versioned: a key is only ever written with the same bytes (the same record parked again), and
        # the redrive's delete must really remove a payload that has been re-delivered.
        self.bucket = private_logged_bucket(
            self,
            construct_id,
            access_logs=access_logs,
            removal_policy=removal_policy,
            lifecycle_rules=[s3.LifecycleRule(expiration=constants.PARKED_PAYLOAD_RETENTION)],
        )

    def grant_park(self, role: iam.IRole, subscription: str) -> None:
        """Let `subscription`'s function store payloads under its own prefix, and nothing else."""
        prefix = parked_payload_prefix(subscription)
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[self.bucket.arn_for_objects(f"{prefix}*")])
        )
        bucket_logical_id = Stack.of(self.bucket).get_logical_id(cast(CfnElement, self.bucket.node.default_child))
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{bucket_logical_id}.Arn>/{prefix}*]",
            "Each parked payload's key is a hash of its record, unknown before it is parked; the function may write "
            "under its own subscription's prefix only.",
        )
