"""Where a stream subscription's batches go when retries or record age run out: the records themselves.

An SQS or SNS on-failure destination would keep only the batch's metadata (shard and sequence range),
and the records are gone from the stream soon after; S3 keeps the invocation payload.
"""

from __future__ import annotations

from typing import Any, cast

import jsii
from aws_cdk import CfnElement, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import constants
from infra.access_logs_bucket import private_logged_bucket
from infra.compliance import acknowledge


class FailedBatchBucket(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        access_logs: s3.IBucket,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = private_logged_bucket(
            self,
            construct_id,
            access_logs=access_logs,
            removal_policy=removal_policy,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=constants.FAILED_BATCH_RETENTION,
                    noncurrent_version_expiration=constants.FAILED_BATCH_RETENTION,
                )
            ],
        )

    def on_failure_destination(self) -> lambda_.IEventSourceDlq:
        return _WriteOnlyS3Destination(self.bucket)


@jsii.implements(lambda_.IEventSourceDlq)
class _WriteOnlyS3Destination:
    """Like the CDK's S3OnFailureDestination, which grants read, write and delete, but write only.

    Lambda needs s3:PutObject and s3:ListBucket to store a failed batch; the function never reads it back.
    """

    def __init__(self, bucket: s3.IBucket) -> None:
        self._bucket = bucket

    def bind(self, target: lambda_.IEventSourceMapping, target_handler: lambda_.IFunction) -> Any:
        role = target_handler.role
        if role is None:
            raise ValueError("the failed-batch destination needs the function's role")
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[self._bucket.arn_for_objects("*")])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self._bucket.bucket_arn])
        )
        bucket_logical_id = Stack.of(self._bucket).get_logical_id(cast(CfnElement, self._bucket.node.default_child))
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{bucket_logical_id}.Arn>/*]",
            "Lambda names each failed-batch object after the mapping's UUID and shard, unknown before deploy; "
            "the bucket holds nothing but this subscription's failed batches.",
        )
        return lambda_.DlqDestinationConfig(destination=self._bucket.bucket_arn)
