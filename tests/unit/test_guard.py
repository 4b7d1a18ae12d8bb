from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from dispatcher.guard import AddressPolicy


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
    policy = AddressPolicy([ip_network("0.0.0.0/0"), ip_network("::/0")])
    refusal = policy.refusal(ip_address(address))
    assert refusal == f"{named(address)} is a cloud metadata address (always refused)"


def test_literal_hosts_are_checked_and_names_are_left_to_resolution() -> None:
    policy = AddressPolicy()
    assert policy.check_literal("127.0.0.1") is not None
    assert policy.check_literal("[::1]") is not None
    assert policy.check_literal("ledger.example.com") is None
