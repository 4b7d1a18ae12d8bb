"""The bucket receiving S3 server access logs of the environment's other buckets."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import constants


class AccessLogsBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,  # server access logging cannot deliver to SSE-KMS
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=constants.ACCESS_LOG_RETENTION)],
            removal_policy=removal_policy,
        )


def private_logged_bucket(
    scope: Construct, construct_id: str, *, access_logs: s3.IBucket, removal_policy: RemovalPolicy, **settings: Any
) -> s3.Bucket:
    """The environment's data buckets share these: encrypted, private, owner-enforced, TLS-only, with their
    server access logs in `access_logs` under `<construct_id>/`; `settings` add what is their own."""
    return s3.Bucket(
        scope,
        "Bucket",
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=f"{construct_id}/",
        removal_policy=removal_policy,
        **settings,
    )
