"""Post-deploy smoke check: one canary event through a deployed environment, confirmed from the function's log.

The platform team's canary subscription (`canary`, the only reader of the stream `canary`; see
docs/registering-an-endpoint.md) POSTs to the platform's canary receiver. The check puts one event on the
environment's canary stream and waits for the canary function to log a batch with a delivered record
(`batch dispatched`, written by functions/dispatcher/handler.py after every invocation), which happens only
after the receiver answered 2xx to the signed request. Stream, event source mapping, function code, signing
secret, network path and endpoint are all exercised.

The log does not name the event: the check attributes the first delivery after its put to its canary, which
holds because nothing but the pipeline writes to the canary stream and deploys of one environment never
overlap (the workflow's concurrency group).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from infra import constants
from infra.deploy_provenance import LOCAL_RUN, github_run_url
from infra.naming import ResourceNames
from infra.registry import Registry, RegistryError, load_registry
from infra.registry.limits import ENVIRONMENTS, Environment
from producer import KinesisProducer, ProducerError, kinesis_client

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_logs import CloudWatchLogsClient

DEFAULT_REGISTRY = Path(__file__).resolve().parents[1] / "registry"
CANARY_EVENT_TYPE = "dispatcher.canary"
BATCH_LOG_MESSAGE = "batch dispatched"
DEFAULT_TIMEOUT_SECONDS = 300.0  # the mapping starts polling a new stream within a minute; the rest is slack
POLL_INTERVAL_SECONDS = 10.0
# The runner's clock and CloudWatch's may disagree a little; a log line from before the put is still no match,
# because the canary stream carries nothing else.
CLOCK_SKEW_MS = 5_000
EXIT_OK, EXIT_FAILED = 0, 1


class SmokeCheckError(Exception):
    """The canary was not delivered, or cannot be sent; the message says why and what to look at."""


@dataclass(frozen=True, slots=True)
class CanaryRoute:
    """Where the canary goes in one environment, by the names the stack deploys."""

    stream: str
    log_group: str


def canary_route(registry: Registry, environment: Environment) -> CanaryRoute:
    """The canary's stream and log group; refuses a registry where the canary would reach anybody else."""
    source = f"stream/{constants.CANARY_STREAM}"
    readers = registry.subscriptions_of(source)
    if [reader.name for reader in readers] != [constants.CANARY_SUBSCRIPTION]:
        found = ", ".join(reader.name for reader in readers) or "none"
        raise SmokeCheckError(
            f"{source} must be read by the subscription {constants.CANARY_SUBSCRIPTION!r} alone (found: {found}); "
            "register it as docs/registering-an-endpoint.md describes"
        )
    names = ResourceNames(environment)
    return CanaryRoute(
        stream=names.name(constants.CANARY_STREAM),
        log_group=f"/aws/lambda/{names.name(constants.CANARY_SUBSCRIPTION)}",
    )


def canary_event(run: str, now: datetime) -> dict[str, str]:
    # A fresh id every run: the receiver dedupes on it (it becomes the webhook-id).
    return {
        "id": f"canary-{uuid.uuid4()}",
        "type": CANARY_EVENT_TYPE,
        "pipeline_run": run,
        "sent_at": now.isoformat(timespec="milliseconds"),
    }


def dispatched_batches(logs: CloudWatchLogsClient, log_group: str, since_ms: int) -> Iterator[dict[str, Any]]:
    """The function's `batch dispatched` log records since `since_ms`."""
    arguments: dict[str, Any] = {"logGroupName": log_group, "startTime": since_ms}
    while True:
        try:
            page = logs.filter_log_events(**arguments)
        except logs.exceptions.ResourceNotFoundException:
            return  # no invocation yet
        for event in page.get("events", []):
            try:
                record = json.loads(event.get("message", ""))
            except json.JSONDecodeError:
                continue  # the runtime's own START / END / REPORT lines
            if isinstance(record, dict) and record.get("message") == BATCH_LOG_MESSAGE:
                yield record
        if "nextToken" not in page:
            return
        arguments["nextToken"] = page["nextToken"]


def await_delivery(
    logs: CloudWatchLogsClient,
    route: CanaryRoute,
    since_ms: int,
    timeout_seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The first batch that delivered a record; raises SmokeCheckError on a parked canary or at the deadline."""
    deadline = clock() + timeout_seconds
    seen: list[dict[str, Any]] = []
    while True:
        for batch in dispatched_batches(logs, route.log_group, since_ms - CLOCK_SKEW_MS):
            if batch.get("delivered", 0) > 0:
                return batch
            if batch.get("parked", 0) > 0:
                raise SmokeCheckError(
                    f"the canary receiver refused the canary for good (parked; see {constants.CANARY_SUBSCRIPTION}"
                    f"'s parked-records queue): {json.dumps(batch)}"
                )
            if batch not in seen:
                seen.append(batch)
        if clock() >= deadline:
            failed = f"; batches that failed to deliver: {json.dumps(seen)}" if seen else "; the function never ran"
            raise SmokeCheckError(
                f"no delivery logged in {route.log_group} within {timeout_seconds:.0f} s of the canary{failed}"
            )
        sleep(POLL_INTERVAL_SECONDS)


def run_smoke_check(
    route: CanaryRoute,
    run: str,
    *,
    kinesis: KinesisClient,
    logs: CloudWatchLogsClient,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Put one canary and wait for its delivery: (the event, the batch that delivered it)."""
    now = datetime.now(UTC)
    event = canary_event(run, now)
    try:
        KinesisProducer(route.stream, partition_key=constants.CANARY_SUBSCRIPTION, client=kinesis).send([event])
    except ProducerError as error:
        raise SmokeCheckError(f"could not put the canary on {route.stream}: {error}") from error
    batch = await_delivery(logs, route, int(now.timestamp() * 1000), timeout_seconds, clock=clock, sleep=sleep)
    return event, batch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.smoke_check", description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=ENVIRONMENTS, required=True)
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, metavar="SECONDS")
    arguments = parser.parse_args(argv)
    try:
        route = canary_route(load_registry(arguments.registry, arguments.env).registry, arguments.env)
        import boto3  # only a real run needs credentials and a region

        event, batch = run_smoke_check(
            route,
            github_run_url(os.environ) or LOCAL_RUN,
            kinesis=kinesis_client(),
            logs=boto3.client("logs"),
            timeout_seconds=arguments.timeout,
        )
    except (SmokeCheckError, RegistryError) as error:
        print(f"smoke check failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (BotoCoreError, ClientError) as error:
        print(f"smoke check failed: AWS refused or could not be reached: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"smoke check passed: canary {event['id']} put on {route.stream} and delivered ({json.dumps(batch)})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
