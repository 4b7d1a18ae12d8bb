"""SSRF guard: which endpoints may be connected to, and at which addresses.

Two checks, both on what the HTTP client will actually do:
- `read_endpoint` reads the URL with the client's own parser (yarl, as aiohttp uses it), so the host
  judged is the host connected to, and refuses every spelling two parsers could read differently:
  user info, non-ASCII spellings of an address, IPv4 in any form but four decimal octets, IPv6 zone ids.
- `AddressPolicy` judges an address: IP literals when the endpoint is read, resolved names on the address
  actually connected to (see adapters/http.py), never on the hostname alone, because DNS answers change
  between a check and a connection.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

from yarl import URL

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Instance metadata and credential endpoints hand out cloud credentials: refused even under 0.0.0.0/0.
# EC2 instance metadata (IPv4, IPv6), the ECS task credentials endpoint and the EKS Pod Identity agent
# (IPv4, IPv6).
METADATA_ADDRESSES = frozenset(
    ip_address(address)
    for address in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "169.254.170.23", "fd00:ec2::23")
)
CARRIER_GRADE_NAT = ip_network("100.64.0.0/10")
# IPv6 ranges whose last 32 bits are an IPv4 address a translator or the kernel may connect to instead:
# NAT64 (well-known and local-use prefixes, RFC 6052/8215), SIIT IPv4-translated addresses (RFC 2765) and
# the deprecated IPv4-compatible addresses (RFC 4291). IPv4-mapped and 6to4 are read by `ipaddress` itself.
IPV4_IN_LOW_BITS = tuple(ip_network(network) for network in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96"))
IPV4_COMPATIBLE = ip_network("::/96")
LOW_32_BITS = 0xFFFFFFFF

ALLOWED_SCHEMES = ("http", "https")
# A DNS name as yarl leaves it (lower-case ASCII, IDNA-encoded): LDH labels (underscores tolerated, some
# internal zones use them) and at most one trailing dot. Anything else (%, spaces, brackets) is refused.
HOST_NAME = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?")
MAX_HOST_NAME_LENGTH = 253  # characters, RFC 1035
# The WHATWG URL standard's "ends in a number": a host whose last label is a number is an IPv4 address to
# browsers and to inet_aton (which getaddrinfo uses), whatever DNS would say. No top-level domain is numeric.
NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
AUTHORITY_END = re.compile(r"[/?#]")


class EndpointRefusedError(OSError):
    """The SSRF guard refuses the endpoint (its form, its address, or every address it resolves to).
    Permanent: the record is parked, never retried.

    An OSError so that aiohttp passes it through its resolver wrapper untouched.
    """


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint URL as the HTTP client reads it; hand `url` itself to aiohttp so it is not read again."""

    url: URL
    host: str  # what the connector connects to (an IP literal) or resolves (a name): yarl's raw_host
    port: int
    address: IPAddress | None  # the host when it is an IP literal, else None (judged when resolved)


def read_endpoint(url: str) -> Endpoint:
    """Read `url` as aiohttp will; raises EndpointRefusedError naming the refused form.

    Messages name the host, never the user info, path or query (they may carry credentials)."""
    if CONTROL_OR_SPACE.search(url):
        raise EndpointRefusedError("URL contains whitespace or control characters")
    try:
        parsed = URL(url)
        written = urlsplit(url)
    # Whatever a parser raises on hostile input is a refusal, its own bugs included: yarl 1.25 raises
    # IndexError for "http://[]@/".
    except (ValueError, LookupError) as error:
        raise EndpointRefusedError(
            f"URL cannot be parsed by the HTTP client: {_without_user_info(error, url)}"
        ) from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise EndpointRefusedError(f"URL must be http(s), got scheme {parsed.scheme!r}")
    if parsed.raw_user is not None or parsed.raw_password is not None or "@" in written.netloc:
        raise EndpointRefusedError("URL carries user info (user:password@host); credentials do not belong in the URL")
    host = parsed.raw_host
    if not host or parsed.port is None:
        raise EndpointRefusedError("URL names no host")
    # Brackets make an IP literal ([v1.x], an "IPvFuture" literal, would otherwise be resolved as a name).
    address = _literal_address(host, bracketed=written.netloc.startswith("["))
    written_host = written.hostname or ""
    if address is not None and not written_host.isascii():
        raise EndpointRefusedError(
            f"host {written_host!r} is written with non-ASCII characters that normalise to the address {address}"
        )
    return Endpoint(parsed, host, parsed.port, address)


def _literal_address(host: str, *, bracketed: bool) -> IPAddress | None:
    """The address an IP-literal host is, None for a DNS name; refuses every other form."""
    if bracketed or ":" in host:
        if "%" in host:
            raise EndpointRefusedError(f"host [{host}] carries an IPv6 zone id; zone ids are refused")
        try:
            return IPv6Address(host)
        except ValueError:
            raise EndpointRefusedError(f"host [{host}] is not an IPv6 address") from None
    if not HOST_NAME.fullmatch(host) or len(host) > MAX_HOST_NAME_LENGTH:
        raise EndpointRefusedError(f"host {host!r} is not a valid host name")
    if not NUMERIC_LABEL.fullmatch(host.removesuffix(".").rpartition(".")[2]):
        return None
    try:
        return IPv4Address(host)  # four decimal octets, no leading zeros, nothing else
    except ValueError:
        raise EndpointRefusedError(
            f"host {host!r} is an IPv4 address in a form other than four decimal octets "
            "(integer, octal, hex, short and trailing-dot forms are read differently by different parsers)"
        ) from None


def _without_user_info(error: Exception, url: str) -> str:
    """A parser's message may quote the whole authority: keep what it says, not the credentials in it."""
    message = str(error)
    authority = AUTHORITY_END.split(url.partition("://")[2], maxsplit=1)[0]
    user_info = authority.rpartition("@")[0]
    return message.replace(user_info, "***") if user_info else message


class AddressPolicy:
    def __init__(self, allowed_networks: Sequence[IPNetwork] = ()) -> None:
        self._allowed = tuple(allowed_networks)

    def admit(self, url: str) -> Endpoint:
        """The endpoint as the client reads it; raises EndpointRefusedError for a refused form or IP literal
        (aiohttp connects to a literal without asking the resolver, so literals are judged here)."""
        endpoint = read_endpoint(url)
        if endpoint.address is not None and (refusal := self.refusal(endpoint.address)) is not None:
            raise EndpointRefusedError(refusal)
        return endpoint

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be connected to, or None when it may."""
        unscoped = _without_scope(address)
        embedded = _embedded_ipv4(unscoped)
        effective = embedded or unscoped
        named = f"{address} ({embedded})" if embedded else str(address)
        if unscoped in METADATA_ADDRESSES or effective in METADATA_ADDRESSES:
            return f"{named} is a cloud metadata address (always refused)"
        category = _non_public_category(effective)
        if category is None or any(effective in network for network in self._allowed):
            return None
        return f"{named} is a {category} address and not in allow_private_cidrs"


def _without_scope(address: IPAddress) -> IPAddress:
    """`IPv6Address` equality includes the scope id (fd00:ec2::254%1 != fd00:ec2::254): judge without it."""
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        return IPv6Address(int(address))
    return address


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """IPv4 addresses smuggled inside IPv6 forms (::ffff:a.b.c.d, 6to4, NAT64, ...) are judged as IPv4."""
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in IPV4_IN_LOW_BITS) or (
        address in IPV4_COMPATIBLE and int(address) > 1  # :: and ::1 are themselves, not IPv4
    ):
        return IPv4Address(int(address) & LOW_32_BITS)
    return None


def _non_public_category(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, IPv4Address) and address in CARRIER_GRADE_NAT:
        return "carrier-grade NAT"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-global"
    return None
