"""The embedded AWS: moto in server mode on 127.0.0.1, holding the data plane of the synthesized template.

Any AWS SDK or the AWS CLI reaches it with `--endpoint-url` (or AWS_ENDPOINT_URL) and any credentials.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import secrets
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from local import DEFAULT_PORT
from local.moto_kinesis import enforce_kinesis_resharding
from local.moto_sqs import enforce_sqs_semantics
from local.spec import LOCAL_ACCOUNT_ID
from local.template import (
    BUCKET,
    QUEUE,
    STREAM,
    TABLE,
    IntrinsicResolver,
    PhysicalResources,
    Resource,
    StackTemplate,
)

LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
# The settings of the shell that win over the local ones on a loopback endpoint (see client_for_endpoint).
USER_REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")  # the aws CLI v2's order; boto3 reads the second
USER_CREDENTIALS_VARIABLE = "AWS_ACCESS_KEY_ID"
DEFAULT_PROFILE = "default"  # the profile boto3 uses when AWS_PROFILE names none
LOCALHOST = "localhost"
SIGNING_SECRET_BYTES = 32
# Queue attributes CloudFormation sets that SQS's SetQueueAttributes takes as strings.
QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
)


class EmbeddedAws:
    def __init__(self, port: int = DEFAULT_PORT) -> None:
        self.port = port
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """What a process needs to talk to this AWS with the standard SDK variables."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_REGION": LOCAL_REGION,
            **LOCAL_CREDENTIALS,
        }

    def start(self) -> None:
        # The server's per-request access log would drown the status table.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        enforce_sqs_semantics()
        enforce_kinesis_resharding()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        if self.port == 0:
            self.port = self._server.get_host_and_port()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint_url,
            region_name=LOCAL_REGION,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def pseudo_parameters(self) -> dict[str, str]:
        return {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def create(self, template: StackTemplate, name_prefix: str) -> tuple[PhysicalResources, IntrinsicResolver]:
        """Create the template's streams, buckets, tables and queues (redrive policies included)."""
        physical = PhysicalResources()
        resolve = IntrinsicResolver(physical, self.pseudo_parameters())
        for resource in template.of_type(STREAM):
            self._create_stream(resource.logical_id, resource.properties, name_prefix, physical)
        for resource in template.of_type(BUCKET):
            name = _physical_name(resource.properties.get("BucketName"), name_prefix, resource.logical_id)
            self.client("s3").create_bucket(Bucket=name)
            physical.refs[resource.logical_id] = name
            physical.attributes[(resource.logical_id, "Arn")] = f"arn:aws:s3:::{name}"
        for resource in template.of_type(TABLE):
            self._create_table(resource.logical_id, resource.properties, name_prefix, physical)
        sqs = self.client("sqs")
        queues = template.of_type(QUEUE)
        for resource in queues:
            name = _queue_name(resource, name_prefix)
            attributes = {
                key: _attribute_text(resource.properties[key]) for key in QUEUE_ATTRIBUTES if key in resource.properties
            }
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            _note_queue(sqs, resource.logical_id, name, url, physical)
        # Redrive policies name other queues' ARNs: set once every queue exists.
        for resource in queues:
            policy = resource.properties.get("RedrivePolicy")
            if policy:
                sqs.set_queue_attributes(
                    QueueUrl=physical.refs[resource.logical_id],
                    Attributes={"RedrivePolicy": json.dumps(resolve(policy))},
                )
        return physical, resolve

    def _create_stream(
        self, logical_id: str, properties: Mapping[str, Any], prefix: str, physical: PhysicalResources
    ) -> None:
        kinesis = self.client("kinesis")
        name = _physical_name(properties.get("Name"), prefix, logical_id)
        if properties.get("StreamModeDetails", {}).get("StreamMode") == "ON_DEMAND":
            kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
        else:
            kinesis.create_stream(StreamName=name, ShardCount=int(properties.get("ShardCount", 1)))
        if "RetentionPeriodHours" in properties:
            hours = int(properties["RetentionPeriodHours"])
            if hours > 24:
                kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=hours)
        _note_stream(kinesis, logical_id, name, physical)

    def _create_table(
        self, logical_id: str, properties: Mapping[str, Any], prefix: str, physical: PhysicalResources
    ) -> None:
        dynamodb = self.client("dynamodb")
        name = _physical_name(properties.get("TableName"), prefix, logical_id)
        description = dynamodb.create_table(
            TableName=name,
            KeySchema=properties["KeySchema"],
            AttributeDefinitions=properties["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )["TableDescription"]
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        physical.refs[logical_id] = name
        physical.attributes[(logical_id, "Arn")] = description["TableArn"]

    def look_up(self, template: StackTemplate, name_prefix: str) -> tuple[PhysicalResources, IntrinsicResolver]:
        """The physical resources `create` made for `template` on this (running) embedded AWS, found by the
        names `create` gives them; nothing is created. Raises ResourceNotFoundError naming what is missing."""
        physical = PhysicalResources()
        resolve = IntrinsicResolver(physical, self.pseudo_parameters())
        kinesis, s3, dynamodb, sqs = (self.client(service) for service in ("kinesis", "s3", "dynamodb", "sqs"))
        for resource in template.of_type(STREAM):
            name = _physical_name(resource.properties.get("Name"), name_prefix, resource.logical_id)
            with _missing(f"stream {name}", "ResourceNotFoundException"):
                _note_stream(kinesis, resource.logical_id, name, physical)
        for resource in template.of_type(BUCKET):
            name = _physical_name(resource.properties.get("BucketName"), name_prefix, resource.logical_id)
            with _missing(f"bucket {name}", "404", "NoSuchBucket"):
                s3.head_bucket(Bucket=name)
            physical.refs[resource.logical_id] = name
            physical.attributes[(resource.logical_id, "Arn")] = f"arn:aws:s3:::{name}"
        for resource in template.of_type(TABLE):
            name = _physical_name(resource.properties.get("TableName"), name_prefix, resource.logical_id)
            with _missing(f"table {name}", "ResourceNotFoundException"):
                description = dynamodb.describe_table(TableName=name)["Table"]
            physical.refs[resource.logical_id] = name
            physical.attributes[(resource.logical_id, "Arn")] = description["TableArn"]
        for resource in template.of_type(QUEUE):
            name = _queue_name(resource, name_prefix)
            with _missing(f"queue {name}", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            _note_queue(sqs, resource.logical_id, name, url, physical)
        return physical, resolve

    def create_signing_secrets(self, secret_ids: set[str]) -> dict[str, str]:
        """A fresh local `whsec_` secret for every secret the subscriptions name; returns their values."""
        client = self.client("secretsmanager")
        values = {}
        for secret_id in sorted(secret_ids):
            value = "whsec_" + base64.b64encode(secrets.token_bytes(SIGNING_SECRET_BYTES)).decode()
            client.create_secret(Name=secret_id, SecretString=value)
            values[secret_id] = value
        return values


class ResourceNotFoundError(LookupError):
    """A resource of the template is not on the embedded AWS: it runs another registry, or is not running."""


@contextlib.contextmanager
def _missing(description: str, *error_codes: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in error_codes:
            raise ResourceNotFoundError(f"{description} does not exist on the embedded AWS") from None
        raise


def _note_stream(kinesis: Any, logical_id: str, name: str, physical: PhysicalResources) -> None:
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    physical.refs[logical_id] = name
    physical.attributes[(logical_id, "Arn")] = summary["StreamARN"]


def _note_queue(sqs: Any, logical_id: str, name: str, url: str, physical: PhysicalResources) -> None:
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    physical.refs[logical_id] = url
    physical.attributes[(logical_id, "Arn")] = arn
    physical.attributes[(logical_id, "QueueName")] = name
    physical.attributes[(logical_id, "QueueUrl")] = url


def _queue_name(resource: Resource, prefix: str) -> str:
    name = _physical_name(resource.properties.get("QueueName"), prefix, resource.logical_id)
    if resource.properties.get("FifoQueue") and not name.endswith(".fifo"):
        name += ".fifo"
    return name


def _physical_name(declared: Any, prefix: str, logical_id: str) -> str:
    """The template's own name when it sets one (as CDK does for named resources), else one made
    from the logical id, lowercased for S3."""
    if isinstance(declared, str):
        return declared
    return f"{prefix}-{logical_id}".lower()[:63]


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def is_loopback_url(url: str | None) -> bool:
    """Whether `url` names this machine: `localhost` or a loopback address (127.0.0.0/8, ::1). Other names are
    not resolved: only what certainly stays on this machine counts. A malformed URL is not loopback."""
    try:
        host = urlsplit(url).hostname if url else None
        return host == LOCALHOST or (host is not None and ipaddress.ip_address(host).is_loopback)
    except ValueError:  # not a URL, or its host is not an IP address
        return False


def client_for_endpoint(service: str, endpoint_url: str | None = None, config: Config | None = None) -> Any:
    """A boto3 client configured the standard way, except on a loopback endpoint (the local runtime's): there the
    region and credentials the shell does not set are LOCAL_REGION and the throwaway LOCAL_CREDENTIALS.

    On a loopback endpoint AWS_PROFILE, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and AWS_REGION /
    AWS_DEFAULT_REGION still win; the default profile of ~/.aws does not: its keys are for real AWS, and its
    region would be an empty one on the embedded AWS. Whether the endpoint is loopback is decided on the one
    botocore resolved (this argument, AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the profile's), so the
    throwaway credentials never go anywhere else; for any other endpoint the client is boto3's default one.
    """
    session = boto3.Session()
    local = session.client(service, endpoint_url=endpoint_url, config=config, **_local_fallbacks(session))  # type: ignore[call-overload]
    if is_loopback_url(local.meta.endpoint_url):
        return local
    return session.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]


def _local_fallbacks(session: boto3.Session) -> dict[str, str]:
    named_profile = session.profile_name != DEFAULT_PROFILE
    shell_region = next((os.environ[name] for name in USER_REGION_VARIABLES if os.environ.get(name)), None)
    fallbacks = {"region_name": shell_region or (session.region_name if named_profile else None) or LOCAL_REGION}
    if not named_profile and not os.environ.get(USER_CREDENTIALS_VARIABLE):
        fallbacks["aws_access_key_id"] = LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"]
        fallbacks["aws_secret_access_key"] = LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    return fallbacks
