"""One synthesized stack for a test registry covering every kind of source, shared by the whole session.

Synthesis takes seconds, so the template is built once; each test reads properties out of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra.dispatcher_stack import DispatcherStack
from infra.registry import Registry, load_registry
from infra.registry.limits import Environment

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
# The assertion tests run against the function's source: building the platform asset is `make asset`'s job.
FUNCTION_CODE_DIRECTORY = REPOSITORY_ROOT / "functions"

TEST_SOURCES: dict[str, Any] = {
    "streams": [
        {"name": "events", "mode": "on-demand", "retention_hours": 72},
        {"name": "audit", "mode": "provisioned", "shards": 2},
    ],
    "queues": [{"name": "jobs", "max_receive_count": 7}, {"name": "payouts.fifo"}],
}
TEST_TEAMS: dict[str, dict[str, Any]] = {
    "alpha": {
        "team": "alpha",
        "alerts_email": "alpha-oncall@example.com",
        "subscriptions": [
            {
                "name": "events-to-alpha",
                "source": "stream/events",
                "endpoint": "https://alpha.example.com/events",
                "event_types": ["thing.created", "thing.deleted"],
                "batch_size": 200,
                "batching_window_seconds": 5,
                "reserved_concurrency": 7,
                "parallelization_factor": 3,
                "max_in_flight": 50,
                "request_timeout_seconds": 4,
                "max_attempts": 3,
                "max_record_age_seconds": 3600,
                "max_retry_attempts": 4,
                "signing_secret": "alpha/events-hook",
                "alarm_iterator_age_seconds": 120,
                "retry_schedule_seconds": [60, 600],
                "alarm_retry_age_seconds": 900,
            },
            {
                "name": "payouts-to-alpha",
                "source": "queue/payouts.fifo",
                "endpoint": "https://alpha.example.com/payouts",
                "reserved_concurrency": 3,
                "signing_secret": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:alpha/payouts-AbCdEf",
            },
        ],
    },
    "beta": {
        "team": "beta",
        "alerts_email": "beta-oncall@example.com",
        "subscriptions": [
            {"name": "events-to-beta", "source": "stream/events", "endpoint": "https://beta.example.com/e"},
            {
                "name": "events-to-gamma",
                "source": "stream/events",
                "endpoint": "https://gamma.example.com/e",
                "retry_schedule_seconds": [],  # no retry lane: the stream re-sends and waits, as before lanes
            },
            {
                "name": "audit-to-beta",
                "source": "stream/audit",
                "endpoint": "https://beta.example.com/audit",
                "max_record_age_seconds": -1,
                "max_retry_attempts": -1,
            },
            {
                "name": "jobs-to-beta",
                "source": "queue/jobs",
                "endpoint": "https://beta.example.com/jobs",
                "batch_size": 100,
                "batching_window_seconds": 3,
                "reserved_concurrency": 6,
                "max_in_flight": 20,
                "request_timeout_seconds": 5,
                "max_attempts": 2,
            },
        ],
    },
}


def cdk_context() -> dict[str, Any]:
    """The feature flags of cdk.json, so tests synthesize exactly what `cdk synth` does."""
    context: dict[str, Any] = json.loads((REPOSITORY_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    return context


def synthesize(registry: Registry, environment: Environment, app: cdk.App | None = None) -> DispatcherStack:
    return DispatcherStack(
        app or cdk.App(context=cdk_context()),
        f"{environment}-callback-dispatcher",
        registry=registry,
        environment=environment,
        function_code=lambda_.Code.from_asset(str(FUNCTION_CODE_DIRECTORY), exclude=["**/__pycache__"]),
    )


@pytest.fixture(scope="session")
def test_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("infra") / "registry"
    (root / "teams").mkdir(parents=True)
    (root / "sources.yaml").write_text(yaml.safe_dump(TEST_SOURCES), encoding="utf-8")
    for name, document in TEST_TEAMS.items():
        (root / "teams" / f"{name}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return load_registry(root, "prod").registry


@pytest.fixture(scope="session")
def template(test_registry: Registry) -> Template:
    return Template.from_stack(synthesize(test_registry, "prod"))


class Resources:
    """Lookups into a synthesized template by the names an operator would use."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.all: dict[str, dict[str, Any]] = template.to_json()["Resources"]

    def of_type(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        return ((key, value) for key, value in self.all.items() if value["Type"] == resource_type)

    def named(self, resource_type: str, name_property: str, name: str) -> tuple[str, dict[str, Any]]:
        """The one resource of a type whose physical-name property equals `name`: (logical id, properties)."""
        matches = [
            (key, value.get("Properties", {}))
            for key, value in self.of_type(resource_type)
            if value.get("Properties", {}).get(name_property) == name
        ]
        assert len(matches) == 1, f"expected one {resource_type} named {name}, found {len(matches)}"
        return matches[0]

    def function(self, name: str) -> tuple[str, dict[str, Any]]:
        return self.named("AWS::Lambda::Function", "FunctionName", f"prod-{name}")

    def mappings_of(self, function_name: str) -> list[dict[str, Any]]:
        function_id, _ = self.function(function_name)
        return [
            value["Properties"]
            for _, value in self.of_type("AWS::Lambda::EventSourceMapping")
            if value["Properties"]["FunctionName"] == {"Ref": function_id}
        ]

    def retry_lane_of(self, subscription: str) -> tuple[str, dict[str, Any]]:
        """The subscription's retry lane queue: (logical id, properties)."""
        return self.named("AWS::SQS::Queue", "QueueName", f"prod-{subscription}-retry-lane.fifo")

    def mapping_of(self, function_name: str) -> dict[str, Any]:
        """The mapping from the subscription's source (not from its retry lane)."""
        lane_arns = [
            {"Fn::GetAtt": [key, "Arn"]}
            for key, value in self.of_type("AWS::SQS::Queue")
            if str(value["Properties"].get("QueueName", "")).endswith("-retry-lane.fifo")
        ]
        (mapping,) = [
            mapping for mapping in self.mappings_of(function_name) if mapping["EventSourceArn"] not in lane_arns
        ]
        return mapping

    def retry_lane_mapping_of(self, subscription: str) -> dict[str, Any]:
        lane_id, _ = self.retry_lane_of(subscription)
        (mapping,) = [
            mapping
            for mapping in self.mappings_of(subscription)
            if mapping["EventSourceArn"] == {"Fn::GetAtt": [lane_id, "Arn"]}
        ]
        return mapping

    def policy_statements_of(self, function_name: str) -> list[dict[str, Any]]:
        _, function = self.function(function_name)
        role_id = function["Role"]["Fn::GetAtt"][0]
        return [
            statement
            for _, policy in self.of_type("AWS::IAM::Policy")
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]

    def parked_payload_bucket_id(self) -> str:
        """The logical id of the environment's bucket for parked payloads (the ParkedPayloads construct's)."""
        (bucket_id,) = [key for key, _ in self.of_type("AWS::S3::Bucket") if key.startswith("ParkedPayloads")]
        return bucket_id

    def alarm(self, name: str) -> dict[str, Any]:
        return self.named("AWS::CloudWatch::Alarm", "AlarmName", f"prod-{name}")[1]


@pytest.fixture(scope="session")
def resources(template: Template) -> Resources:
    return Resources(template)
