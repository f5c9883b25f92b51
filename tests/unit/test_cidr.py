"""CIDR arithmetic: slices, allocation order, capacities, parsing with a fix."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from emulator.topology import cidr

CLUSTER = IPv4Network("10.244.0.0/16")


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


def test_slice_count() -> None:
    assert cidr.slice_count(CLUSTER, 24) == 256
    assert cidr.slice_count(CLUSTER, 16) == 1
    assert cidr.slice_count(CLUSTER, 15) == 0
    assert cidr.slice_count(net("10.0.0.0/8"), 30) == 1 << 22


def test_node_slices_in_address_order() -> None:
    slices = list(cidr.node_slices(net("10.244.0.0/22"), 24))
    assert slices == [net(f"10.244.{i}.0/24") for i in range(4)]


def test_node_slices_is_lazy() -> None:
    first = next(cidr.node_slices(net("10.0.0.0/8"), 30))
    assert first == net("10.0.0.0/30")


def test_slice_at_bounds() -> None:
    assert cidr.slice_at(CLUSTER, 24, 255) == net("10.244.255.0/24")
    with pytest.raises(IndexError):
        cidr.slice_at(CLUSTER, 24, 256)


def test_allocation_order_hands_out_slice_zero_last() -> None:
    order = list(cidr.allocation_order(net("10.244.0.0/22"), 24))
    assert order == [net("10.244.1.0/24"), net("10.244.2.0/24"), net("10.244.3.0/24"), net("10.244.0.0/24")]


def test_allocate_automatic() -> None:
    assert cidr.allocate_node_cidrs(CLUSTER, 24, [None, None]) == [net("10.244.1.0/24"), net("10.244.2.0/24")]


def test_allocate_full_capacity_uses_slice_zero() -> None:
    result = cidr.allocate_node_cidrs(CLUSTER, 24, [None] * 256)
    assert result[0] == net("10.244.1.0/24")
    assert result[-1] == net("10.244.0.0/24")
    assert len(set(result)) == 256


def test_allocate_explicit_taken_as_given_and_skipped() -> None:
    result = cidr.allocate_node_cidrs(CLUSTER, 24, [None, net("10.244.1.0/24"), None, net("10.244.9.0/24")])
    assert result == [net("10.244.2.0/24"), net("10.244.1.0/24"), net("10.244.3.0/24"), net("10.244.9.0/24")]


def test_allocate_exhausted() -> None:
    with pytest.raises(cidr.CidrError, match="only 4 /24 slices"):
        cidr.allocate_node_cidrs(net("10.244.0.0/22"), 24, [None] * 5)


@pytest.mark.parametrize("explicit", ["10.245.0.0/24", "10.244.1.0/25"])
def test_allocate_rejects_bad_explicit(explicit: str) -> None:
    with pytest.raises(cidr.CidrError):
        cidr.allocate_node_cidrs(CLUSTER, 24, [net(explicit)])


def test_allocate_rejects_duplicate_explicit() -> None:
    with pytest.raises(cidr.CidrError, match="two nodes"):
        cidr.allocate_node_cidrs(CLUSTER, 24, [net("10.244.5.0/24"), net("10.244.5.0/24")])


@pytest.mark.parametrize(("mask", "capacity"), [(24, 253), (23, 509), (16, 65533), (30, 1), (31, 0), (32, 0)])
def test_pod_capacity(mask: int, capacity: int) -> None:
    assert cidr.pod_capacity(mask) == capacity


def test_overlaps() -> None:
    assert cidr.overlaps(net("10.244.0.0/16"), net("10.244.3.0/24"))
    assert cidr.overlaps(net("10.0.0.0/8"), net("10.96.0.0/12"))
    assert not cidr.overlaps(net("10.244.0.0/16"), net("10.96.0.0/12"))


def test_parse_network_ok() -> None:
    assert cidr.parse_network("10.244.0.0/16") == CLUSTER


def test_parse_network_host_bits_suggests_network_form() -> None:
    with pytest.raises(cidr.CidrError) as info:
        cidr.parse_network("10.244.0.1/16")
    assert "host bits" in str(info.value)
    assert info.value.fix == "use 10.244.0.0/16"


@pytest.mark.parametrize("value", ["10.244.0.0", "10.300.0.0/16", "10.244.0.0/33", "fd00::/64", 42, None, "web"])
def test_parse_network_rejects(value: object) -> None:
    with pytest.raises(cidr.CidrError) as info:
        cidr.parse_network(value)
    assert info.value.fix


def test_parse_network_ipv6_says_ipv4_only() -> None:
    with pytest.raises(cidr.CidrError, match="IPv6"):
        cidr.parse_network("fd00::/64")


def test_parse_address() -> None:
    assert cidr.parse_address("192.168.56.21") == IPv4Address("192.168.56.21")
    for bad in ("192.168.56.21/24", "192.168.56", 7):
        with pytest.raises(cidr.CidrError):
            cidr.parse_address(bad)


def test_special_range() -> None:
    assert cidr.special_range(net("127.0.0.0/16")) is not None
    assert cidr.special_range(net("224.0.0.0/8")) is not None
    assert cidr.special_range(CLUSTER) is None


def test_slice_problem() -> None:
    assert cidr.slice_problem(CLUSTER, 24, net("10.244.7.0/24")) is None
    assert "prefix /25" in cidr.slice_problem(CLUSTER, 24, net("10.244.7.0/25"))[0]  # type: ignore[index]
    assert "outside" in cidr.slice_problem(CLUSTER, 24, net("10.245.7.0/24"))[0]  # type: ignore[index]


def test_prefix_for() -> None:
    assert cidr.prefix_for(253, 3) == 24
    assert cidr.prefix_for(254, 3) == 23
    assert cidr.prefix_for(1) == 32
