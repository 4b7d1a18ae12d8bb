"""The one configuration model of a subscription's delivery settings.

The registry (infra) extends `SubscriptionConfig` with its deployment fields, the CDK app serialises
the delivery subset into `DISPATCHER_SUBSCRIPTION`, and the function parses it back here at cold start.
One model, one schema: a field cannot mean one thing to the validator and another to the function.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dispatcher.guard import EndpointRefusedError, read_endpoint

SUBSCRIPTION_ENV = "DISPATCHER_SUBSCRIPTION"
IDEMPOTENCY_TABLE_ENV = "DISPATCHER_IDEMPOTENCY_TABLE"
DLQ_URL_ENV = "DISPATCHER_DLQ_URL"
PAYLOAD_BUCKET_ENV = "DISPATCHER_PAYLOAD_BUCKET"
RETRY_LANE_URL_ENV = "DISPATCHER_RETRY_LANE_URL"  # set when the subscription has a retry schedule

Ordering = Literal["partition-key", "none"]

# About 27.6 hours in six rounds, as Svix retries: long enough for an endpoint down over a night.
DEFAULT_RETRY_SCHEDULE_SECONDS = (300, 1800, 7200, 18000, 36000, 36000)
MAX_RETRY_SCHEDULE_TOTAL_SECONDS = 7 * 24 * 3600  # SQS keeps a lane message 14 days at most; a week's margin
MAX_RETRY_ROUNDS = 20

# A resource name of the registry (a subscription, a stream, a queue without its .fifo): lowercase letters, digits
# and hyphens, at most 48 characters. Subscription names become part of function, queue and alarm names and of
# the delivered-ids key prefix; the registry builds its source-name patterns from the same fragment.
NAME_FRAGMENT = r"[a-z0-9][a-z0-9-]{0,47}"
SUBSCRIPTION_NAME_PATTERN = rf"^{NAME_FRAGMENT}$"
DEFAULT_SIGNING_SECRET_PREFIX = "callback-dispatcher/"
# What Secrets Manager accepts as a secret name, and the ARN of a secret (any partition).
SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}")
SIGNING_SECRET_VALUE_PREFIX = "whsec_"  # Standard Webhooks' prefix of a secret value
MIN_SECRET_VALUE_BYTES = 24  # Standard Webhooks' minimum secret size: a base64 string this long is a key
# Fields whose values may carry credentials (an endpoint's user info or query token, a pasted secret):
# errors name these fields but never quote their values.
CONFIDENTIAL_FIELDS = frozenset({"endpoint", "signing_secret"})

# How the function's logs and EMF metrics are labelled; alarms and dashboards select on exactly these.
SERVICE_NAME = "callback-dispatcher"
METRICS_NAMESPACE = "CallbackDispatcher"


class ConfigurationError(ValueError):
    """The function's environment does not describe a valid subscription; names the field at fault."""


class SubscriptionConfig(BaseModel):
    """How one subscription delivers: the fields the function reads from DISPATCHER_SUBSCRIPTION."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=SUBSCRIPTION_NAME_PATTERN, description="Unique subscription name.")]
    endpoint: Annotated[
        str,
        Field(
            description="Callback URL the records are POSTed to: no user info or #fragment; an IP address "
            "only as four decimal octets or a bracketed IPv6 address without zone id, in ASCII."
        ),
    ]
    ordering: Annotated[
        Ordering,
        Field(
            description="partition-key: records sharing a partition key or FIFO group go out one after "
            "another; none: fully concurrent. FIFO queues are always ordered per message group."
        ),
    ] = "partition-key"
    max_in_flight: Annotated[int, Field(ge=1, le=1000, description="Concurrent requests per invocation.")] = 16
    request_timeout_seconds: Annotated[
        float, Field(ge=0.1, le=60, description="Timeout of one HTTP attempt, in seconds.")
    ] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=20, description="HTTP attempts per record inside one invocation.")] = 5
    rate_limit_per_second: Annotated[
        float | None,
        Field(
            gt=0,
            le=100_000,
            description="Requests per second one invocation sends the endpoint (token bucket, burst of one "
            "second); the endpoint sees at most reserved_concurrency times this. null: no limit.",
        ),
    ] = None
    signing_secret: Annotated[
        str,
        Field(
            min_length=1,
            default_factory=lambda fields: f"{DEFAULT_SIGNING_SECRET_PREFIX}{fields.get('name', '')}",
            description="Secrets Manager secret name or ARN holding the whsec_ signing secrets "
            "(created outside this app), never the secret value itself. "
            f"Default: {DEFAULT_SIGNING_SECRET_PREFIX}<subscription name>.",
        ),
    ]
    allow_private_cidrs: Annotated[
        tuple[IPv4Network | IPv6Network, ...],
        Field(description="Private address ranges the endpoint may resolve to (SSRF guard allow-list)."),
    ] = ()
    allow_http: Annotated[bool, Field(description="Allow a plain http:// endpoint.")] = False
    retry_schedule_seconds: Annotated[
        tuple[Annotated[int, Field(ge=1)], ...],
        Field(
            max_length=MAX_RETRY_ROUNDS,
            description="Waits, in seconds, between the retry-lane rounds of a record whose attempts inside an "
            "invocation failed transiently (docs/retry-lanes.md): the source moves on and the record's key waits "
            f"in the lane. At most {MAX_RETRY_ROUNDS} rounds and {MAX_RETRY_SCHEDULE_TOTAL_SECONDS} seconds in all. "
            "[]: no lane; the source re-sends the record and its shard or group waits.",
        ),
    ] = DEFAULT_RETRY_SCHEDULE_SECONDS

    @field_validator("endpoint")
    @classmethod
    def _endpoint_reads_one_way(cls, endpoint: str) -> str:
        """The SSRF guard's own reading (the HTTP client's parser): a form it would refuse at delivery is
        refused here, in every environment, before it is deployed."""
        try:
            read_endpoint(endpoint)
        except EndpointRefusedError as refused:
            raise ValueError(str(refused)) from None
        if "#" in endpoint:
            raise ValueError("URL must not have a #fragment")
        return endpoint

    @field_validator("signing_secret")
    @classmethod
    def _signing_secret_is_a_reference(cls, signing_secret: str) -> str:
        where = "store the signing secret in Secrets Manager and reference it here by name or ARN"
        if _looks_like_a_secret_value(signing_secret):
            # Quoting the value would leak it: it would land in the template, the environment and an IAM ARN.
            raise ValueError(f"looks like a secret value, not a secret's name: {where}")
        if not (SECRET_ARN.fullmatch(signing_secret) or SECRET_NAME.fullmatch(signing_secret)):
            raise ValueError(
                f"is neither a Secrets Manager secret name (up to 512 of A-Z a-z 0-9 /_+=.@-) nor its ARN: {where}"
            )
        return signing_secret

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _retry_schedule_within_retention(cls, schedule: tuple[int, ...]) -> tuple[int, ...]:
        if sum(schedule) > MAX_RETRY_SCHEDULE_TOTAL_SECONDS:
            raise ValueError(
                f"waits add up to {sum(schedule)} s, more than {MAX_RETRY_SCHEDULE_TOTAL_SECONDS} s (7 days)"
            )
        return schedule

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> SubscriptionConfig:
        if read_endpoint(self.endpoint).url.scheme == "http" and not self.allow_http:
            raise ValueError("endpoint: http:// needs allow_http: true (https is required otherwise)")
        return self


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    """Everything the function reads from its environment, parsed once at cold start."""

    subscription: SubscriptionConfig
    delivered_ids_table: str
    parked_queue_url: str  # of the parked-records queue
    payload_bucket: str  # the parked-payload bucket: payloads too large for their parked message
    retry_lane_url: str | None = None  # the retry lane (a FIFO queue); None when the retry schedule is []


def _looks_like_a_secret_value(signing_secret: str) -> bool:
    """A whsec_ value, or a base64 string as long as a key that mixes cases and digits as random bytes do
    (a secret's name rarely decodes as base64, and almost never with all three)."""
    if signing_secret.lower().startswith(SIGNING_SECRET_VALUE_PREFIX):
        return True
    if not all(re.search(characters, signing_secret) for characters in ("[a-z]", "[A-Z]", "[0-9]")):
        return False
    return any(_base64_key_size(signing_secret, alphabet) >= MIN_SECRET_VALUE_BYTES for alphabet in (None, b"-_"))


def _base64_key_size(text: str, altchars: bytes | None) -> int:
    """How many bytes `text` decodes to as strict base64 (`altchars` b"-_": URL-safe), 0 if it does not."""
    try:
        return len(base64.b64decode(text, altchars=altchars, validate=True))
    except ValueError:  # binascii.Error, or a non-ASCII string
        return 0


def may_quote(location: Sequence[str | int]) -> bool:
    """Whether an error may quote the input at `location`: never the value of a confidential field, nor a
    whole document or item (a model-level error's input holds every field)."""
    return bool(location) and location[0] not in CONFIDENTIAL_FIELDS


def describe_validation_error(error: ValidationError, prefix: str) -> str:
    """One line per problem, each naming the field (prefix.field) and why it is wrong; confidential values
    are never quoted (see `may_quote`)."""
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"])
        field = f"{prefix}.{location}" if location else prefix
        if problem["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown field")
        else:
            got = f" (got {problem.get('input')!r})" if may_quote(problem["loc"]) else ""
            lines.append(f"{field}: {problem['msg']}{got}")
    return "; ".join(lines)


def load_settings(environ: Mapping[str, str]) -> FunctionSettings:
    """Parse the function's environment; raises ConfigurationError naming every field at fault."""
    required = (SUBSCRIPTION_ENV, IDEMPOTENCY_TABLE_ENV, DLQ_URL_ENV, PAYLOAD_BUCKET_ENV)
    missing = [name for name in required if not environ.get(name)]
    if missing:
        raise ConfigurationError(f"missing environment variable(s): {', '.join(missing)}")
    try:
        subscription = SubscriptionConfig.model_validate_json(environ[SUBSCRIPTION_ENV])
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error, SUBSCRIPTION_ENV)) from None
    if subscription.retry_schedule_seconds and not environ.get(RETRY_LANE_URL_ENV):
        raise ConfigurationError(
            f"missing environment variable {RETRY_LANE_URL_ENV}: {SUBSCRIPTION_ENV}.retry_schedule_seconds is not []"
        )
    return FunctionSettings(
        subscription=subscription,
        delivered_ids_table=environ[IDEMPOTENCY_TABLE_ENV],
        parked_queue_url=environ[DLQ_URL_ENV],
        payload_bucket=environ[PAYLOAD_BUCKET_ENV],
        retry_lane_url=environ.get(RETRY_LANE_URL_ENV) if subscription.retry_schedule_seconds else None,
    )
