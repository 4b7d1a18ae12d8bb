"""The sources of sources.yaml: encrypted streams, encrypted TLS-only queues with redrive, sized to the reader."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Resources


def test_streams_are_encrypted_and_keep_the_declared_capacity_and_retention(resources: Resources) -> None:
    _, events = resources.named("AWS::Kinesis::Stream", "Name", "prod-events")
    _, audit = resources.named("AWS::Kinesis::Stream", "Name", "prod-audit")

    for stream in (events, audit):
        assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert events["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert events["RetentionPeriodHours"] == 72
    assert audit["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert audit["ShardCount"] == 2


def test_a_source_queue_outlasts_its_readers_timeout_and_redrives_to_its_dead_letter_queue(
    resources: Resources,
) -> None:
    # Given jobs-to-beta: 100 records, 20 in flight, 2 attempts of 5 s, a 3 s window
    # -> a 53 s function timeout (5 rounds x 2 x 5 s + 3 s reserve)
    _, function = resources.function("jobs-to-beta")
    assert function["Timeout"] == 53

    # When the queue it reads is read from the template
    _, queue = resources.named("AWS::SQS::Queue", "QueueName", "prod-jobs")
    dead_letter_id, dead_letter = resources.named("AWS::SQS::Queue", "QueueName", "prod-jobs-dlq")

    # Then a message stays invisible for 6 function timeouts plus the window, and redrives after 7 receives
    assert queue["VisibilityTimeout"] == 6 * 53 + 3
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_id, "Arn"]},
        "maxReceiveCount": 7,
    }
    assert queue["SqsManagedSseEnabled"] is True
    assert dead_letter["SqsManagedSseEnabled"] is True
    assert dead_letter["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_a_fifo_queue_and_its_dead_letter_queue_are_both_fifo(resources: Resources) -> None:
    _, queue = resources.named("AWS::SQS::Queue", "QueueName", "prod-payouts.fifo")
    _, dead_letter = resources.named("AWS::SQS::Queue", "QueueName", "prod-payouts-dlq.fifo")

    assert queue["FifoQueue"] is True
    assert dead_letter["FifoQueue"] is True


def test_every_queue_refuses_requests_without_tls(resources: Resources) -> None:
    # Given every queue of the stack (sources, their dead-letter queues, parked records)
    queue_ids = {key for key, _ in resources.of_type("AWS::SQS::Queue")}

    # When the queue policies are read
    denied: set[str] = set()
    for _, policy in resources.of_type("AWS::SQS::QueuePolicy"):
        statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
        if any(
            statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for statement in statements
        ):
            denied.update(queue["Ref"] for queue in policy["Properties"]["Queues"])

    # Then each queue has a policy denying plain-HTTP access
    assert denied == queue_ids
