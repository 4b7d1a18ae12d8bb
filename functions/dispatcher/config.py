"""The one configuration model of a subscription's delivery settings.

The registry (infra) extends `SubscriptionConfig` with its deployment fields, the CDK app serialises
the delivery subset into `DISPATCHER_SUBSCRIPTION`, and the function parses it back here at cold start.
One model, one schema: a field cannot mean one thing to the validator and another to the function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SUBSCRIPTION_ENV = "DISPATCHER_SUBSCRIPTION"
IDEMPOTENCY_TABLE_ENV = "DISPATCHER_IDEMPOTENCY_TABLE"
DLQ_URL_ENV = "DISPATCHER_DLQ_URL"

Ordering = Literal["partition-key", "none"]

# Subscription names become part of function, queue and alarm names and of the delivered-ids key prefix.
SUBSCRIPTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,47}$"
DEFAULT_SIGNING_SECRET_PREFIX = "callback-dispatcher/"

# How the function's logs and EMF metrics are labelled; alarms and dashboards select on exactly these.
SERVICE_NAME = "callback-dispatcher"
METRICS_NAMESPACE = "CallbackDispatcher"


class ConfigurationError(ValueError):
    """The function's environment does not describe a valid subscription; names the field at fault."""


class SubscriptionConfig(BaseModel):
    """How one subscription delivers: the fields the function reads from DISPATCHER_SUBSCRIPTION."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=SUBSCRIPTION_NAME_PATTERN, description="Unique subscription name.")]
    endpoint: Annotated[str, Field(description="Callback URL the records are POSTed to.")]
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
            f"(created outside this app). Default: {DEFAULT_SIGNING_SECRET_PREFIX}<subscription name>.",
        ),
    ]
    allow_private_cidrs: Annotated[
        tuple[IPv4Network | IPv6Network, ...],
        Field(description="Private address ranges the endpoint may resolve to (SSRF guard allow-list)."),
    ] = ()
    allow_http: Annotated[bool, Field(description="Allow a plain http:// endpoint.")] = False

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_an_absolute_http_url(cls, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"must be an http(s) URL, got scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("must name a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (put them in the signing secret's receiver)")
        if parts.fragment:
            raise ValueError("must not have a #fragment")
        return endpoint

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> SubscriptionConfig:
        if urlsplit(self.endpoint).scheme == "http" and not self.allow_http:
            raise ValueError("endpoint: http:// needs allow_http: true (https is required otherwise)")
        return self


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    """Everything the function reads from its environment, parsed once at cold start."""

    subscription: SubscriptionConfig
    idempotency_table: str
    dlq_url: str


def describe_validation_error(error: ValidationError, prefix: str) -> str:
    """One line per problem, each naming the field (prefix.field) and why it is wrong."""
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"])
        field = f"{prefix}.{location}" if location else prefix
        if problem["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown field")
        else:
            lines.append(f"{field}: {problem['msg']} (got {problem.get('input')!r})")
    return "; ".join(lines)


def load_settings(environ: Mapping[str, str]) -> FunctionSettings:
    """Parse the function's environment; raises ConfigurationError naming every field at fault."""
    missing = [name for name in (SUBSCRIPTION_ENV, IDEMPOTENCY_TABLE_ENV, DLQ_URL_ENV) if not environ.get(name)]
    if missing:
        raise ConfigurationError(f"missing environment variable(s): {', '.join(missing)}")
    try:
        subscription = SubscriptionConfig.model_validate_json(environ[SUBSCRIPTION_ENV])
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error, SUBSCRIPTION_ENV)) from None
    return FunctionSettings(
        subscription=subscription,
        idempotency_table=environ[IDEMPOTENCY_TABLE_ENV],
        dlq_url=environ[DLQ_URL_ENV],
    )
