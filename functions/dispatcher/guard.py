"""SSRF guard: which resolved addresses an endpoint may be reached at.

Checked on the address actually connected to (see adapters/http.py), never on the hostname alone,
because DNS answers change between a check and a connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Instance metadata and credential endpoints hand out cloud credentials: refused even under 0.0.0.0/0.
METADATA_ADDRESSES = frozenset(
    ip_address(address) for address in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "fd00:ec2::23")
)
CARRIER_GRADE_NAT = ip_network("100.64.0.0/10")
NAT64_PREFIX = ip_network("64:ff9b::/96")


class EndpointRefusedError(OSError):
    """The endpoint resolves only to addresses the SSRF guard refuses. Permanent: the record is parked.

    An OSError so that aiohttp passes it through its resolver wrapper untouched.
    """


class AddressPolicy:
    def __init__(self, allowed_networks: Sequence[IPNetwork] = ()) -> None:
        self._allowed = tuple(allowed_networks)

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be connected to, or None when it may."""
        embedded = _embedded_ipv4(address)
        effective = embedded or address
        named = f"{address} ({embedded})" if embedded else str(address)
        if address in METADATA_ADDRESSES or effective in METADATA_ADDRESSES:
            return f"{named} is a cloud metadata address (always refused)"
        category = _non_public_category(effective)
        if category is None or any(effective in network for network in self._allowed):
            return None
        return f"{named} is a {category} address and not in allow_private_cidrs"

    def check_literal(self, host: str) -> str | None:
        """Refusal for a host written as an IP literal; None for names (checked when resolved)."""
        try:
            address = ip_address(host.strip("[]"))
        except ValueError:
            return None
        return self.refusal(address)


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """IPv4 addresses smuggled inside IPv6 forms (::ffff:a.b.c.d, 6to4, NAT64) are judged as IPv4."""
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_PREFIX:
        return IPv4Address(int(address) & 0xFFFFFFFF)
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
