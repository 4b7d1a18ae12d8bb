"""A running `dispatcher local` as the redrive target: its embedded AWS holds the parked-records queue and
on-failure bucket, and the subscription's function runs here in a local worker, as the local runtime runs it.

The registry is synthesized as dev, exactly as `dispatcher local` did, and its resources are looked up (not
created) on the running embedded AWS, so the function gets the same environment as the running system's.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from dispatcher.config import DLQ_URL_ENV, PAYLOAD_BUCKET_ENV
from local.aws import LOCAL_REGION, EmbeddedAws, ResourceNotFoundError
from local.runtime import NAME_PREFIX
from local.spec import KinesisMappingSpec
from local.synth import synthesize
from local.template import StackTemplate
from local.workers import FunctionRunner
from redrive.errors import TargetNotFoundError
from redrive.target import RedriveTarget

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")  # the embedded AWS listens on 127.0.0.1 only


@asynccontextmanager
async def local_target(subscription: str, registry: Path, endpoint_url: str) -> AsyncIterator[RedriveTarget]:
    """The target for `subscription`; its function worker is stopped on exit."""
    aws = EmbeddedAws(embedded_aws_port(endpoint_url))
    with tempfile.TemporaryDirectory(prefix="dispatcher-redrive-") as workdir:
        template = StackTemplate.load(await asyncio.to_thread(synthesize, registry, Path(workdir) / "cdk.out"))
    try:
        physical, resolve = await asyncio.to_thread(aws.look_up, template, NAME_PREFIX)
    except ResourceNotFoundError as error:
        raise TargetNotFoundError(f"{error}: is `dispatcher local` running with this registry?") from None
    consumers = {spec.function.subscription: spec for spec in template.consumers(physical, resolve)}
    spec = consumers.get(subscription)
    if spec is None:
        raise TargetNotFoundError(
            f"no subscription {subscription!r} in the registry (it has {', '.join(sorted(consumers)) or 'none'})"
        )
    runner = FunctionRunner(spec.function, region=LOCAL_REGION, environment_overrides=aws.environment())
    try:
        yield RedriveTarget(
            subscription=subscription,
            function_name=spec.function.name,
            invoke=runner.invoke,
            function_timeout_seconds=spec.function.timeout_seconds,
            sqs=aws.client("sqs"),
            parked_records_url=spec.function.environment[DLQ_URL_ENV],
            s3=aws.client("s3"),
            on_failure_bucket=spec.mapping.on_failure_bucket if isinstance(spec.mapping, KinesisMappingSpec) else None,
            payload_bucket=spec.function.environment[PAYLOAD_BUCKET_ENV],
        )
    finally:
        await runner.close()


def embedded_aws_port(endpoint_url: str) -> int:
    """The port of a `dispatcher local` endpoint; ValueError unless it is http on the loopback interface."""
    parts = urlsplit(endpoint_url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or parts.port is None:
        raise ValueError(f"not the endpoint of a local embedded AWS (http://127.0.0.1:PORT): {endpoint_url!r}")
    return parts.port
