"""The local AWS is built from the synthesized template: data plane created, consumers read from it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast
from urllib.request import Request, urlopen

import pytest
from rich.console import Console

from cli.local import status_table
from local.aws import EmbeddedAws
from local.esm.kinesis import FAN_OUT_POLLED_AS_SHARED
from local.runtime import QueueCounts, RunningConsumer, RunningLane, SubscriptionReadings
from local.spec import ConsumerStats, KinesisMappingSpec, SqsMappingSpec
from local.template import StackTemplate, TemplateError

SUBSCRIPTION = {"name": "orders-to-ledger", "endpoint": "https://ledger.example.com/h", "signing_secret": "p/ledger"}


def function(name: str, dlq: str, reserved: int | None = 3) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "FunctionName": name,
        "Handler": "dispatcher.handler.handler",
        "Timeout": 40,
        "MemorySize": 512,
        "Environment": {
            "Variables": {
                "DISPATCHER_SUBSCRIPTION": json.dumps(SUBSCRIPTION | {"name": name.removeprefix("dev-")}),
                "DISPATCHER_IDEMPOTENCY_TABLE": {"Ref": "DeliveredIds"},
                "DISPATCHER_DLQ_URL": {"Ref": dlq},
            }
        },
    }
    if reserved is not None:
        properties["ReservedConcurrentExecutions"] = reserved
    return {"Type": "AWS::Lambda::Function", "Properties": properties}


TEMPLATE: dict[str, Any] = {
    "Resources": {
        "Orders": {
            "Type": "AWS::Kinesis::Stream",
            "Properties": {"Name": "dev-orders", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}},
        },
        "Billing": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": "dev-billing",
                "VisibilityTimeout": 240,
                "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["BillingDlq", "Arn"]}, "maxReceiveCount": 5},
            },
        },
        "BillingDlq": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "dev-billing-dlq"}},
        "ParkedA": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "dev-a-parked"}},
        "ParkedB": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "dev-b-parked"}},
        "FailedBatches": {"Type": "AWS::S3::Bucket", "Properties": {}},
        "DeliveredIds": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
                "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            },
        },
        "FunctionA": function("dev-a", "ParkedA"),
        "FunctionB": function("dev-b", "ParkedB"),
        "MappingA": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "FunctionName": {"Ref": "FunctionA"},
                "EventSourceArn": {"Fn::GetAtt": ["Orders", "Arn"]},
                "BatchSize": 250,
                "MaximumBatchingWindowInSeconds": 2,
                "ParallelizationFactor": 3,
                "BisectBatchOnFunctionError": True,
                "MaximumRetryAttempts": 4,
                "MaximumRecordAgeInSeconds": 3600,
                "StartingPosition": "TRIM_HORIZON",
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["FailedBatches", "Arn"]}}},
                "FilterCriteria": {"Filters": [{"Pattern": '{"data":{"type":["order.created"]}}'}]},
            },
        },
        "MappingB": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "FunctionName": {"Ref": "FunctionB"},
                "EventSourceArn": {"Fn::GetAtt": ["Billing", "Arn"]},
                "BatchSize": 10,
                "ScalingConfig": {"MaximumConcurrency": 2},
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            },
        },
    }
}


@pytest.fixture(scope="module")
def local_aws() -> Iterator[EmbeddedAws]:
    aws = EmbeddedAws(port=0)
    aws.start()
    yield aws
    aws.stop()


def test_data_plane_and_consumers_come_from_the_template(local_aws: EmbeddedAws) -> None:
    # Given a synthesized template with a stream consumer and a queue consumer
    template = StackTemplate.parse(TEMPLATE)
    # When the local AWS creates it
    physical, resolve = local_aws.create(template, "dev-test")
    consumers = {spec.function.subscription: spec for spec in template.consumers(physical, resolve)}
    # Then the queue's redrive policy points at its DLQ
    sqs = local_aws.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=physical.refs["Billing"], AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": physical.attributes[("BillingDlq", "Arn")],
        "maxReceiveCount": 5,
    }
    assert attributes["VisibilityTimeout"] == "240"
    # And each function's environment is resolved to the local resources
    stream_consumer = consumers["a"]
    assert stream_consumer.function.environment["DISPATCHER_DLQ_URL"] == physical.refs["ParkedA"]
    assert stream_consumer.function.environment["DISPATCHER_IDEMPOTENCY_TABLE"] == physical.refs["DeliveredIds"]
    assert (stream_consumer.function.timeout_seconds, stream_consumer.function.reserved_concurrency) == (40.0, 3)
    # And every mapping setting is read from the template
    assert stream_consumer.mapping == KinesisMappingSpec(
        stream_name="dev-orders",
        stream_arn=physical.attributes[("Orders", "Arn")],
        batch_size=250,
        batching_window_seconds=2.0,
        parallelization_factor=3,
        bisect_on_error=True,
        maximum_retry_attempts=4,
        maximum_record_age_seconds=3600,
        on_failure_bucket=physical.refs["FailedBatches"],
        filter_patterns=({"data": {"type": ["order.created"]}},),
    )
    assert consumers["b"].mapping == SqsMappingSpec(
        queue_name="dev-billing",
        queue_url=physical.refs["Billing"],
        queue_arn=physical.attributes[("Billing", "Arn")],
        batch_size=10,
        maximum_concurrency=2,
    )
    # And the table and bucket exist
    local_aws.client("dynamodb").describe_table(TableName=physical.refs["DeliveredIds"])
    local_aws.client("s3").head_bucket(Bucket=physical.refs["FailedBatches"])


def test_consumer_without_reserved_concurrency_is_refused(local_aws: EmbeddedAws) -> None:
    # moto keeps one state per process, shared by its servers: start this template afresh
    urlopen(Request(f"{local_aws.endpoint_url}/moto-api/reset", method="POST")).close()
    document = json.loads(json.dumps(TEMPLATE))
    document["Resources"]["FunctionA"] = function("dev-a", "ParkedA", reserved=None)
    template = StackTemplate.parse(document)
    physical, resolve = local_aws.create(template, "dev-test")
    with pytest.raises(TemplateError, match="FunctionA: no reserved concurrency"):
        template.consumers(physical, resolve)


def test_signing_secrets_are_created_locally(local_aws: EmbeddedAws) -> None:
    values = local_aws.create_signing_secrets({"payments/ledger-hook"})
    stored = local_aws.client("secretsmanager").get_secret_value(SecretId="payments/ledger-hook")["SecretString"]
    assert stored == values["payments/ledger-hook"]
    assert stored.startswith("whsec_")


def test_a_subscription_the_function_would_refuse_is_refused_naming_the_function_and_field(
    local_aws: EmbeddedAws,
) -> None:
    # Given a consumer whose subscription has a field the function's model does not know
    document = json.loads(json.dumps(TEMPLATE))
    variables = document["Resources"]["FunctionA"]["Properties"]["Environment"]["Variables"]
    variables["DISPATCHER_SUBSCRIPTION"] = json.dumps(SUBSCRIPTION | {"name": "a", "retries": 3})
    template, physical, resolve = created(local_aws, document)
    # When the consumers are read from the template, Then the error names the function and the field
    with pytest.raises(TemplateError, match=r"FunctionA: DISPATCHER_SUBSCRIPTION\.retries: unknown field"):
        template.consumers(physical, resolve)


def with_mapping_a(**properties: Any) -> dict[str, Any]:
    """The template with MappingA's properties updated."""
    document: dict[str, Any] = json.loads(json.dumps(TEMPLATE))
    document["Resources"]["MappingA"]["Properties"].update(properties)
    return document


def created(local_aws: EmbeddedAws, document: dict[str, Any]) -> tuple[StackTemplate, Any, Any]:
    """The template created afresh: moto keeps one state per process, shared by its servers, so reset it first."""
    urlopen(Request(f"{local_aws.endpoint_url}/moto-api/reset", method="POST")).close()
    template = StackTemplate.parse(document)
    physical, resolve = local_aws.create(template, "dev-test")
    return template, physical, resolve


def test_at_timestamp_mappings_start_at_the_template_timestamp(local_aws: EmbeddedAws) -> None:
    # Given a Kinesis mapping starting AT_TIMESTAMP with a StartingPositionTimestamp (epoch seconds)
    template, physical, resolve = created(
        local_aws, with_mapping_a(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=1767225600)
    )
    # When the consumers are read from the template
    (mapping,) = [spec.mapping for spec in template.consumers(physical, resolve) if spec.function.subscription == "a"]
    # Then the mapping starts there
    assert isinstance(mapping, KinesisMappingSpec)
    assert (mapping.starting_position, mapping.starting_position_timestamp) == ("AT_TIMESTAMP", 1767225600.0)


def test_an_at_timestamp_mapping_without_its_timestamp_is_refused_naming_the_mapping(local_aws: EmbeddedAws) -> None:
    # Given a Kinesis mapping starting AT_TIMESTAMP without StartingPositionTimestamp, which Lambda refuses
    template, physical, resolve = created(local_aws, with_mapping_a(StartingPosition="AT_TIMESTAMP"))
    # When the consumers are read from the template
    # Then the error names the mapping and what it lacks
    with pytest.raises(
        TemplateError, match="MappingA: StartingPosition AT_TIMESTAMP needs a StartingPositionTimestamp"
    ):
        template.consumers(physical, resolve)


def with_fan_out_mapping_a() -> dict[str, Any]:
    """The template with subscription a reading the stream through an enhanced fan-out consumer."""
    document = with_mapping_a(EventSourceArn={"Fn::GetAtt": ["FanOut", "ConsumerARN"]})
    document["Resources"]["FanOut"] = {
        "Type": "AWS::Kinesis::StreamConsumer",
        "Properties": {"ConsumerName": "dev-a-fan-out", "StreamARN": {"Fn::GetAtt": ["Orders", "Arn"]}},
    }
    return document


def test_an_enhanced_fan_out_mapping_reads_its_stream_and_names_its_consumer(local_aws: EmbeddedAws) -> None:
    # Given a Kinesis mapping whose source is an enhanced fan-out consumer of the stream
    template, physical, resolve = created(local_aws, with_fan_out_mapping_a())
    # When the consumers are read from the template
    (mapping,) = [spec.mapping for spec in template.consumers(physical, resolve) if spec.function.subscription == "a"]
    # Then the mapping reads the consumer's stream and knows the consumer by name
    assert isinstance(mapping, KinesisMappingSpec)
    assert (mapping.stream_name, mapping.fan_out_consumer) == ("dev-orders", "dev-a-fan-out")


def test_the_status_table_says_a_fan_out_consumer_is_polled_as_a_shared_one(local_aws: EmbeddedAws) -> None:
    # Given the consumers of a template where subscription a reads through an enhanced fan-out consumer
    template, physical, resolve = created(local_aws, with_fan_out_mapping_a())
    consumers = [
        RunningConsumer(spec, ConsumerStats(), runner=cast(Any, None), task=cast(Any, None))
        for spec in template.consumers(physical, resolve)
    ]
    # When `dispatcher local` draws its status table
    console = Console(width=400, record=True)
    nothing_parked = {
        consumer.subscription: SubscriptionReadings(QueueCounts(visible=0, held=0)) for consumer in consumers
    }
    console.print(status_table(cast(Any, SimpleNamespace(consumers=consumers)), nothing_parked))
    # Then the table says, for that subscription only, why its local mapping differs from Lambda's
    drawn = console.export_text()
    assert f"a: {FAN_OUT_POLLED_AS_SHARED}" in drawn
    assert drawn.count(FAN_OUT_POLLED_AS_SHARED) == 1


def with_retry_lane_a(lane_properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """The template with a retry lane for subscription a, as the CDK app declares one: a FIFO queue that the
    function's DISPATCHER_RETRY_LANE_URL names, mapped to the same function."""
    document: dict[str, Any] = json.loads(json.dumps(TEMPLATE))
    resources = document["Resources"]
    resources["LaneA"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": "dev-a-retry-lane.fifo",
            "FifoQueue": True,
            "ContentBasedDeduplication": False,
            "VisibilityTimeout": 240,
            **(lane_properties or {}),
        },
    }
    resources["FunctionA"]["Properties"]["Environment"]["Variables"]["DISPATCHER_RETRY_LANE_URL"] = {"Ref": "LaneA"}
    resources["LaneMappingA"] = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "FunctionName": {"Ref": "FunctionA"},
            "EventSourceArn": {"Fn::GetAtt": ["LaneA", "Arn"]},
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    }
    return document


def test_a_retry_lane_is_created_and_read_by_its_subscriptions_function(local_aws: EmbeddedAws) -> None:
    # Given a template where subscription a has a retry lane
    template, physical, resolve = created(local_aws, with_retry_lane_a())
    # When the consumers are read from it
    consumers = {spec.function.subscription: spec for spec in template.consumers(physical, resolve)}
    # Then the lane is a FIFO queue deduplicating by the ids the function gives, not by content
    attributes = local_aws.client("sqs").get_queue_attributes(QueueUrl=physical.refs["LaneA"], AttributeNames=["All"])
    assert (attributes["Attributes"]["FifoQueue"], attributes["Attributes"]["ContentBasedDeduplication"]) == (
        "true",
        "false",
    )
    # And subscription a is one consumer: its source's mapping, and beside it the lane's, both to its function
    assert sorted(consumers) == ["a", "b"]
    assert consumers["a"].function.environment["DISPATCHER_RETRY_LANE_URL"] == physical.refs["LaneA"]
    assert isinstance(consumers["a"].mapping, KinesisMappingSpec)
    assert consumers["a"].retry_lane == SqsMappingSpec(
        queue_name="dev-a-retry-lane.fifo",
        queue_url=physical.refs["LaneA"],
        queue_arn=physical.attributes[("LaneA", "Arn")],
        batch_size=10,
    )
    assert consumers["a"].reading_retry_lane().mapping == consumers["a"].retry_lane
    assert consumers["b"].retry_lane is None


def test_a_retry_lane_that_is_not_fifo_is_refused_naming_the_mapping(local_aws: EmbeddedAws) -> None:
    # Given a retry lane declared as a standard queue: it would not keep a key's records in order
    template, physical, resolve = created(local_aws, with_retry_lane_a({"FifoQueue": False, "QueueName": "dev-a-lane"}))
    # When the consumers are read, Then the error names the mapping and the function
    with pytest.raises(TemplateError, match="LaneMappingA: the retry lane of FunctionA is not a FIFO queue"):
        template.consumers(physical, resolve)


def test_a_retry_lane_of_a_function_no_source_feeds_is_refused(local_aws: EmbeddedAws) -> None:
    # Given a function whose only mapping is from its retry lane
    document = with_retry_lane_a()
    del document["Resources"]["MappingA"]
    template, physical, resolve = created(local_aws, document)
    # When the consumers are read, Then the error names the function
    with pytest.raises(TemplateError, match="FunctionA: a retry lane is mapped to it, but no source is"):
        template.consumers(physical, resolve)


def test_the_status_table_shows_each_lane_beside_its_source_and_a_dash_without_one(local_aws: EmbeddedAws) -> None:
    # Given subscription a with a retry lane (3 delivered from its source, 4 in lane rounds, 2 keys held, the
    # oldest record waiting 12.34 s) and subscription b without one
    template, physical, resolve = created(local_aws, with_retry_lane_a())
    specs = {spec.function.subscription: spec for spec in template.consumers(physical, resolve)}
    lane = RunningLane(ConsumerStats(delivered=4), task=cast(Any, None))
    a = RunningConsumer(specs["a"], ConsumerStats(delivered=3), runner=cast(Any, None), task=cast(Any, None))
    a.retry_lane = lane
    b = RunningConsumer(specs["b"], ConsumerStats(delivered=5), runner=cast(Any, None), task=cast(Any, None))
    nothing_parked = QueueCounts(visible=0, held=0)
    readings = {
        "a": SubscriptionReadings(nothing_parked, held_keys=2, oldest_in_lane_seconds=12.34),
        "b": SubscriptionReadings(nothing_parked),
    }
    # When `dispatcher local` draws its status table
    table = status_table(cast(Any, SimpleNamespace(consumers=[a, b])), readings)
    # Then a's row counts the lane's deliveries with the source's and shows the lane; b's shows no lane
    columns = {str(column.header): [str(cell) for cell in column.cells] for column in table.columns}
    assert columns["delivered"] == ["7", "5"]
    assert columns["held keys"] == ["2", "-"]
    assert columns["oldest in lane"] == ["12.3 s", "-"]
