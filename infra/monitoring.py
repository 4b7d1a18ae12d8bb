"""Alarms per subscription, mailed to the owning team, and one dashboard per environment.

Every alarm watches a condition a team must act on: a backlog growing older than the registry allows,
a function failing or throttled, records parked or moved to a source DLQ, deliveries failing, a record
waiting in the retry lane longer than the registry allows, or the endpoint answering that it is gone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as sns_subscriptions
from constructs import Construct

from dispatcher import metric_names
from dispatcher.retry_lane import LANE_LOOK_AGAIN_SECONDS
from infra import constants
from infra.naming import ResourceNames
from infra.retry_lane import RetryLane
from infra.source_queue import SourceQueue
from infra.subscription_consumer import SubscriptionConsumer

MILLISECONDS_PER_SECOND = 1_000


class DispatcherMonitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        consumers: Sequence[SubscriptionConsumer],
        alert_emails: Mapping[str, str],
        names: ResourceNames,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.names = names
        self.topic_key = self._build_topic_key(removal_policy)
        self.team_topics = {team: self._build_team_topic(team, email) for team, email in sorted(alert_emails.items())}
        self.alarms: dict[str, list[cloudwatch.Alarm]] = {}
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=names.name(constants.SERVICE_NAME))
        for consumer in consumers:
            self.alarms[consumer.subscription.name] = self._build_alarms(consumer)
            for row in self._dashboard_rows(consumer):
                self.dashboard.add_widgets(*row)

    def _build_topic_key(self, removal_policy: RemovalPolicy) -> kms.Key:
        key = kms.Key(
            self,
            "AlertTopicsKey",
            description=f"{self.names.name('alerts')}: encrypts the dispatcher's alarm topics",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        # CloudWatch alarms publish to an encrypted topic only if they may use its key; the AWS-managed
        # SNS key cannot grant that, hence a customer-managed one.
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        return key

    def _build_team_topic(self, team: str, email: str) -> sns.Topic:
        topic = sns.Topic(
            self,
            f"Alerts-{team}",
            topic_name=self.names.name("dispatcher-alerts", team),
            display_name=f"Callback dispatcher alerts ({team})",
            master_key=self.topic_key,
            enforce_ssl=True,
        )
        topic.add_subscription(sns_subscriptions.EmailSubscription(email))
        return topic

    def _delivery_metric(self, consumer: SubscriptionConsumer, metric_name: str, statistic: str) -> cloudwatch.Metric:
        """An EMF metric of the function; its dimensions are exactly service and subscription."""
        return cloudwatch.Metric(
            namespace=constants.METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"service": constants.SERVICE_NAME, "subscription": consumer.subscription.name},
            statistic=statistic,
            period=constants.ALARM_PERIOD,
        )

    def _success_rate(self, consumer: SubscriptionConsumer) -> cloudwatch.MathExpression:
        # No deliveries at all divides by zero, which CloudWatch drops: missing data, not a breach.
        return cloudwatch.MathExpression(
            expression="100 * delivered / (delivered + failed + parked)",
            using_metrics={
                "delivered": self._delivery_metric(consumer, metric_names.DELIVERED, "Sum"),
                "failed": self._delivery_metric(consumer, metric_names.DELIVERY_FAILED, "Sum"),
                "parked": self._delivery_metric(consumer, metric_names.PARKED, "Sum"),
            },
            label="Delivery success rate (%)",
            period=constants.ALARM_PERIOD,
        )

    def _backlog_age(self, consumer: SubscriptionConsumer) -> tuple[cloudwatch.IMetric, float]:
        """How old the oldest undelivered record is, and the threshold in the metric's own unit."""
        limit_seconds = consumer.subscription.alarm_iterator_age_seconds
        if isinstance(consumer.source, SourceQueue):
            metric = consumer.source.queue.metric_approximate_age_of_oldest_message(
                statistic="Maximum", period=constants.ALARM_PERIOD
            )
            return metric, limit_seconds
        # IteratorAge is in milliseconds.
        iterator_age = consumer.function.metric("IteratorAge", statistic="Maximum", period=constants.ALARM_PERIOD)
        return iterator_age, limit_seconds * MILLISECONDS_PER_SECOND

    def _retry_lane_age(self, consumer: SubscriptionConsumer) -> cloudwatch.IMetric:
        """How long the oldest record in the lane has waited, in seconds: the function's RetryLaneAge, published
        by every lane round, which looks at each waiting record at least every LANE_LOOK_AGAIN_SECONDS. The
        period is twice that, so a period without a value means nothing waits (SQS's own
        ApproximateAgeOfOldestMessage cannot serve: it leaves out a message received three times or more, and
        every round and deferral is a receive, so it would miss exactly the stuck keys)."""
        return self._delivery_metric(consumer, metric_names.RETRY_LANE_AGE, "Maximum").with_(
            period=Duration.seconds(2 * LANE_LOOK_AGAIN_SECONDS)
        )

    def _build_alarms(self, consumer: SubscriptionConsumer) -> list[cloudwatch.Alarm]:
        name = consumer.subscription.name
        backlog_age, backlog_threshold = self._backlog_age(consumer)
        above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        specifications: list[tuple[str, cloudwatch.IMetric, float, cloudwatch.ComparisonOperator, str]] = [
            (
                "backlog-age",
                backlog_age,
                backlog_threshold,
                above,
                f"The oldest undelivered record is older than {consumer.subscription.alarm_iterator_age_seconds} s: "
                "the endpoint is slow or down, or reserved concurrency is too low for the load.",
            ),
            (
                "errors",
                consumer.function.metric_errors(statistic="Sum", period=constants.ALARM_PERIOD),
                0,
                above,
                "Invocations failed as a whole (not single deliveries): check the function's logs.",
            ),
            (
                "throttles",
                consumer.function.metric_throttles(statistic="Sum", period=constants.ALARM_PERIOD),
                0,
                above,
                "Invocations were throttled at the reserved concurrency: the backlog grows while this lasts.",
            ),
            (
                "parked-records",
                consumer.parked_records.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=constants.ALARM_PERIOD
                ),
                0,
                above,
                "Records the function gave up on are waiting in the parked-records queue for a redrive.",
            ),
            (
                "delivery-success-rate",
                self._success_rate(consumer),
                constants.DELIVERY_SUCCESS_RATE_ALARM_PERCENT,
                cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                f"Fewer than {constants.DELIVERY_SUCCESS_RATE_ALARM_PERCENT}% of delivery attempts succeeded.",
            ),
        ]
        specifications.append(
            (
                "endpoint-gone",
                self._delivery_metric(consumer, metric_names.ENDPOINT_GONE, "Sum"),
                1,
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                "The endpoint answered 410 Gone: it says it no longer exists. The records it refused are parked; "
                "fix or remove the registration.",
            )
        )
        if consumer.retry_lane is not None:
            lane_age_limit = consumer.subscription.alarm_retry_age_seconds
            specifications.append(
                (
                    "retry-lane-age",
                    self._retry_lane_age(consumer),
                    lane_age_limit,
                    above,
                    f"A record has waited in the retry lane for more than {lane_age_limit} s: the endpoint keeps "
                    "failing for its key, whose later records wait behind it.",
                )
            )
        if isinstance(consumer.source, SourceQueue):
            specifications.append(
                (
                    "source-dead-letters",
                    consumer.source.dead_letter_queue.metric_approximate_number_of_messages_visible(
                        statistic="Maximum", period=constants.ALARM_PERIOD
                    ),
                    0,
                    above,
                    "Messages exhausted their receives on the source queue and moved to its dead-letter queue.",
                )
            )

        action = cloudwatch_actions.SnsAction(self.team_topics[consumer.team])
        alarms = []
        for suffix, metric, threshold, comparison, description in specifications:
            alarm = cloudwatch.Alarm(
                consumer,
                f"Alarm-{suffix}",
                alarm_name=self.names.name(name, suffix),
                alarm_description=f"{name} ({consumer.team}): {description}",
                metric=metric,
                threshold=threshold,
                comparison_operator=comparison,
                evaluation_periods=constants.ALARM_EVALUATION_PERIODS,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            alarms.append(alarm)
        return alarms

    def _dashboard_rows(self, consumer: SubscriptionConsumer) -> list[list[cloudwatch.IWidget]]:
        """A header naming the subscription, then one row of graphs, and one more for its retry lane if any."""
        subscription = consumer.subscription
        header = cloudwatch.TextWidget(
            markdown=f"### {subscription.name} ({consumer.team})  \n{subscription.source} → {subscription.endpoint}",
            width=constants.DASHBOARD_WIDTH,
            height=constants.DASHBOARD_HEADER_HEIGHT,
        )
        rows = [self._delivery_graphs(consumer)]
        if consumer.retry_lane is not None:
            rows.append(self._retry_lane_graphs(consumer, consumer.retry_lane))
        return [[header], *(_graph_row(graphs) for graphs in rows)]

    def _delivery_graphs(self, consumer: SubscriptionConsumer) -> list[tuple[str, list[cloudwatch.IMetric]]]:
        backlog_age, _ = self._backlog_age(consumer)
        dead_letter_depths: list[cloudwatch.IMetric] = [
            consumer.parked_records.metric_approximate_number_of_messages_visible(label="Parked records")
        ]
        if isinstance(consumer.source, SourceQueue):
            dead_letter_depths.append(
                consumer.source.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    label="Source dead letters"
                )
            )
        return [
            (
                "Deliveries",
                [
                    self._delivery_metric(consumer, metric_name, "Sum")
                    for metric_name in (
                        metric_names.DELIVERED,
                        metric_names.DELIVERY_FAILED,
                        metric_names.PARKED,
                    )
                ],
            ),
            ("Delivery success rate (%)", [self._success_rate(consumer)]),
            (
                "Delivery latency (ms)",
                [
                    self._delivery_metric(consumer, metric_names.DELIVERY_LATENCY, statistic)
                    for statistic in ("p50", "p99")
                ],
            ),
            ("Oldest undelivered record", [backlog_age]),
            (
                "Invocations",
                [
                    consumer.function.metric_invocations(statistic="Sum"),
                    consumer.function.metric_errors(statistic="Sum"),
                    consumer.function.metric_throttles(statistic="Sum"),
                ],
            ),
            ("Dead letters", dead_letter_depths),
        ]

    def _retry_lane_graphs(
        self, consumer: SubscriptionConsumer, retry_lane: RetryLane
    ) -> list[tuple[str, list[cloudwatch.IMetric]]]:
        return [
            # A gauge: the function reports how many keys are held whenever it reads them.
            ("Held keys", [self._delivery_metric(consumer, metric_names.HELD_KEYS, "Maximum")]),
            ("Oldest record in the retry lane (s)", [self._retry_lane_age(consumer)]),
            (
                # Deferred records are in flight to SQS: not visible until their next round is due.
                "Records in the retry lane",
                [
                    retry_lane.queue.metric_approximate_number_of_messages_visible(label="Due"),
                    retry_lane.queue.metric_approximate_number_of_messages_not_visible(label="Deferred or in a round"),
                ],
            ),
            (
                "Retry lane hand-overs and gone answers",
                [
                    self._delivery_metric(consumer, metric_names.HANDED_TO_RETRY_LANE, "Sum"),
                    self._delivery_metric(consumer, metric_names.ENDPOINT_GONE, "Sum"),
                ],
            ),
        ]


def _graph_row(graphs: list[tuple[str, list[cloudwatch.IMetric]]]) -> list[cloudwatch.IWidget]:
    """Graphs side by side, sharing the dashboard's width."""
    width = constants.DASHBOARD_WIDTH // len(graphs)
    return [
        cloudwatch.GraphWidget(title=title, left=metrics, width=width, height=constants.DASHBOARD_WIDGET_HEIGHT)
        for title, metrics in graphs
    ]
