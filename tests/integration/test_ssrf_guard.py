"""The SSRF guard end to end, in the real aiohttp connector: refused endpoints are parked in the real parked-records
queue with a reason naming the refused address, and no connection is opened to them.

The autouse `only_loopback` fixture refuses and flags any connection to an address other than
127.0.0.1, so a guard that let the metadata address through would fail these tests without a single
packet leaving the machine."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from dispatcher.delivery import Dispatcher
from dispatcher.records import parse_event
from tests.events import event, kinesis_record
from tests.hostile_spellings import circled, fullwidth, ideographic
from tests.integration.conftest import AwsResources, DispatcherFactory
from tests.integration.support import LOOPBACK, LoopbackEndpoint

pytestmark = pytest.mark.integration

PAYLOAD = b'{"id": "evt-ssrf"}'


async def test_loopback_host_name_without_allow_list_is_parked_naming_the_address(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given a subscription whose endpoint host name resolves to loopback, with no private range allowed
    dispatcher = make_dispatcher(endpoint=f"http://localhost:{endpoint.port}/hook", allow_private_cidrs=[])

    # When a record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then the endpoint received nothing and the record is parked (not reported) naming 127.0.0.1
    assert endpoint.received == []
    assert report.response() == {"batchItemFailures": []}
    (parked,) = aws.parked_messages()
    assert parked["webhook_id"] == "evt-ssrf"
    assert "127.0.0.1" in parked["reason"]
    assert "SSRF" in parked["reason"]
    assert parked["last_status"] is None


async def test_loopback_host_name_inside_the_allow_list_is_delivered(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given the same host name with 127.0.0.0/8 allowed
    dispatcher = make_dispatcher(endpoint=f"http://localhost:{endpoint.port}/hook")

    # When a record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then it is delivered, to the host the subscription names
    assert report.response() == {"batchItemFailures": []}
    (request,) = endpoint.received
    assert request.headers["host"] == f"localhost:{endpoint.port}"
    assert aws.parked_messages() == []


async def test_loopback_literal_without_allow_list_is_parked(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory
) -> None:
    # Given an IP-literal loopback endpoint (aiohttp skips the resolver for literals) and no allow list
    dispatcher = make_dispatcher(allow_private_cidrs=[])

    # When a record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then nothing was sent and the record is parked naming the address
    assert endpoint.received == []
    assert report.response() == {"batchItemFailures": []}
    (parked,) = aws.parked_messages()
    assert "127.0.0.1" in parked["reason"]


@pytest.mark.parametrize(
    ("url", "refused_address"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "169.254.169.254"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254"),
        # named in canonical IPv6 form with the IPv4 address it carries
        ("http://[::ffff:169.254.169.254]/latest/meta-data/", "::ffff:a9fe:a9fe (169.254.169.254)"),
    ],
)
async def test_metadata_address_is_refused_even_when_everything_is_allowed(
    aws: AwsResources, make_dispatcher: DispatcherFactory, url: str, refused_address: str
) -> None:
    # Given a subscription allowing every address, pointed at a cloud metadata address
    dispatcher = make_dispatcher(endpoint=url, allow_private_cidrs=["0.0.0.0/0", "::/0"])

    # When a record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then the guard refused before connecting (only_loopback saw no attempt) and the record is parked
    assert report.response() == {"batchItemFailures": []}
    (parked,) = aws.parked_messages()
    assert refused_address in parked["reason"]
    assert "metadata" in parked["reason"]
    assert parked["attempts"] == 1


def test_the_safety_net_refuses_connections_outside_127_0_0_1(only_loopback: list[str]) -> None:
    # Given the autouse safety net; When something connects to another loopback address (harmless if
    # the net failed: 127.0.0.2 never leaves the machine)
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match=r"127\.0\.0\.1"):
        sock.connect(("127.0.0.2", 9))

    # Then the attempt was refused before any packet and flagged (cleared here, as it was on purpose)
    assert only_loopback == ["127.0.0.2"]
    only_loopback.clear()


def with_endpoint_unvalidated(dispatcher: Dispatcher, url: str) -> Dispatcher:
    """The sender's guard on its own, behind the configuration model (which refuses these endpoints at cold
    start): a subscription that reached the function without validation."""
    dispatcher.subscription = dispatcher.subscription.model_copy(update={"endpoint": url})
    return dispatcher


@pytest.mark.parametrize("spell", [fullwidth, ideographic, circled], ids=["fullwidth", "ideographic", "circled"])
@pytest.mark.parametrize("allowed", [[], ["127.0.0.0/8"]], ids=["no allow list", "loopback allowed"])
async def test_unicode_spellings_of_127_0_0_1_are_parked_never_delivered_nor_retried(
    aws: AwsResources,
    endpoint: LoopbackEndpoint,
    make_dispatcher: DispatcherFactory,
    spell: Callable[[str], str],
    allowed: list[str],
) -> None:
    # Given an endpoint spelling 127.0.0.1 in characters aiohttp normalises to it (defect 1), with or
    # without loopback allowed: the spelling alone is refused
    hostile = spell(LOOPBACK)
    dispatcher = with_endpoint_unvalidated(
        make_dispatcher(allow_private_cidrs=allowed), f"http://{hostile}:{endpoint.port}/hook"
    )

    # When a record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then the real server on 127.0.0.1 received nothing, and the record is parked after one attempt,
    # not reported (Lambda does not send it again), the reason naming the spelling and the address
    assert endpoint.received == []
    assert report.response() == {"batchItemFailures": []}
    (parked,) = aws.parked_messages()
    assert parked["attempts"] == 1
    assert (
        f"host '{hostile}' is written with non-ASCII characters that normalise to the address 127.0.0.1"
        in (parked["reason"])
    )


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.0.0.1."])
async def test_legacy_ipv4_forms_are_parked_at_once_instead_of_retried(
    aws: AwsResources, endpoint: LoopbackEndpoint, make_dispatcher: DispatcherFactory, host: str
) -> None:
    # Given loopback allowed, and an endpoint writing 127.0.0.1 in a legacy IPv4 form (defect 3: aiohttp
    # refuses to connect to these, which used to count as a transient failure, retried for ever)
    dispatcher = with_endpoint_unvalidated(make_dispatcher(), f"http://{host}:{endpoint.port}/hook")

    # When a record is dispatched (max_attempts 3)
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then nothing was sent and the record is parked after its first attempt, naming the form
    assert endpoint.received == []
    assert report.response() == {"batchItemFailures": []}
    (parked,) = aws.parked_messages()
    assert parked["attempts"] == 1
    assert f"host '{host}' is an IPv4 address in a form other than four decimal octets" in parked["reason"]


@pytest.mark.parametrize(
    "url",
    [
        "http://[fd00:ec2::254%251]/latest/meta-data/",  # defect 2: the zone id made it unequal to the metadata address
        "http://[fd00:ec2::254%1]/latest/meta-data/",
        f"http://{fullwidth('169.254.169.254')}/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[2002:a9fe:a9fe::]/latest/meta-data/",
    ],
)
async def test_metadata_spellings_are_refused_before_any_connection_whatever_is_allowed(
    aws: AwsResources, make_dispatcher: DispatcherFactory, url: str
) -> None:
    # Given every address allowed, and an endpoint spelling a metadata address another way
    dispatcher = with_endpoint_unvalidated(make_dispatcher(allow_private_cidrs=["0.0.0.0/0", "::/0"]), url)

    # When a record is dispatched
    report = await dispatcher.dispatch(parse_event(event(kinesis_record(0, PAYLOAD))), 30)

    # Then the guard refused before connecting (only_loopback saw no attempt) and the record is parked
    assert report.response() == {"batchItemFailures": []}
    (parked,) = aws.parked_messages()
    assert parked["attempts"] == 1
    assert "endpoint refused by the SSRF guard" in parked["reason"]
