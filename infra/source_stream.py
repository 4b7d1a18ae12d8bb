"""A Kinesis data stream declared in registry/sources.yaml."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kinesis as kinesis
from constructs import Construct

from infra.naming import ResourceNames
from infra.registry.model import Stream


class SourceStream(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definition: Stream,
        names: ResourceNames,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.definition = definition
        provisioned = definition.mode == "provisioned"
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=names.name(definition.name),
            stream_mode=kinesis.StreamMode.PROVISIONED if provisioned else kinesis.StreamMode.ON_DEMAND,
            shard_count=definition.shards if provisioned else None,
            retention_period=Duration.hours(definition.retention_hours),
            # The AWS-managed key keeps producers outside this app free of key grants.
            encryption=kinesis.StreamEncryption.MANAGED,
            removal_policy=removal_policy,
        )
