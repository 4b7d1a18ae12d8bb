"""Each function's own role reaches only its own source, items, secret, parked records and failed batches."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import Resources

ALL_SUBSCRIPTIONS = (
    "events-to-alpha",
    "events-to-beta",
    "events-to-gamma",
    "audit-to-beta",
    "jobs-to-beta",
    "payouts-to-alpha",
)


# Subscriptions of tests/infra/conftest.py's registry that set retry_schedule_seconds: [].
WITHOUT_RETRY_LANE = frozenset({"events-to-gamma"})


def actions_of(statement: dict[str, Any]) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


def statements_with(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [statement for statement in statements if action in actions_of(statement)]


def resources_granted(statements: list[dict[str, Any]], action: str) -> list[str]:
    """Every resource `action` is allowed on, as JSON, sorted (the CDK merges statements that share actions)."""
    granted: list[str] = []
    for statement in statements_with(statements, action):
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        granted += [json.dumps(target) for target in targets]
    return sorted(granted)


def arn_of(resource_id: str) -> str:
    return json.dumps({"Fn::GetAtt": [resource_id, "Arn"]})


def grants_on(resource_id: str, statements: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Every (action, resource) an Allow statement grants on resources naming `resource_id`, sorted (the CDK merges
    statements that share an action, so one statement may name several buckets)."""
    grants: list[tuple[str, Any]] = []
    for statement in statements:
        actions = actions_of(statement)
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        grants.extend((action, target) for action in actions for target in targets if resource_id in json.dumps(target))
    return sorted(grants, key=json.dumps)


@pytest.mark.parametrize("name", ALL_SUBSCRIPTIONS)
def test_a_function_reads_and_writes_only_its_own_items_in_the_delivered_ids_table(
    resources: Resources, name: str
) -> None:
    # Given the subscription's role
    statements = resources.policy_statements_of(name)

    # When the statements touching DynamoDB are read
    dynamodb = [statement for statement in statements if any("dynamodb:" in a for a in actions_of(statement))]

    # Then one statement grants the item calls the function makes, on keys "<name>#..." only
    items = [statement for statement in dynamodb if "dynamodb:GetItem" in actions_of(statement)]
    assert len(items) == 1
    assert sorted(items[0]["Action"]) == [
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    ]
    assert items[0]["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{name}#*"]}}
    # and with a retry lane, one more lets it update its held-keys item "<name>#held", and no other
    held = [statement for statement in dynamodb if statement is not items[0]]
    if name in WITHOUT_RETRY_LANE:
        assert held == []
    else:
        assert [(statement["Action"], statement["Condition"]) for statement in held] == [
            (
                "dynamodb:UpdateItem",
                {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [f"{name}#held"]}},
            )
        ]


@pytest.mark.parametrize("name", ALL_SUBSCRIPTIONS)
def test_a_function_may_send_only_to_its_own_parked_records_queue_and_retry_lane(
    resources: Resources, name: str
) -> None:
    # Given the subscription's own queues
    parked_id, _ = resources.named("AWS::SQS::Queue", "QueueName", f"prod-{name}-parked")
    own_queues = [arn_of(parked_id)]
    if name not in WITHOUT_RETRY_LANE:
        own_queues.append(arn_of(resources.retry_lane_of(name)[0]))

    # When the resources it may send to are read
    # Then they are those queues and no other
    assert resources_granted(resources.policy_statements_of(name), "sqs:SendMessage") == sorted(own_queues)


def test_a_function_may_read_only_its_own_signing_secret(resources: Resources) -> None:
    # Given one secret named in the registry and one given as a full ARN
    by_name = statements_with(resources.policy_statements_of("events-to-alpha"), "secretsmanager:GetSecretValue")
    by_arn = statements_with(resources.policy_statements_of("payouts-to-alpha"), "secretsmanager:GetSecretValue")

    # Then a name matches exactly that secret's ARN (six random characters), and an ARN is used as given
    assert len(by_name) == 1
    assert by_name[0]["Action"] == "secretsmanager:GetSecretValue"
    assert by_name[0]["Resource"]["Fn::Join"][1][-1] == ":secret:alpha/events-hook-??????"
    assert by_arn[0]["Resource"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:alpha/payouts-AbCdEf"


def test_a_stream_function_reads_only_its_own_stream_and_consumer(resources: Resources) -> None:
    events_stream_id, _ = resources.named("AWS::Kinesis::Stream", "Name", "prod-events")
    consumer_id = resources.mapping_of("events-to-alpha")["EventSourceArn"]["Fn::GetAtt"][0]

    statements = resources.policy_statements_of("events-to-alpha")
    readers = statements_with(statements, "kinesis:SubscribeToShard")

    assert sorted(str(statement["Resource"]) for statement in readers) == sorted(
        [str({"Fn::GetAtt": [events_stream_id, "Arn"]}), str({"Fn::GetAtt": [consumer_id, "ConsumerARN"]})]
    )


def test_a_stream_function_may_write_failed_batches_but_never_read_or_delete_them(resources: Resources) -> None:
    statements = resources.policy_statements_of("events-to-alpha")
    bucket_id = resources.mapping_of("events-to-alpha")["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][
        0
    ]

    assert grants_on(bucket_id, statements) == [
        ("s3:ListBucket", {"Fn::GetAtt": [bucket_id, "Arn"]}),
        ("s3:PutObject", {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]}),
    ]


@pytest.mark.parametrize("name", ALL_SUBSCRIPTIONS)
def test_a_function_may_only_put_parked_payloads_and_only_under_its_own_prefix(resources: Resources, name: str) -> None:
    # Given the environment's parked-payload bucket and the subscription's role
    bucket_id = resources.parked_payload_bucket_id()

    # When the grants on that bucket are read
    grants = grants_on(bucket_id, resources.policy_statements_of(name))

    # Then the function may put objects under parked/<its name>/ only: never read, delete or list them
    assert grants == [("s3:PutObject", {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/parked/{name}/*"]]})]


def test_a_queue_function_consumes_only_its_own_queue_and_retry_lane(resources: Resources) -> None:
    queue_id, _ = resources.named("AWS::SQS::Queue", "QueueName", "prod-jobs")
    lane_id, _ = resources.retry_lane_of("jobs-to-beta")

    consumed = resources_granted(resources.policy_statements_of("jobs-to-beta"), "sqs:ReceiveMessage")

    assert consumed == sorted([arn_of(queue_id), arn_of(lane_id)])


def test_a_function_without_a_retry_lane_consumes_only_its_stream(resources: Resources) -> None:
    assert resources_granted(resources.policy_statements_of("events-to-gamma"), "sqs:ReceiveMessage") == []


@pytest.mark.parametrize("name", sorted(set(ALL_SUBSCRIPTIONS) - WITHOUT_RETRY_LANE))
def test_a_function_may_defer_and_delete_only_in_its_own_queues(resources: Resources, name: str) -> None:
    # Given the subscription's retry lane, and its source if that is a queue
    own_queues = [arn_of(resources.retry_lane_of(name)[0])]
    source_queue = {"jobs-to-beta": "prod-jobs", "payouts-to-alpha": "prod-payouts.fifo"}.get(name)
    if source_queue:
        own_queues.append(arn_of(resources.named("AWS::SQS::Queue", "QueueName", source_queue)[0]))
    statements = resources.policy_statements_of(name)

    # When the resources it may defer messages in (ChangeMessageVisibility, also its batch form) or delete from
    # are read
    # Then they are its own queues only
    for action in ("sqs:ChangeMessageVisibility", "sqs:DeleteMessage"):
        assert resources_granted(statements, action) == sorted(own_queues), action


@pytest.mark.parametrize("name", ALL_SUBSCRIPTIONS)
def test_no_statement_grants_every_action_or_every_resource(resources: Resources, name: str) -> None:
    for statement in resources.policy_statements_of(name):
        actions = actions_of(statement)
        assert all(not action.endswith("*") for action in actions), statement
        assert statement["Resource"] != "*", statement
