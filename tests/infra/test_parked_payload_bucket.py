"""The bucket holding payloads too large for their parked message: private, encrypted, TLS only, logged, and
kept longer than any parked message that can point at them."""

from __future__ import annotations

from tests.infra.conftest import Resources

SECONDS_PER_DAY = 24 * 3600


def test_the_parked_payload_bucket_is_private_encrypted_and_logged(resources: Resources) -> None:
    # Given the environment's parked-payload bucket
    properties = resources.all[resources.parked_payload_bucket_id()]["Properties"]

    # Then nothing about it is public, it is encrypted at rest and its accesses are logged
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert properties["LoggingConfiguration"]["LogFilePrefix"] == "ParkedPayloads/"
    # And a delete (by the redrive, once re-delivered) removes a payload for good: no versions are kept
    assert "VersioningConfiguration" not in properties


def test_the_parked_payload_bucket_refuses_every_request_without_tls(resources: Resources) -> None:
    bucket_id = resources.parked_payload_bucket_id()
    (policy,) = [
        value["Properties"]["PolicyDocument"]
        for _, value in resources.of_type("AWS::S3::BucketPolicy")
        if value["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]

    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "s3:*"
    assert statement["Principal"] == {"AWS": "*"}
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_a_payload_outlives_every_parked_message_that_can_point_at_it(resources: Resources) -> None:
    # Given the parked-records queues' retention and the payload bucket's lifecycle
    retentions = {queue["Properties"]["MessageRetentionPeriod"] for _, queue in resources.of_type("AWS::SQS::Queue")}
    properties = resources.all[resources.parked_payload_bucket_id()]["Properties"]
    (rule,) = properties["LifecycleConfiguration"]["Rules"]

    # Then payloads expire, but only after the longest a parked message is kept (parking again rewrites them)
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] * SECONDS_PER_DAY > max(retentions)
