"""Each subscription with a retry schedule gets its retry lane (docs/retry-lanes.md): a FIFO queue read by its
own function, its alarms and a dashboard row; a subscription with `retry_schedule_seconds: []` gets none."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from dispatcher import metric_names
from dispatcher.config import METRICS_NAMESPACE, RETRY_LANE_URL_ENV, SERVICE_NAME
from dispatcher.retry_lane import LANE_LOOK_AGAIN_SECONDS
from infra.registry import load_registry
from tests.infra.conftest import REPOSITORY_ROOT, Resources, synthesize

WITH_RETRY_LANE = ("events-to-alpha", "events-to-beta", "audit-to-beta", "jobs-to-beta", "payouts-to-alpha")
WITHOUT_RETRY_LANE = "events-to-gamma"
FOURTEEN_DAYS = 14 * 24 * 3600  # seconds


@pytest.mark.parametrize("name", WITH_RETRY_LANE)
def test_the_retry_lane_is_an_encrypted_tls_only_fifo_queue_kept_14_days_without_a_redrive_policy(
    resources: Resources, name: str
) -> None:
    # Given the subscription's function and its lane
    _, function = resources.function(name)
    lane_id, lane = resources.retry_lane_of(name)

    # Then the lane is FIFO, deduplicated by the ids the function gives, high-throughput per message group
    assert lane["FifoQueue"] is True
    assert lane.get("ContentBasedDeduplication", False) is False
    assert lane["DeduplicationScope"] == "messageGroup"
    assert lane["FifoThroughputLimit"] == "perMessageGroupId"
    # and encrypted, kept as long as SQS keeps anything, with no redrive policy (the function parks)
    assert lane["SqsManagedSseEnabled"] is True
    assert lane["MessageRetentionPeriod"] == FOURTEEN_DAYS
    assert "RedrivePolicy" not in lane
    # and a message in a running invocation is not handed out again: six times the function timeout
    assert lane["VisibilityTimeout"] == 6 * function["Timeout"]
    # and its policy refuses any request without TLS
    (policy,) = [
        value["Properties"]["PolicyDocument"]
        for _, value in resources.of_type("AWS::SQS::QueuePolicy")
        if value["Properties"]["Queues"] == [{"Ref": lane_id}]
    ]
    assert {
        "Effect": "Deny",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }.items() <= next(statement for statement in policy["Statement"] if statement["Effect"] == "Deny").items()


@pytest.mark.parametrize("name", WITH_RETRY_LANE)
def test_the_function_reads_its_lane_ten_at_a_time_reporting_partial_failures_within_its_concurrency(
    resources: Resources, name: str
) -> None:
    # Given the subscription's function
    _, function = resources.function(name)

    # When the mapping from its lane is read
    mapping = resources.retry_lane_mapping_of(name)

    # Then it hands the function at most 10 messages, takes partial failures, and stays under the reserved
    # concurrency the lane shares with the source
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": function["ReservedConcurrentExecutions"]}
    assert "MaximumBatchingWindowInSeconds" not in mapping
    assert mapping.get("Enabled", True) is True


@pytest.mark.parametrize("name", WITH_RETRY_LANE)
def test_the_function_is_told_its_own_lane(resources: Resources, name: str) -> None:
    _, function = resources.function(name)
    lane_id, _ = resources.retry_lane_of(name)

    assert function["Environment"]["Variables"][RETRY_LANE_URL_ENV] == {"Ref": lane_id}


def test_a_subscription_without_a_schedule_gets_no_lane_no_variable_no_second_mapping_and_no_lane_alarm(
    resources: Resources,
) -> None:
    # Given events-to-gamma, registered with retry_schedule_seconds: []
    _, function = resources.function(WITHOUT_RETRY_LANE)
    queue_names = [value["Properties"].get("QueueName") for _, value in resources.of_type("AWS::SQS::Queue")]
    alarm_names = [value["Properties"]["AlarmName"] for _, value in resources.of_type("AWS::CloudWatch::Alarm")]

    # Then it has no lane queue, no lane variable, its source's mapping only, and no lane-age alarm
    assert f"prod-{WITHOUT_RETRY_LANE}-retry-lane.fifo" not in queue_names
    assert RETRY_LANE_URL_ENV not in function["Environment"]["Variables"]
    assert len(resources.mappings_of(WITHOUT_RETRY_LANE)) == 1
    assert f"prod-{WITHOUT_RETRY_LANE}-retry-lane-age" not in alarm_names
    # while every other subscription has its own lane
    assert sum(str(name).endswith("-retry-lane.fifo") for name in queue_names) == len(WITH_RETRY_LANE)


@pytest.mark.parametrize(("name", "threshold"), [("events-to-alpha", 900), ("jobs-to-beta", 3600)])
def test_the_lane_age_alarm_fires_above_alarm_retry_age_seconds_and_tells_the_team(
    resources: Resources, name: str, threshold: int
) -> None:
    # Given events-to-alpha registered with alarm_retry_age_seconds: 900, and jobs-to-beta with the default
    # When its lane-age alarm is read
    alarm = resources.alarm(f"{name}-retry-lane-age")

    # Then it watches the function's RetryLaneAge of this subscription, in seconds, over a period in which every
    # waiting record is looked at (so a period without a value means nothing waits)
    assert (alarm["Namespace"], alarm["MetricName"]) == (METRICS_NAMESPACE, metric_names.RETRY_LANE_AGE)
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"service": SERVICE_NAME, "subscription": name}
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Period"] == 2 * LANE_LOOK_AGAIN_SECONDS
    assert alarm["TreatMissingData"] == "notBreaching"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (threshold, "GreaterThanThreshold")
    # and notifies the owning team's topic, in and out of alarm
    assert alarm["AlarmActions"] == alarm["OKActions"]
    assert alarm["AlarmActions"] == resources.alarm(f"{name}-errors")["AlarmActions"]


@pytest.mark.parametrize("name", [*WITH_RETRY_LANE, WITHOUT_RETRY_LANE])
def test_the_first_410_gone_answer_alarms_for_every_subscription(resources: Resources, name: str) -> None:
    # When the endpoint-gone alarm of the subscription is read
    alarm = resources.alarm(f"{name}-endpoint-gone")

    # Then it fires on one EndpointGone emitted by the subscription's function, and tells the team
    assert (alarm["Namespace"], alarm["MetricName"]) == ("CallbackDispatcher", "EndpointGone")
    assert sorted(alarm["Dimensions"], key=lambda dimension: dimension["Name"]) == [
        {"Name": "service", "Value": "callback-dispatcher"},
        {"Name": "subscription", "Value": name},
    ]
    assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 1)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == resources.alarm(f"{name}-errors")["AlarmActions"]


def dashboard_widgets(resources: Resources) -> list[dict[str, Any]]:
    """The dashboard's widgets, with every CloudFormation reference in the body written as a placeholder."""
    [(_, dashboard)] = list(resources.of_type("AWS::CloudWatch::Dashboard"))
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    body = "".join(part if isinstance(part, str) else json.dumps(json.dumps(part))[1:-1] for part in parts)
    widgets: list[dict[str, Any]] = json.loads(body)["widgets"]
    return widgets


def test_the_dashboard_shows_held_keys_lane_age_and_hand_overs_under_each_lane_subscription(
    resources: Resources,
) -> None:
    # Given the dashboard's widgets, in order
    widgets = dashboard_widgets(resources)
    titles = [widget["properties"].get("title") or widget["properties"].get("markdown", "") for widget in widgets]

    # When the widgets after each subscription's header are read
    for name in (*WITH_RETRY_LANE, WITHOUT_RETRY_LANE):
        header = next(index for index, title in enumerate(titles) if title.startswith(f"### {name} ("))
        following = titles[header + 1 :]
        next_header = next((index for index, title in enumerate(following) if title.startswith("### ")), None)
        row = following[:next_header]

        # Then a subscription with a lane has its lane's graphs beside its deliveries, and one without has none
        lane_graphs = [
            "Held keys",
            "Oldest record in the retry lane (s)",
            "Records in the retry lane",
            "Retry lane hand-overs and gone answers",
        ]
        if name == WITHOUT_RETRY_LANE:
            assert not set(lane_graphs) & set(row), name
        else:
            assert row[-len(lane_graphs) :] == lane_graphs, name
            lane_age = widgets[header + 1 + row.index("Oldest record in the retry lane (s)")]["properties"]["metrics"]
            assert [metric[:6] for metric in lane_age] == [
                [METRICS_NAMESPACE, metric_names.RETRY_LANE_AGE, "service", SERVICE_NAME, "subscription", name]
            ]
            held_keys = widgets[header + 1 + row.index("Held keys")]["properties"]["metrics"]
            assert held_keys == [
                [
                    "CallbackDispatcher",
                    "HeldKeys",
                    "service",
                    "callback-dispatcher",
                    "subscription",
                    name,
                    {"stat": "Maximum"},
                ]
            ]


def test_a_lane_under_a_reserved_concurrency_of_one_gets_the_smallest_cap_sqs_accepts() -> None:
    # Given the shipped registry's canary, whose function may run once at a time
    registry = load_registry(REPOSITORY_ROOT / "registry", "prod").registry
    (canary,) = [subscription for _, subscription in registry.registrations() if subscription.name == "canary"]
    assert canary.reserved_concurrency == 1

    # When it is synthesized
    resources = Resources(Template.from_stack(synthesize(registry, "prod")))

    # Then its lane's mapping is capped at 2, SQS's smallest maximum concurrency (1 would be refused)
    assert resources.retry_lane_mapping_of("canary")["ScalingConfig"] == {"MaximumConcurrency": 2}
