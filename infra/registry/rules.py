"""Checks that span fields, items or files; single-field ranges are declared on the models themselves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import ip_address

from dispatcher.guard import AddressPolicy, read_endpoint
from infra.registry import limits
from infra.registry.model import Queue, RegisteredSubscription, SourcesFile, Stream, TeamFile
from infra.registry.problems import Problem
from infra.registry.timing import batch_time_estimate, required_timeout_seconds

LOOPBACK_HOSTNAMES = ("localhost", "localhost.localdomain")
LOOPBACK_NAME_ADDRESS = ip_address("127.0.0.1")
STREAM_ONLY_FIELDS = ("parallelization_factor", "max_record_age_seconds", "max_retry_attempts")


@dataclass(frozen=True, slots=True)
class Registration:
    """A subscription together with the file that declares it."""

    file: str
    subscription: RegisteredSubscription

    @property
    def item(self) -> str:
        return f"subscription {self.subscription.name!r}"

    def problem(self, field: str, reason: str, allowed: str = "") -> Problem:
        return Problem(self.file, self.item, field, reason, allowed)


def check_sources(sources: SourcesFile, file: str) -> Iterator[Problem]:
    for kind, names in (("stream", [s.name for s in sources.streams]), ("queue", [q.name for q in sources.queues])):
        for name, count in Counter(names).items():
            if count > 1:
                yield Problem(file, f"{kind} {name!r}", "name", f"is declared {count} times", "unique names")
    for stream in sources.streams:
        yield from _check_stream(stream, file)
    for queue in sources.queues:
        if queue.name.endswith(".fifo") and "fifo" in queue.model_fields_set and not queue.fifo:
            yield Problem(file, f"queue {queue.name!r}", "fifo", "is false but the name ends in .fifo", "true")


def _check_stream(stream: Stream, file: str) -> Iterator[Problem]:
    item = f"stream {stream.name!r}"
    if stream.mode == "provisioned" and stream.shards is None:
        yield Problem(file, item, "shards", "is required in provisioned mode", f"1 to {limits.STREAM_SHARDS_MAX}")
    if stream.mode == "on-demand" and stream.shards is not None:
        yield Problem(file, item, "shards", "is set but on-demand streams scale their own shards", "omit it")


def check_team_file(team_file: TeamFile, file: str, file_stem: str) -> Iterator[Problem]:
    if team_file.team != file_stem:
        yield Problem(
            file, "", "team", f"{team_file.team!r} differs from the file name", f"{file_stem!r} (teams/<team>.yaml)"
        )


def check_registrations(
    registrations: Sequence[Registration],
    sources: SourcesFile,
    sources_file: str,
    invalid_sources: frozenset[str] = frozenset(),
) -> Iterator[Problem]:
    """`invalid_sources`: references to sources declared but invalid, already reported on their own."""
    yield from _check_unique_names(registrations)
    yield from _check_one_subscription_per_queue(registrations)
    for registration in registrations:
        subscription = registration.subscription
        yield from _check_endpoint_address(registration)
        yield from _check_delivery_fits_batch(registration)
        yield from _check_retry_lane_fields(registration)
        if subscription.source in invalid_sources:
            continue
        if subscription.is_stream:
            if sources.stream(subscription.source_name) is None:
                yield _unknown_source(registration, sources, sources_file)
            else:
                yield from _check_stream_subscription(registration)
        else:
            queue = sources.queue(subscription.source_name)
            if queue is None:
                yield _unknown_source(registration, sources, sources_file)
            else:
                yield from _check_queue_subscription(registration, queue)


def _unknown_source(registration: Registration, sources: SourcesFile, sources_file: str) -> Problem:
    declared = [f"stream/{s.name}" for s in sources.streams] + [f"queue/{q.name}" for q in sources.queues]
    return registration.problem(
        "source",
        f"{registration.subscription.source!r} is not declared in {sources_file}",
        ", ".join(declared) or "none declared",
    )


def _check_unique_names(registrations: Sequence[Registration]) -> Iterator[Problem]:
    first_file: dict[str, str] = {}
    for registration in registrations:
        name = registration.subscription.name
        if name in first_file:
            yield registration.problem(
                "name", f"is already used by a subscription in {first_file[name]}", "names unique across all teams"
            )
        else:
            first_file[name] = registration.file


def _check_one_subscription_per_queue(registrations: Sequence[Registration]) -> Iterator[Problem]:
    # SQS is point-to-point: two mappings on one queue would each get a random half of the messages.
    first_reader: dict[str, str] = {}
    for registration in registrations:
        subscription = registration.subscription
        if subscription.is_stream:
            continue
        if subscription.source in first_reader:
            yield registration.problem(
                "source",
                f"{subscription.source} is already read by subscription {first_reader[subscription.source]!r}; "
                "a queue delivers each message to one reader only",
                "one subscription per queue (declare another queue, or use a stream for fan-out)",
            )
        else:
            first_reader[subscription.source] = subscription.name


def _check_endpoint_address(registration: Registration) -> Iterator[Problem]:
    """A literal address (or localhost) is judged now, by the function's own SSRF policy: refused unless
    inside allow_private_cidrs, a metadata address always. A DNS name is checked by the function against
    what it resolves to, at delivery time. The endpoint's form was checked by the model already."""
    subscription = registration.subscription
    endpoint = read_endpoint(subscription.endpoint)
    address = endpoint.address
    if address is None and endpoint.host.removesuffix(".") in LOOPBACK_HOSTNAMES:
        address = LOOPBACK_NAME_ADDRESS
    if address is None:
        return
    refusal = AddressPolicy(subscription.allow_private_cidrs).refusal(address)
    if refusal is not None:
        named = refusal if endpoint.address is not None else f"{endpoint.host!r} resolves to {refusal}"
        yield registration.problem(
            "endpoint", named, "a public address or DNS name, or a private one inside allow_private_cidrs"
        )


def _check_delivery_fits_batch(registration: Registration) -> Iterator[Problem]:
    subscription = registration.subscription
    # Only a setting the team wrote is a mistake: the default (16) exceeds a queue's default batch (10),
    # and the function simply never fills the spare slots.
    if "max_in_flight" in subscription.model_fields_set and subscription.max_in_flight > subscription.batch_size:
        yield registration.problem(
            "max_in_flight",
            f"{subscription.max_in_flight} is above batch_size {subscription.batch_size}; "
            "the extra request slots could never be used",
            f"1 to {subscription.batch_size}",
        )
    required = required_timeout_seconds(subscription.batch_size, subscription)
    estimate, formula = batch_time_estimate(subscription.batch_size, subscription)
    why = (
        f"a worst-case batch takes {formula} = {estimate:g} s, "
        f"plus {limits.FUNCTION_SHUTDOWN_RESERVE_SECONDS} s to park what failed"
    )
    if required > limits.FUNCTION_MAX_TIMEOUT_SECONDS:
        yield registration.problem(
            "batch_size",
            f"{subscription.batch_size} needs a {required} s function timeout ({why}), "
            f"beyond Lambda's {limits.FUNCTION_MAX_TIMEOUT_SECONDS} s maximum",
            "a smaller batch_size, max_attempts or request_timeout_seconds, or a larger max_in_flight",
        )
    elif subscription.timeout_seconds is not None and subscription.timeout_seconds < required:
        yield registration.problem(
            "timeout_seconds",
            f"{subscription.timeout_seconds} is shorter than the {required} s a batch needs ({why})",
            f"{required} to {limits.FUNCTION_MAX_TIMEOUT_SECONDS}, or omit it to derive it",
        )


def _check_retry_lane_fields(registration: Registration) -> Iterator[Problem]:
    subscription = registration.subscription
    if not subscription.retry_schedule_seconds and "alarm_retry_age_seconds" in subscription.model_fields_set:
        yield registration.problem(
            "alarm_retry_age_seconds",
            "has no effect: retry_schedule_seconds is [], so the subscription has no retry lane",
            "omit it, or give a retry schedule",
        )


def _check_stream_subscription(registration: Registration) -> Iterator[Problem]:
    age = registration.subscription.max_record_age_seconds
    if age != limits.MAX_RECORD_AGE_INFINITE and not (
        limits.MAX_RECORD_AGE_MIN_SECONDS <= age <= limits.MAX_RECORD_AGE_MAX_SECONDS
    ):
        yield registration.problem(
            "max_record_age_seconds",
            f"{age} is out of range",
            f"{limits.MAX_RECORD_AGE_INFINITE} (until the record expires) or "
            f"{limits.MAX_RECORD_AGE_MIN_SECONDS} to {limits.MAX_RECORD_AGE_MAX_SECONDS}",
        )


def _check_queue_subscription(registration: Registration, queue: Queue) -> Iterator[Problem]:
    subscription = registration.subscription
    for field in STREAM_ONLY_FIELDS:
        if field in subscription.model_fields_set:
            yield registration.problem(field, "applies to stream sources only", "omit it for a queue")
    if subscription.reserved_concurrency < limits.SQS_MAXIMUM_CONCURRENCY_MIN:
        # The mapping's MaximumConcurrency equals the reserved concurrency, and SQS accepts no less than 2.
        yield registration.problem(
            "reserved_concurrency",
            f"{subscription.reserved_concurrency} is below the SQS mapping's minimum maximum concurrency",
            f"{limits.SQS_MAXIMUM_CONCURRENCY_MIN} to {limits.SQS_MAXIMUM_CONCURRENCY_MAX} for a queue",
        )
    if queue.is_fifo:
        yield from _check_fifo_subscription(registration)
    elif (
        subscription.batch_size > limits.SQS_BATCH_SIZE_WITHOUT_WINDOW_MAX
        and subscription.batching_window_seconds < limits.SQS_BATCH_SIZE_NEEDS_WINDOW_SECONDS
    ):
        yield registration.problem(
            "batching_window_seconds",
            f"{subscription.batching_window_seconds} is too short for batch_size {subscription.batch_size}: "
            f"SQS batches above {limits.SQS_BATCH_SIZE_WITHOUT_WINDOW_MAX} need a batching window",
            f"{limits.SQS_BATCH_SIZE_NEEDS_WINDOW_SECONDS} to {limits.BATCHING_WINDOW_MAX_SECONDS}",
        )


def _check_fifo_subscription(registration: Registration) -> Iterator[Problem]:
    subscription = registration.subscription
    if subscription.batch_size > limits.SQS_FIFO_BATCH_SIZE_MAX:
        yield registration.problem(
            "batch_size",
            f"{subscription.batch_size} is too large for a FIFO queue",
            f"1 to {limits.SQS_FIFO_BATCH_SIZE_MAX}",
        )
    if subscription.batching_window_seconds != 0:
        yield registration.problem(
            "batching_window_seconds",
            f"{subscription.batching_window_seconds} is set but FIFO queues do not support a batching window",
            "0",
        )
    if subscription.ordering == "none":
        yield registration.problem(
            "ordering",
            "'none' contradicts the FIFO queue's per-message-group order",
            "'partition-key' (ordered per message group)",
        )


def environment_warnings(registrations: Sequence[Registration], environment: limits.Environment) -> Iterator[Problem]:
    """Legal everywhere (internal services in a VPC need them), but worth a second look outside dev."""
    if environment == limits.PERMISSIVE_ENVIRONMENT:
        return
    for registration in registrations:
        subscription = registration.subscription
        if subscription.allow_http:
            yield registration.problem(
                "allow_http", f"is true in {environment}: records and signatures travel unencrypted"
            )
        if subscription.allow_private_cidrs:
            ranges = ", ".join(str(network) for network in subscription.allow_private_cidrs)
            yield registration.problem(
                "allow_private_cidrs", f"lets the endpoint reach private addresses ({ranges}) in {environment}"
            )
