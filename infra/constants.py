"""Every name and tuning number of the deployed infrastructure, each defined once with its unit.

AWS service limits, which the registry validator checks, live in `infra.registry.limits`.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from dispatcher import config as function_contract
from dispatcher import delivered_ids as function_delivered_ids
from dispatcher.adapters import held_keys as function_held_keys
from infra.registry import limits
from infra.registry.limits import Environment

# --- The function contract (must match functions/dispatcher) ------------------------------------------
SERVICE_NAME: Final = function_contract.SERVICE_NAME
METRICS_NAMESPACE: Final = function_contract.METRICS_NAMESPACE
HANDLER: Final = "dispatcher.handler.handler"
# The EMF metric names emitted by the function are dispatcher.metric_names, which monitoring.py imports;
# their dimensions are exactly {service, subscription}.
# Delivered-ids table: every item's partition key starts with "<subscription name>#".
DELIVERED_IDS_PARTITION_KEY: Final = "pk"
DELIVERED_IDS_TTL_ATTRIBUTE: Final = "expires_at"
DELIVERED_IDS_KEY_SEPARATOR: Final = function_delivered_ids.KEY_SEPARATOR
# The held-keys item of a subscription with a retry lane: "<subscription name>#held" in the same table.
HELD_KEYS_ITEM_SUFFIX: Final = function_held_keys.HELD_ITEM_SUFFIX

# --- Lambda function ----------------------------------------------------------------------------------
FUNCTION_RUNTIME: Final = lambda_.Runtime.PYTHON_3_13
FUNCTION_ARCHITECTURE: Final = lambda_.Architecture.ARM_64
FUNCTION_MEMORY_MB: Final = 512  # MB; also buys CPU for TLS handshakes and JSON parsing of 10k-record batches
FUNCTION_LOG_FORMAT: Final = lambda_.LoggingFormat.JSON
# Asset build target: must match FUNCTION_RUNTIME and FUNCTION_ARCHITECTURE.
ASSET_PIP_PLATFORM: Final = "manylinux2014_aarch64"
ASSET_PYTHON_VERSION: Final = "3.13"

# --- Event source mappings ----------------------------------------------------------------------------
# A stream with more consumers than this gets enhanced fan-out: shared-throughput polling (5 GetRecords
# calls per second per shard, shared by every consumer) would starve them.
SHARED_THROUGHPUT_MAX_CONSUMERS: Final = 2  # consumers per stream
# Lambda's guidance: visibility timeout at least six times the function timeout, plus the batching window.
QUEUE_VISIBILITY_TIMEOUT_FACTOR: Final = 6
# A retry lane's mapping: a FIFO queue hands Lambda at most 10 messages per batch.
RETRY_LANE_BATCH_SIZE: Final = limits.SQS_FIFO_BATCH_SIZE_MAX  # messages
# The JSON field of a record's payload that `event_types` filters on.
EVENT_TYPE_FIELD: Final = "type"

# --- Retention ----------------------------------------------------------------------------------------
SOURCE_QUEUE_RETENTION: Final = Duration.days(4)  # SQS default; long enough to outlast a weekend outage
DEAD_LETTER_RETENTION: Final = Duration.days(14)  # SQS maximum: parked records wait for a human
# SQS maximum: a record's retry schedule spans at most 7 days, plus however long it waited behind its key's head.
RETRY_LANE_RETENTION: Final = Duration.seconds(limits.SQS_RETENTION_MAX_SECONDS)
FAILED_BATCH_RETENTION: Final = Duration.days(30)  # stream on-failure records in S3
# Payloads too large for their parked message (S3, claim check): kept a day longer than any message that
# can point at them, counted from the last time the record was parked (parking it again rewrites the object).
PARKED_PAYLOAD_RETENTION: Final = Duration.days(int(DEAD_LETTER_RETENTION.to_days()) + 1)
ACCESS_LOG_RETENTION: Final = Duration.days(90)  # S3 server access logs
LOG_RETENTION: Final[dict[Environment, logs.RetentionDays]] = {
    "dev": logs.RetentionDays.ONE_WEEK,
    "staging": logs.RetentionDays.ONE_MONTH,
    "prod": logs.RetentionDays.THREE_MONTHS,
}
# Stateful resources (sources, dead-letter queues, parked payloads, the delivered-ids table, failed batches)
# outlive a stack deletion outside dev: they hold records nobody has delivered yet.
STATEFUL_REMOVAL_POLICY: Final[dict[Environment, RemovalPolicy]] = {
    "dev": RemovalPolicy.DESTROY,
    "staging": RemovalPolicy.RETAIN,
    "prod": RemovalPolicy.RETAIN,
}

# --- Monitoring ---------------------------------------------------------------------------------------
ALARM_PERIOD: Final = Duration.minutes(5)
ALARM_EVALUATION_PERIODS: Final = 1  # periods; every alarm here is on a condition that needs a human now
DELIVERY_SUCCESS_RATE_ALARM_PERCENT: Final = 95  # %, delivered / (delivered + failed + parked)
DASHBOARD_HEADER_HEIGHT: Final = 2  # grid units
DASHBOARD_WIDGET_HEIGHT: Final = 6  # grid units
DASHBOARD_WIDTH: Final = 24  # grid units, CloudWatch's full width

# --- Deploy access (infra/deploy_access.py; the names the workflows in .github/workflows/ assume) ------------
GITHUB_OIDC_ISSUER: Final = "token.actions.githubusercontent.com"
GITHUB_OIDC_AUDIENCE: Final = "sts.amazonaws.com"  # what aws-actions/configure-aws-credentials asks for
DEPLOY_ACCESS_STACK_NAME: Final = "callback-dispatcher-deploy-access"
DEPLOY_ROLE_NAME: Final = "callback-dispatcher-github-deploy"
DIFF_ROLE_NAME: Final = "callback-dispatcher-github-diff"
SMOKE_CHECK_ROLE_NAME: Final = "callback-dispatcher-github-smoke-check"
# The post-deploy smoke check (pipeline/smoke_check.py): a canary event on the platform team's canary stream,
# delivered by the canary subscription (registry/: `stream/canary`, read by subscription `canary` only).
CANARY_STREAM: Final = "canary"
CANARY_SUBSCRIPTION: Final = "canary"
# The GitHub environments of the deploy workflow: the only subjects the deploy role trusts. Their deployment
# branch rules (repository settings) admit main only, and prod's required reviewers approve each deploy.
GITHUB_DEPLOY_ENVIRONMENTS: Final[tuple[Environment, ...]] = ("staging", "prod")
CDK_BOOTSTRAP_QUALIFIER: Final = "hnb659fds"  # `cdk bootstrap`'s default
# Bootstrap roles (cdk-<qualifier>-<kind>-role-<account>-<region>): a deploy assumes these, a diff only lookup.
CDK_DEPLOY_BOOTSTRAP_ROLES: Final = ("deploy", "file-publishing", "image-publishing", "lookup")
CDK_DIFF_BOOTSTRAP_ROLES: Final = ("lookup",)
PIPELINE_SESSION_DURATION: Final = Duration.hours(1)  # longer than a deploy, shorter than a working day
