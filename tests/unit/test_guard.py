from __future__ import annotations

import socket
from ipaddress import ip_address, ip_network

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from dispatcher.adapters.http import AiohttpSender, GuardedResolver
from dispatcher.guard import AddressPolicy, Endpoint, EndpointRefusedError, read_endpoint
from tests.hostile_spellings import circled, fullwidth, ideographic

EVERYTHING = AddressPolicy([ip_network("0.0.0.0/0"), ip_network("::/0")])


def named(address: str) -> str:
    """How refusals name an address: canonical form, plus the IPv4 address an IPv6 form carries."""
    embedded = {
        "::ffff:10.0.0.1": "10.0.0.1",
        "64:ff9b::7f00:1": "127.0.0.1",
        "::ffff:169.254.169.254": "169.254.169.254",
    }
    canonical = str(ip_address(address))
    return f"{canonical} ({embedded[address]})" if address in embedded else canonical


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str, category: str) -> None:
    refusal = AddressPolicy().refusal(ip_address(address))
    assert refusal == f"{named(address)} is a {category} address and not in allow_private_cidrs"


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refusal(ip_address(address)) is None


def test_allow_list_admits_its_ranges_only() -> None:
    policy = AddressPolicy([ip_network("10.20.0.0/16")])
    assert policy.refusal(ip_address("10.20.3.4")) is None
    assert policy.refusal(ip_address("10.21.3.4")) is not None


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"])
def test_metadata_addresses_are_refused_even_under_everything(address: str) -> None:
    refusal = EVERYTHING.refusal(ip_address(address))
    assert refusal == f"{named(address)} is a cloud metadata address (always refused)"


def test_names_are_left_to_resolution_and_literals_are_judged_when_read() -> None:
    # Given the default policy (nothing private allowed)
    policy = AddressPolicy()

    # When endpoints naming a host, an IDN host and a fully qualified host are admitted
    named = [policy.admit(url) for url in NAMES_ADMITTED]

    # Then each is read as the client reads it (lower case, IDNA, port) and left to the resolver
    assert [(endpoint.host, endpoint.port, endpoint.address) for endpoint in named] == [
        ("ledger.example.com", 443, None),
        ("xn--bcher-kva.example", 8443, None),
        ("ledger.example.com.", 80, None),
    ]
    # And literals are judged at once
    for url in ("http://127.0.0.1/", "http://[::1]/"):
        with pytest.raises(EndpointRefusedError, match="loopback"):
            policy.admit(url)


NAMES_ADMITTED = [
    "https://Ledger.Example.com/hooks?b=1",
    "https://bücher.example:8443/h",
    "http://ledger.example.com./h",
]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # Defect 1: non-ASCII spellings yarl (and so aiohttp) normalise to an address
        (
            f"http://{fullwidth('127.0.0.1')}:9001/x",
            f"host '{fullwidth('127.0.0.1')}' is written with non-ASCII characters that normalise to the address "
            "127.0.0.1",
        ),
        (
            f"http://{ideographic('127.0.0.1')}:9001/x",
            f"host '{ideographic('127.0.0.1')}' is written with non-ASCII characters that normalise to the address "
            "127.0.0.1",
        ),
        (
            f"http://{circled('127.0.0.1')}/x",
            f"host '{circled('127.0.0.1')}' is written with non-ASCII characters that normalise to the address "
            "127.0.0.1",
        ),
        (f"http://{fullwidth('169.254.169.254')}/latest", "normalise to the address 169.254.169.254"),
        # Defect 2: IPv6 zone ids, percent-encoded as RFC 6874 wants or not
        ("http://[fd00:ec2::254%251]/", "host [fd00:ec2::254%251] carries an IPv6 zone id"),
        ("http://[fe80::1%eth0]/", "host [fe80::1%eth0] carries an IPv6 zone id"),
        # Defect 3: IPv4 forms other than four decimal octets
        ("http://2130706433/", "host '2130706433' is an IPv4 address in a form other than four decimal octets"),
        ("http://0177.0.0.1/", "host '0177.0.0.1' is an IPv4 address in a form other than four decimal octets"),
        ("http://0x7f.0.0.1/", "host '0x7f.0.0.1' is an IPv4 address in a form other than four decimal octets"),
        ("http://127.1/", "host '127.1' is an IPv4 address in a form other than four decimal octets"),
        ("http://127.0.0.1./", "host '127.0.0.1.' is an IPv4 address in a form other than four decimal octets"),
        ("http://93.184.215.014/", "host '93.184.215.014' is an IPv4 address in a form other than four decimal"),
        # Hosts no resolver would read as the guard does
        ("http://%31%32%37.0.0.1/", "host '%31%32%37.0.0.1' is not a valid host name"),
        ("http://[v1.fe80]/", "host [v1.fe80] is not an IPv6 address"),
        (
            "http://evil.example\\@ledger.example.com/",
            "URL cannot be parsed by the HTTP client: Invalid URL: backslash",
        ),
        # User info, which two parsers split differently (and which is a credential)
        ("https://user:hunter2@ledger.example.com/", "URL carries user info"),
        ("https://ledger.example.com@169.254.169.254/", "URL carries user info"),
        ("https://a@b@ledger.example.com/", "URL carries user info"),
        # Not a URL the sender posts to
        ("http://[]@/", "URL cannot be parsed by the HTTP client"),  # yarl 1.25 raises IndexError for it
        ("ftp://ledger.example.com/", "URL must be http(s), got scheme 'ftp'"),
        ("https://ledger.example.com/\thooks", "URL contains whitespace or control characters"),
    ],
)
def test_a_host_the_client_could_read_differently_is_refused_naming_the_form(url: str, reason: str) -> None:
    # Given a policy that allows every address: only the form can be at fault
    # When the endpoint is admitted, Then it is refused, and the reason names the form
    with pytest.raises(EndpointRefusedError) as refused:
        EVERYTHING.admit(url)
    assert reason in str(refused.value)


def test_a_refusal_never_quotes_the_user_info() -> None:
    # Given URLs with a password that also fail to parse (yarl's own message quotes the whole authority)
    urls = [
        "https://user:hunter2@\u2100.example/",  # U+2100 normalises to "a/c": yarl's message quotes the authority
        "https://user:hunter2@\u2100.example?next=a@b",
        "https://user:hunter2@[::1/",
        "https://user:hunter2@ledger.example.com/",
    ]

    # When they are read, Then each is refused without the password
    for url in urls:
        with pytest.raises(EndpointRefusedError) as refused:
            read_endpoint(url)
        assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("fd00:ec2::254%1", None),  # defect 2: IPv6Address equality includes the scope id
        ("fd00:ec2::254%eth0", None),
        ("fd00:ec2::23", None),
        ("169.254.170.23", None),  # EKS Pod Identity agent
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64, well-known prefix
        ("64:ff9b:1::a9fe:a9fe", "169.254.169.254"),  # NAT64, local-use prefix
        ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4
        ("::a9fe:a9fe", "169.254.169.254"),  # IPv4-compatible (deprecated, still parsed)
        ("::ffff:0:a9fe:a9fe", "169.254.169.254"),  # SIIT IPv4-translated
        ("::ffff:169.254.170.2", "169.254.170.2"),
    ],
)
def test_metadata_addresses_are_refused_in_every_spelling_whatever_is_allowed(
    address: str, carried: str | None
) -> None:
    # Given a policy that allows every address
    # When a metadata address in another spelling is judged (as a resolver answer may carry it)
    refusal = EVERYTHING.refusal(ip_address(address))

    # Then it is refused as metadata, named as it was given
    named = f"{ip_address(address)} ({carried})" if carried else str(ip_address(address))
    assert refusal == f"{named} is a cloud metadata address (always refused)"


def test_a_scope_id_does_not_take_an_address_out_of_its_range() -> None:
    # Given only 10.0.0.0/8 allowed
    policy = AddressPolicy([ip_network("10.0.0.0/8")])

    # When a link-local address with a scope id is judged, Then it is refused as link-local
    assert policy.refusal(ip_address("fe80::1%2")) == "fe80::1%2 is a link-local address and not in allow_private_cidrs"


class Answers(AbstractResolver):
    """A resolver whose answers are given: what a DNS server (or /etc/hosts) could say."""

    def __init__(self, *addresses: str) -> None:
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
            for address in self._addresses
        ]

    async def close(self) -> None:
        return None


async def test_the_resolver_judges_answers_with_a_scope_id_without_it() -> None:
    # Given a name whose answers are the IPv6 metadata address with scope ids, and everything allowed
    resolver = GuardedResolver(EVERYTHING, Answers("fd00:ec2::254%1", "fd00:ec2::254%2"))

    # When the connector resolves it, Then every answer is refused and the error names them
    with pytest.raises(EndpointRefusedError) as refused:
        await resolver.resolve("metadata.example.com", 80)
    assert str(refused.value) == (
        "metadata.example.com resolves only to refused addresses: "
        "fd00:ec2::254%1 is a cloud metadata address (always refused); "
        "fd00:ec2::254%2 is a cloud metadata address (always refused)"
    )


async def test_the_resolver_keeps_only_the_answers_the_policy_allows() -> None:
    # Given a name answering with a metadata address and a public one
    resolver = GuardedResolver(EVERYTHING, Answers("fd00:ec2::254%1", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"))

    # When the connector resolves it, Then only the public address is left to connect to
    answers = await resolver.resolve("mixed.example.com", 443)
    assert [answer["host"] for answer in answers] == ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"]


class AdmitsAnything(AddressPolicy):
    """A guard that lets a URL through which the HTTP client then rejects (as a later aiohttp might)."""

    def admit(self, url: str) -> Endpoint:
        parsed = URL(url)
        return Endpoint(parsed, parsed.raw_host or "", parsed.port or 0, None)


async def test_a_url_the_client_rejects_is_a_permanent_refusal_not_a_transient_failure() -> None:
    # Given a sender whose guard let a legacy IPv4 form through, which aiohttp refuses before connecting
    sender = AiohttpSender(AdmitsAnything(), max_connections=1)

    # When it posts, Then the failure is a refusal (parked), not a transport error (retried)
    try:
        with pytest.raises(EndpointRefusedError, match="the HTTP client cannot use the URL"):
            await sender.post("http://127.1:9/hook", b"{}", {}, timeout_seconds=1.0)
    finally:
        await sender.close()


async def test_the_sender_refuses_before_opening_a_connection_pool() -> None:
    # Given a sender with everything allowed
    sender = AiohttpSender(EVERYTHING, max_connections=1)

    # When it posts to the metadata address behind a zone id, Then it is refused, and twice the same way
    # (the verdict is kept per URL), with no session ever opened: nothing could have connected
    for _ in range(2):
        with pytest.raises(EndpointRefusedError, match=r"host \[fd00:ec2::254%251\] carries an IPv6 zone id"):
            await sender.post("http://[fd00:ec2::254%251]/latest", b"{}", {}, timeout_seconds=1.0)
    assert sender._session is None
