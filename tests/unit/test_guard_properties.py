"""Standing adversarial properties of the SSRF guard: hostile spellings of refused addresses.

The oracle for "what would the client connect to" is the client's own parser (yarl) and the operating
system's numeric reading of a host (getaddrinfo with AI_NUMERICHOST, which parses and never resolves: no
packet leaves the machine). `make fuzz` runs these with many more examples.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from dispatcher.guard import AddressPolicy, EndpointRefusedError, IPAddress
from tests.hostile_spellings import UNICODE_DIGITS, UNICODE_FULL_STOPS

pytestmark = pytest.mark.adversarial

ALLOW_EVERYTHING = AddressPolicy([ip_network("0.0.0.0/0"), ip_network("::/0")])
ALLOW_NOTHING = AddressPolicy()
METADATA_IPV4 = ["169.254.169.254", "169.254.170.2", "169.254.170.23"]
METADATA_IPV6 = ["fd00:ec2::254", "fd00:ec2::23"]
NON_PUBLIC_IPV4 = ["127.0.0.1", "127.5.6.7", "10.0.0.1", "192.168.1.1", "0.0.0.0", *METADATA_IPV4]
NON_PUBLIC_IPV6 = ["::1", "fe80::1", "fd12:3456::1", *METADATA_IPV6]
# IPv6 prefixes under which an IPv4 address travels (mapped, SIIT, NAT64 well-known and local-use, IPv4-compatible).
IPV4_CARRYING_PREFIXES = ["::ffff:", "::ffff:0:", "64:ff9b::", "64:ff9b:1::", "::"]
SIX_TO_FOUR = 0x2002
USER_INFOS = ["user:pw@", "ledger.example.com@", "a@b@"]
ZONE_IDS = ["1", "251", "eth0", "lo"]
ADMISSIBLE_IPV4 = ["127.0.0.1", "10.0.0.1", "0.0.0.0", "93.184.215.14"]  # under ALLOW_EVERYTHING


@st.composite
def legacy_ipv4(draw: st.DrawFn, address: IPv4Address) -> str:
    """`address` as inet_aton reads it: 1 to 4 parts (the last one takes the remaining bytes), each in
    decimal, octal or hex, with leading zeros and an optional trailing dot."""
    value = int(address)
    parts_count = draw(st.integers(1, 4))
    leading = [(value >> (8 * (3 - index))) & 0xFF for index in range(parts_count - 1)]
    last = value & ((1 << (8 * (4 - parts_count + 1))) - 1)
    parts = []
    for part in [*leading, last]:
        base = draw(st.sampled_from(["decimal", "octal", "hex"]))
        zeros = "0" * draw(st.integers(0, 2))
        if base == "decimal":
            parts.append(str(part))
        elif base == "octal":
            parts.append("0" + zeros + format(part, "o"))
        else:
            digits = zeros + format(part, draw(st.sampled_from(["x", "X"])))
            parts.append(draw(st.sampled_from(["0x", "0X"])) + digits)
    return ".".join(parts) + draw(st.sampled_from(["", "."]))


@st.composite
def unicode_dressed(draw: st.DrawFn, host: str) -> str:
    """`host` with some digits and dots replaced by characters IDNA/NFKC maps back to them."""
    characters = []
    for character in host:
        if character in UNICODE_DIGITS and draw(st.booleans()):
            characters.append(draw(st.sampled_from(UNICODE_DIGITS[character])))
        elif character == "." and draw(st.booleans()):
            characters.append(draw(st.sampled_from(UNICODE_FULL_STOPS)))
        else:
            characters.append(character)
    return "".join(characters)


@st.composite
def percent_encoded(draw: st.DrawFn, host: str) -> str:
    return "".join(f"%{ord(c):02X}" if c.isascii() and draw(st.booleans()) else c for c in host)


@st.composite
def ipv4_spelling(draw: st.DrawFn, address: IPv4Address) -> str:
    """Any spelling of an IPv4 address a lenient reader may take for it (the canonical one included)."""
    host = draw(st.one_of(st.just(str(address)), legacy_ipv4(address)))
    dress = draw(st.sampled_from(["none", "unicode", "percent"]))
    if dress == "unicode":
        return draw(unicode_dressed(host))
    if dress == "percent":
        return draw(percent_encoded(host))
    return host


@st.composite
def ipv6_spelling(draw: st.DrawFn, address: IPv4Address | IPv6Address) -> str:
    """A bracketed IPv6 spelling of `address` (IPv4 ones embedded), in any case, maybe with a zone id."""
    if isinstance(address, IPv4Address):
        prefix = draw(st.sampled_from([*IPV4_CARRYING_PREFIXES, "6to4"]))
        if prefix == "6to4":  # 2002::/16 carries the address in bits 16 to 48
            literal = str(IPv6Address((SIX_TO_FOUR << 112) | (int(address) << 80)))
        elif draw(st.booleans()):
            literal = prefix + str(address)  # dotted-quad tail
        else:
            literal = str(IPv6Address(int(IPv6Address(prefix + "0.0.0.0")) | int(address)))
    else:
        literal = draw(st.sampled_from([address.compressed, address.exploded]))
    literal = draw(st.sampled_from([literal, literal.upper()]))
    zone = draw(st.sampled_from(["", *[separator + zone for zone in ZONE_IDS for separator in ("%25", "%")]]))
    return f"[{literal}{zone}]"


@st.composite
def url_to(draw: st.DrawFn, host: str) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    # User info is refused before the host is read: kept rare so that the host's own spellings are exercised.
    user_info = draw(st.sampled_from(USER_INFOS)) if draw(st.integers(0, 3)) == 0 else ""
    port = draw(st.sampled_from(["", ":80", ":9001", ":443"]))
    return f"{scheme}://{user_info}{host}{port}/latest/meta-data/"


@st.composite
def spelling_of(draw: st.DrawFn, addresses: list[str]) -> tuple[IPAddress, str]:
    address = ip_address(draw(st.sampled_from(addresses)))
    if isinstance(address, IPv4Address):
        host = draw(st.one_of(ipv4_spelling(address), ipv6_spelling(address)))
    else:
        host = draw(ipv6_spelling(address))
    return address, draw(url_to(host))


@given(spelling_of(NON_PUBLIC_IPV4 + NON_PUBLIC_IPV6))
def test_any_spelling_of_a_non_public_address_is_refused_without_an_allow_list(spelled: tuple[IPAddress, str]) -> None:
    # Given a loopback, private, link-local or metadata address in any spelling, and nothing allowed
    _, url = spelled

    # When the guard admits the endpoint, Then it is refused
    with pytest.raises(EndpointRefusedError):
        ALLOW_NOTHING.admit(url)


@given(spelling_of(METADATA_IPV4 + METADATA_IPV6))
def test_any_spelling_of_a_metadata_address_is_refused_even_when_everything_is_allowed(
    spelled: tuple[IPAddress, str],
) -> None:
    # Given a metadata address in any spelling, and every address allowed
    _, url = spelled

    # When the guard admits the endpoint, Then it is refused
    with pytest.raises(EndpointRefusedError):
        ALLOW_EVERYTHING.admit(url)


@given(st.sampled_from(ADMISSIBLE_IPV4).map(IPv4Address).flatmap(ipv4_spelling))
def test_only_four_ascii_decimal_octets_are_admitted_as_an_ipv4_address(host: str) -> None:
    # Given an IPv4 address the policy allows, spelled any way
    # When the guard admits it
    try:
        endpoint = ALLOW_EVERYTHING.admit(f"http://{host}/")
    except EndpointRefusedError:
        admitted = False
    else:
        admitted = True
        # Then what is admitted is read as exactly the address written
        assert endpoint.address == IPv4Address(host)

    # Then it is admitted exactly when written as four decimal octets in ASCII
    assert admitted == _is_canonical_ipv4(host)


HOST_ALPHABET = (
    "0123456789abcdefx.:%[]@-_"
    + "".join(UNICODE_FULL_STOPS)
    + "".join(spelling for spellings in UNICODE_DIGITS.values() for spelling in spellings)
)


@given(st.text(HOST_ALPHABET, min_size=1, max_size=40))
def test_whatever_is_admitted_is_judged_as_the_client_and_the_system_read_it(host: str) -> None:
    # Given any host text (digits and dots in every script, hex, zone and bracket characters)
    url = f"http://{host}/"

    # When the guard admits the endpoint (nothing private allowed)
    try:
        endpoint = ALLOW_NOTHING.admit(url)
    except EndpointRefusedError:
        return

    # Then it judged the host the client connects to, with no user info in between
    assert endpoint.host == URL(url).raw_host
    assert URL(url).raw_user is None
    numeric = _numeric_reading(endpoint.host)
    if endpoint.address is None:
        # a name: no system reads it as an address, so it goes through DNS and the guarded resolver
        assert numeric is None
    else:
        # a literal: the address the system reads is the one judged, and the policy allows it
        assert numeric == endpoint.address
        assert ALLOW_NOTHING.refusal(numeric) is None


@given(
    st.sampled_from(METADATA_IPV4 + METADATA_IPV6).map(ip_address).flatmap(ipv6_spelling),
    st.sampled_from(ZONE_IDS),
)
def test_a_resolver_answer_with_a_scope_id_is_judged_without_it(spelled: str, zone: str) -> None:
    # Given a resolver answer naming a metadata address in an IPv6 form with a scope id
    literal = spelled.strip("[]").replace("%25", "%").partition("%")[0]
    answer = ip_address(f"{literal}%{zone}")

    # When the policy judges it with every address allowed, Then it is refused as metadata
    refusal = ALLOW_EVERYTHING.refusal(answer)
    assert refusal is not None
    assert "cloud metadata address (always refused)" in refusal


def _is_canonical_ipv4(host: str) -> bool:
    try:
        return str(IPv4Address(host)) == host
    except ValueError:
        return False


def _numeric_reading(host: str) -> IPAddress | None:
    """The address the system reads `host` as without DNS (inet_aton's legacy forms included), or None."""
    try:
        answers = socket.getaddrinfo(host.strip("[]"), None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ip_address(str(answers[0][4][0]).partition("%")[0])
