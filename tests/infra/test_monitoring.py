"""Alarms per subscription with thresholds in the metric's own unit, mailed to the owning team."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import Resources


def alarm_on(alarm: dict[str, Any]) -> tuple[str, str, float, str]:
    return alarm["Namespace"], alarm["MetricName"], alarm["Threshold"], alarm["ComparisonOperator"]


def test_a_stream_backlog_alarm_converts_the_registry_seconds_to_iterator_age_milliseconds(
    resources: Resources,
) -> None:
    # Given events-to-alpha with alarm_iterator_age_seconds: 120
    alarm = resources.alarm("events-to-alpha-backlog-age")

    # Then IteratorAge, which is in milliseconds, alarms above 120 000
    assert alarm_on(alarm) == ("AWS/Lambda", "IteratorAge", 120_000, "GreaterThanThreshold")
    assert alarm["Statistic"] == "Maximum"


def test_a_queue_backlog_alarm_watches_the_age_of_the_oldest_message_in_seconds(resources: Resources) -> None:
    # Given jobs-to-beta with the default alarm_iterator_age_seconds (300)
    alarm = resources.alarm("jobs-to-beta-backlog-age")
    queue_id, _ = resources.named("AWS::SQS::Queue", "QueueName", "prod-jobs")

    assert alarm_on(alarm) == ("AWS/SQS", "ApproximateAgeOfOldestMessage", 300, "GreaterThanThreshold")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        ("errors", ("AWS/Lambda", "Errors", 0, "GreaterThanThreshold")),
        ("throttles", ("AWS/Lambda", "Throttles", 0, "GreaterThanThreshold")),
        ("parked-records", ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")),
        ("source-dead-letters", ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")),
    ],
)
def test_any_error_throttle_or_dead_letter_alarms(
    resources: Resources, suffix: str, expected: tuple[str, str, float, str]
) -> None:
    assert alarm_on(resources.alarm(f"jobs-to-beta-{suffix}")) == expected


def test_the_dead_letter_alarms_watch_the_subscriptions_own_queues(resources: Resources) -> None:
    parked_id, _ = resources.named("AWS::SQS::Queue", "QueueName", "prod-jobs-to-beta-parked")
    source_dead_letter_id, _ = resources.named("AWS::SQS::Queue", "QueueName", "prod-jobs-dlq")

    assert resources.alarm("jobs-to-beta-parked-records")["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [parked_id, "QueueName"]}}
    ]
    assert resources.alarm("jobs-to-beta-source-dead-letters")["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [source_dead_letter_id, "QueueName"]}}
    ]


def test_stream_subscriptions_have_no_source_dead_letter_alarm(resources: Resources) -> None:
    alarm_names = {
        alarm["AlarmName"]
        for _, value in resources.of_type("AWS::CloudWatch::Alarm")
        for alarm in [value["Properties"]]
    }

    assert "prod-events-to-alpha-source-dead-letters" not in alarm_names
    assert "prod-events-to-alpha-parked-records" in alarm_names


def test_the_delivery_success_rate_alarm_reads_the_functions_emf_metrics(resources: Resources) -> None:
    # Given the success-rate alarm of events-to-alpha
    alarm = resources.alarm("events-to-alpha-delivery-success-rate")

    # When its metric math is read
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    expression = next(query for query in alarm["Metrics"] if "Expression" in query)

    # Then it is delivered / (delivered + failed + parked) in %, below 95 alarms
    assert alarm["Threshold"] == 95
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert expression["Expression"] == "100 * delivered / (delivered + failed + parked)"
    dimensions = [
        {"Name": "service", "Value": "callback-dispatcher"},
        {"Name": "subscription", "Value": "events-to-alpha"},
    ]
    for query_id, metric_name in (("delivered", "Delivered"), ("failed", "DeliveryFailed"), ("parked", "Parked")):
        metric = queries[query_id]["MetricStat"]["Metric"]
        assert metric["Namespace"] == "CallbackDispatcher"
        assert metric["MetricName"] == metric_name
        assert sorted(metric["Dimensions"], key=lambda dimension: dimension["Name"]) == dimensions


def test_alarms_notify_the_owning_teams_encrypted_topic_which_mails_its_on_call(resources: Resources) -> None:
    # Given the two teams' topics
    alpha_topic_id, alpha_topic = resources.named("AWS::SNS::Topic", "TopicName", "prod-dispatcher-alerts-alpha")
    beta_topic_id, _ = resources.named("AWS::SNS::Topic", "TopicName", "prod-dispatcher-alerts-beta")

    # Then alpha's alarms go to alpha's topic, in and out of alarm, and beta's to beta's
    alpha_alarm = resources.alarm("events-to-alpha-errors")
    assert alpha_alarm["AlarmActions"] == [{"Ref": alpha_topic_id}]
    assert alpha_alarm["OKActions"] == [{"Ref": alpha_topic_id}]
    assert resources.alarm("jobs-to-beta-errors")["AlarmActions"] == [{"Ref": beta_topic_id}]
    # And the topic is encrypted with a key CloudWatch may use, and mails the team's address
    assert "Fn::GetAtt" in alpha_topic["KmsMasterKeyId"]
    subscriptions = [value["Properties"] for _, value in resources.of_type("AWS::SNS::Subscription")]
    assert {"Protocol": "email", "Endpoint": "alpha-oncall@example.com", "TopicArn": {"Ref": alpha_topic_id}} in [
        {key: subscription[key] for key in ("Protocol", "Endpoint", "TopicArn")} for subscription in subscriptions
    ]


def test_the_topic_key_lets_cloudwatch_alarms_publish(resources: Resources) -> None:
    [(_, key)] = list(resources.of_type("AWS::KMS::Key"))

    statements = key["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]

    assert key["Properties"]["EnableKeyRotation"] is True
    assert sorted(cloudwatch[0]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_one_dashboard_shows_a_row_per_subscription(resources: Resources) -> None:
    [(_, dashboard)] = list(resources.of_type("AWS::CloudWatch::Dashboard"))
    body = str(dashboard["Properties"]["DashboardBody"])

    assert dashboard["Properties"]["DashboardName"] == "prod-callback-dispatcher"
    for name in ("events-to-alpha", "events-to-beta", "events-to-gamma", "audit-to-beta", "jobs-to-beta"):
        assert f"### {name} (" in body
