"""Reading the synthesized CloudFormation template: what to create locally and what each consumer is.

Only the data plane is created locally (streams, queues with their redrive policies, the delivered-ids
table, the on-failure buckets); functions and event source mappings become ConsumerSpecs that the
local workers and pollers run, with every setting taken from the template.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dispatcher.config import RETRY_LANE_URL_ENV, SUBSCRIPTION_ENV, SubscriptionConfig, describe_validation_error
from local.spec import ConsumerSpec, FunctionSpec, KinesisMappingSpec, MappingSpec, SqsMappingSpec

STREAM = "AWS::Kinesis::Stream"
STREAM_CONSUMER = "AWS::Kinesis::StreamConsumer"
QUEUE = "AWS::SQS::Queue"
TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
FUNCTION = "AWS::Lambda::Function"
MAPPING = "AWS::Lambda::EventSourceMapping"
LAMBDA_DEFAULT_TIMEOUT_SECONDS = 3
LAMBDA_DEFAULT_MEMORY_MB = 128


class TemplateError(ValueError):
    """The template lacks something the local runtime needs; names the resource."""


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: dict[str, Any]


@dataclass
class PhysicalResources:
    """What the local AWS answered for each created resource: its Ref value and attributes."""

    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackTemplate:
    resources: dict[str, Resource]

    @classmethod
    def load(cls, path: Path) -> StackTemplate:
        return cls.parse(json.loads(path.read_text()))

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> StackTemplate:
        resources = {
            logical_id: Resource(logical_id, body["Type"], dict(body.get("Properties", {})))
            for logical_id, body in document.get("Resources", {}).items()
        }
        return cls(resources)

    def of_type(self, resource_type: str) -> list[Resource]:
        return [resource for resource in self.resources.values() if resource.type == resource_type]

    def consumers(self, physical: PhysicalResources, resolve: Callable[[Any], Any]) -> list[ConsumerSpec]:
        """One ConsumerSpec per event source mapping from a source, its function and settings resolved; the
        mapping from a function's retry lane (the queue its DISPATCHER_RETRY_LANE_URL names) goes with it."""
        sources: list[tuple[Resource, Resource]] = []  # (mapping, function)
        lanes: dict[str, SqsMappingSpec] = {}  # function logical id -> the mapping from its retry lane
        for mapping in self.of_type(MAPPING):
            function = self._mapped_function(mapping)
            if _referenced_id(mapping.properties.get("EventSourceArn")) != _retry_lane_queue_id(function):
                sources.append((mapping, function))
                continue
            lane = self._mapping_spec(mapping, physical, resolve)
            if not isinstance(lane, SqsMappingSpec) or not lane.is_fifo:
                raise TemplateError(
                    f"{mapping.logical_id}: the retry lane of {function.logical_id} is not a FIFO queue"
                )
            lanes[function.logical_id] = lane
        unfed = sorted(lanes.keys() - {function.logical_id for _, function in sources})
        if unfed:
            raise TemplateError(f"{', '.join(unfed)}: a retry lane is mapped to it, but no source is")
        return [
            ConsumerSpec(
                function=_function_spec(function, resolve),
                mapping=self._mapping_spec(mapping, physical, resolve),
                retry_lane=lanes.get(function.logical_id),
            )
            for mapping, function in sources
        ]

    def _mapped_function(self, mapping: Resource) -> Resource:
        function = self.resources.get(_referenced_id(mapping.properties.get("FunctionName")) or "")
        if function is None or function.type != FUNCTION:
            raise TemplateError(f"{mapping.logical_id}: FunctionName does not reference a function")
        return function

    def _mapping_spec(
        self, mapping: Resource, physical: PhysicalResources, resolve: Callable[[Any], Any]
    ) -> MappingSpec:
        properties = mapping.properties
        source, fan_out_consumer = self._event_source(mapping, resolve)
        filters = tuple(json.loads(item["Pattern"]) for item in properties.get("FilterCriteria", {}).get("Filters", []))
        report_failures = "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", [])
        window = float(properties.get("MaximumBatchingWindowInSeconds", 0))
        if source.type == STREAM:
            on_failure = properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            bucket_id = _referenced_id(on_failure)
            timestamp = properties.get("StartingPositionTimestamp")  # epoch seconds, as CloudFormation takes it
            try:
                return KinesisMappingSpec(
                    stream_name=physical.refs[source.logical_id],
                    stream_arn=physical.attributes[(source.logical_id, "Arn")],
                    batch_size=int(properties.get("BatchSize", 100)),
                    batching_window_seconds=window,
                    parallelization_factor=int(properties.get("ParallelizationFactor", 1)),
                    bisect_on_error=bool(properties.get("BisectBatchOnFunctionError", False)),
                    maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", -1)),
                    maximum_record_age_seconds=int(properties.get("MaximumRecordAgeInSeconds", -1)),
                    starting_position=str(properties.get("StartingPosition", "TRIM_HORIZON")),
                    starting_position_timestamp=None if timestamp is None else float(timestamp),
                    on_failure_bucket=physical.refs[bucket_id] if bucket_id else None,
                    filter_patterns=filters,
                    report_batch_item_failures=report_failures,
                    fan_out_consumer=fan_out_consumer,
                )
            except ValueError as error:
                raise TemplateError(f"{mapping.logical_id}: {error}") from error
        return SqsMappingSpec(
            queue_name=physical.attributes[(source.logical_id, "QueueName")],
            queue_url=physical.refs[source.logical_id],
            queue_arn=physical.attributes[(source.logical_id, "Arn")],
            batch_size=int(properties.get("BatchSize", 10)),
            batching_window_seconds=window,
            maximum_concurrency=properties.get("ScalingConfig", {}).get("MaximumConcurrency"),
            filter_patterns=filters,
            report_batch_item_failures=report_failures,
        )

    def _event_source(self, mapping: Resource, resolve: Callable[[Any], Any]) -> tuple[Resource, str | None]:
        """The stream or queue a mapping reads, and the enhanced fan-out consumer it reads a stream through."""
        source = self.resources.get(_referenced_id(mapping.properties.get("EventSourceArn")) or "")
        fan_out_consumer = None
        if source is not None and source.type == STREAM_CONSUMER:
            fan_out_consumer = str(resolve(source.properties.get("ConsumerName", source.logical_id)))
            source = self.resources.get(_referenced_id(source.properties.get("StreamARN")) or "")
        if source is None or source.type not in (STREAM, QUEUE):
            raise TemplateError(f"{mapping.logical_id}: EventSourceArn is not a stream or queue of this template")
        return source, fan_out_consumer


def _retry_lane_queue_id(function: Resource) -> str | None:
    """The logical id of the queue the function's DISPATCHER_RETRY_LANE_URL names (None: it has no retry lane)."""
    variables = function.properties.get("Environment", {}).get("Variables", {})
    return _referenced_id(variables.get(RETRY_LANE_URL_ENV))


def _function_spec(function: Resource, resolve: Callable[[Any], Any]) -> FunctionSpec:
    properties = function.properties
    environment = {
        name: str(resolve(value)) for name, value in properties.get("Environment", {}).get("Variables", {}).items()
    }
    if SUBSCRIPTION_ENV not in environment:
        raise TemplateError(f"{function.logical_id}: no {SUBSCRIPTION_ENV} in its environment")
    try:  # read with the function's own model: a subscription the function would refuse at its cold start
        subscription = SubscriptionConfig.model_validate_json(environment[SUBSCRIPTION_ENV])
    except ValidationError as error:
        raise TemplateError(f"{function.logical_id}: {describe_validation_error(error, SUBSCRIPTION_ENV)}") from None
    reserved = properties.get("ReservedConcurrentExecutions")
    if reserved is None:
        raise TemplateError(f"{function.logical_id}: no reserved concurrency (every consumer must have one)")
    return FunctionSpec(
        name=str(resolve(properties.get("FunctionName", function.logical_id))),
        subscription=subscription.name,
        environment=environment,
        timeout_seconds=float(properties.get("Timeout", LAMBDA_DEFAULT_TIMEOUT_SECONDS)),
        reserved_concurrency=int(reserved),
        memory_mb=int(properties.get("MemorySize", LAMBDA_DEFAULT_MEMORY_MB)),
        handler=str(properties.get("Handler")),
    )


def _referenced_id(value: Any) -> str | None:
    """The logical id a {"Ref": id} or {"Fn::GetAtt": [id, attribute]} points at."""
    if isinstance(value, Mapping):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


class IntrinsicResolver:
    """Resolves the intrinsic functions CDK emits for names, URLs and ARNs against local resources."""

    def __init__(self, physical: PhysicalResources, pseudo_parameters: Mapping[str, str]) -> None:
        self._physical = physical
        self._pseudo = pseudo_parameters
        self._intrinsics: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
        }

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, Mapping):
            return value
        if len(value) != 1:
            return {key: self(item) for key, item in value.items()}
        ((function, argument),) = value.items()
        intrinsic = self._intrinsics.get(function)
        return {function: self(argument)} if intrinsic is None else intrinsic(argument)

    def _ref(self, argument: Any) -> str:
        if argument in self._pseudo:
            return self._pseudo[argument]
        return self._lookup(self._physical.refs, argument, f"Ref {argument}")

    def _get_att(self, argument: Any) -> str:
        logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
        return self._lookup(self._physical.attributes, (logical_id, attribute), f"GetAtt {logical_id}.{attribute}")

    def _join(self, argument: Any) -> str:
        delimiter, parts = argument
        return str(delimiter).join(str(self(part)) for part in parts)

    def _select(self, argument: Any) -> Any:
        index, items = argument
        return self(items)[int(index)]

    def _split(self, argument: Any) -> list[str]:
        delimiter, text = argument
        return str(self(text)).split(delimiter)

    @staticmethod
    def _lookup(table: Mapping[Any, str], key: Any, description: str) -> str:
        if key not in table:
            raise TemplateError(f"{description}: not a resource the local runtime creates")
        return table[key]
