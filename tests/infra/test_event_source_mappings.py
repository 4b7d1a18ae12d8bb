"""Every mapping setting the registry names reaches the event source mapping, for streams and queues."""

from __future__ import annotations

import json

from tests.infra.conftest import Resources


def test_a_stream_subscription_maps_every_registry_setting(resources: Resources) -> None:
    # Given events-to-alpha, a stream subscription that sets every mapping field
    # When its mapping is read from the template
    mapping = resources.mapping_of("events-to-alpha")

    # Then each setting is there, plus the ones the platform always applies
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BatchSize"] == 200
    assert mapping["MaximumBatchingWindowInSeconds"] == 5
    assert mapping["ParallelizationFactor"] == 3
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == 4
    assert mapping["MaximumRecordAgeInSeconds"] == 3600
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert [json.loads(entry["Pattern"]) for entry in mapping["FilterCriteria"]["Filters"]] == [
        {"data": {"type": ["thing.created", "thing.deleted"]}}
    ]


def test_a_stream_subscription_sends_exhausted_batches_to_its_own_bucket(resources: Resources) -> None:
    # Given a stream subscription
    mapping = resources.mapping_of("events-to-alpha")

    # When its on-failure destination is followed
    bucket_id = mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    bucket = resources.all[bucket_id]

    # Then it is an S3 bucket (which keeps the records, unlike an SQS or SNS destination), private and encrypted
    assert bucket["Type"] == "AWS::S3::Bucket"
    properties = bucket["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}


def test_infinite_retries_and_record_age_are_left_to_the_aws_default(resources: Resources) -> None:
    # Given audit-to-beta, registered with -1 (until the record expires) for both
    mapping = resources.mapping_of("audit-to-beta")

    # Then neither is set, which is what -1 means to Lambda
    assert "MaximumRetryAttempts" not in mapping
    assert "MaximumRecordAgeInSeconds" not in mapping
    assert "FilterCriteria" not in mapping


def test_a_stream_with_more_than_two_consumers_feeds_each_through_enhanced_fan_out(resources: Resources) -> None:
    # Given three subscriptions on stream "events" and one on stream "audit"
    events_stream_id, _ = resources.named("AWS::Kinesis::Stream", "Name", "prod-events")
    audit_stream_id, _ = resources.named("AWS::Kinesis::Stream", "Name", "prod-audit")

    # When their mappings are read
    # Then each "events" mapping reads its own registered consumer of that stream
    for name in ("events-to-alpha", "events-to-beta", "events-to-gamma"):
        source = resources.mapping_of(name)["EventSourceArn"]["Fn::GetAtt"]
        consumer_id, consumer = source[0], resources.all[source[0]]
        assert source[1] == "ConsumerARN"
        assert consumer["Type"] == "AWS::Kinesis::StreamConsumer"
        assert consumer["Properties"]["ConsumerName"] == f"prod-{name}", consumer_id
        assert consumer["Properties"]["StreamARN"] == {"Fn::GetAtt": [events_stream_id, "Arn"]}
    # And the lone "audit" consumer polls the stream directly (shared throughput is enough for it)
    assert resources.mapping_of("audit-to-beta")["EventSourceArn"] == {"Fn::GetAtt": [audit_stream_id, "Arn"]}


def test_a_queue_subscription_caps_the_mapping_at_its_reserved_concurrency(resources: Resources) -> None:
    # Given jobs-to-beta on a standard queue with reserved concurrency 6
    mapping = resources.mapping_of("jobs-to-beta")

    # Then the mapping never invokes more than the function may run, and reports partial failures
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 6}
    assert mapping["BatchSize"] == 100
    assert mapping["MaximumBatchingWindowInSeconds"] == 3
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "StartingPosition" not in mapping
    assert "DestinationConfig" not in mapping  # the queue's redrive policy is its failure path


def test_a_fifo_subscription_has_no_batching_window(resources: Resources) -> None:
    mapping = resources.mapping_of("payouts-to-alpha")

    assert mapping["BatchSize"] == 10
    assert "MaximumBatchingWindowInSeconds" not in mapping
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 3}
