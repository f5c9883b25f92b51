"""CIDR arithmetic of a lab: the cluster range cut into per-node slices, capacities, parsing with a fix.

Like kube-controller-manager's node IPAM, the cluster pod CIDR (``10.244.0.0/16``) is cut into equal slices of
``nodeCIDRMaskSize`` bits (``/24``); slice *i* starts at ``cluster + i * 2**(32 - mask)``. A /16 cut into /24s
has 256 slices; each slice gives ``2**(32 - mask) - 3`` pod addresses (the network address, the broadcast
address and the gateway ``.1`` that ``cni0`` holds are not handed to pods): 253 for a /24.

Allocation order: a node with an explicit ``podCIDR`` keeps it; the others take the lowest free slice counting
from index 1, and slice 0 (``10.244.0.0/24``) is handed out last. So node-1 gets ``10.244.1.0/24`` and node-2
``10.244.2.0/24``, matching the pictures in the lessons (and flannel's habit of skipping the first subnet),
while the capacity stays the full 256 slices.

Everything here is pure: numbers in, numbers out. Parsing errors are ``CidrError`` (a ``ValueError``) with a
``fix`` the loader passes on unchanged; the loader adds the file and field.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network

MAX_NODE_MASK = 30  # a /30 still leaves one pod address; /31 and /32 leave none


class CidrError(ValueError):
    """A value is not a usable IPv4 network/address; ``fix`` says what to write instead."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def slice_size(mask: int) -> int:
    """Addresses in one slice of prefix length ``mask``."""
    return 1 << (32 - mask)


def slice_count(cluster: IPv4Network, mask: int) -> int:
    """Number of ``/mask`` slices in ``cluster`` (0 if the mask is shorter than the cluster prefix)."""
    return 1 << (mask - cluster.prefixlen) if mask >= cluster.prefixlen else 0


def slice_at(cluster: IPv4Network, mask: int, index: int) -> IPv4Network:
    """Slice number ``index`` (from 0) of ``cluster``."""
    if not 0 <= index < slice_count(cluster, mask):
        raise IndexError(f"{cluster} has no /{mask} slice number {index}")
    return IPv4Network((int(cluster.network_address) + index * slice_size(mask), mask))


def node_slices(cluster: IPv4Network, mask: int) -> Iterator[IPv4Network]:
    """All slices of ``cluster`` in address order (lazy: a /8 cut into /30s has four million)."""
    for index in range(slice_count(cluster, mask)):
        yield slice_at(cluster, mask, index)


def allocation_order(cluster: IPv4Network, mask: int) -> Iterator[IPv4Network]:
    """Slices in the order automatic allocation hands them out: index 1, 2, ..., last, then 0."""
    count = slice_count(cluster, mask)
    for index in range(1, count):
        yield slice_at(cluster, mask, index)
    if count:
        yield slice_at(cluster, mask, 0)


def pod_capacity(mask: int) -> int:
    """Pod addresses in a ``/mask`` slice: all but the network, broadcast and gateway addresses."""
    return max(slice_size(mask) - 3, 0)


def overlaps(a: IPv4Network, b: IPv4Network) -> bool:
    """True if the two ranges share at least one address."""
    return a.overlaps(b)


def slice_problem(cluster: IPv4Network, mask: int, net: IPv4Network) -> tuple[str, str] | None:
    """Why ``net`` cannot be a node slice of ``cluster`` (message, fix), or None if it can."""
    if net.prefixlen != mask:
        fix_net = IPv4Network((int(net.network_address), mask), strict=False)
        hint = f"use a /{mask} such as {fix_net}" if fix_net.subnet_of(cluster) else f"use a /{mask} slice"
        return (f"has prefix /{net.prefixlen} but cluster.nodeCIDRMaskSize is {mask}",
                f"{hint} (every node slice has the cluster's nodeCIDRMaskSize)")
    if not net.subnet_of(cluster):
        count = slice_count(cluster, mask)
        example = f", e.g. {slice_at(cluster, mask, 1 if count > 1 else 0)}" if count else ""
        return f"is outside the cluster pod CIDR {cluster}", f"pick a /{mask} inside {cluster}{example}"
    return None


def allocate_node_cidrs(cluster: IPv4Network, mask: int,
                        explicit: Sequence[IPv4Network | None]) -> list[IPv4Network]:
    """One slice per node: ``explicit[i]`` if given, else the next free slice in ``allocation_order``.

    Raises ``CidrError`` if an explicit slice is invalid or taken twice, or if the slices run out.
    """
    taken: set[IPv4Network] = set()
    for net in explicit:
        if net is None:
            continue
        problem = slice_problem(cluster, mask, net)
        if problem:
            raise CidrError(f"{net} {problem[0]}", problem[1])
        if net in taken:
            raise CidrError(f"{net} is given to two nodes", "give each node its own slice")
        taken.add(net)
    wanted = sum(1 for net in explicit if net is None)
    free: Iterator[IPv4Network] = (s for s in allocation_order(cluster, mask) if s not in taken)
    result: list[IPv4Network] = []
    for net in explicit:
        if net is None:
            net = next(free, None)
            if net is None:
                count = slice_count(cluster, mask)
                raise CidrError(f"{cluster} has only {count} /{mask} slices for {len(explicit)} nodes",
                                f"use a larger cluster CIDR or a longer nodeCIDRMaskSize ({wanted} automatic)")
        result.append(net)
    return result


def _describe(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def parse_network(value: object) -> IPv4Network:
    """Parse ``address/prefix`` strictly; the error's fix gives the network form when host bits are set."""
    if not isinstance(value, str) or "/" not in value:
        raise CidrError(f"{_describe(value)} is not an IPv4 network in CIDR notation",
                        "write it as address/prefix, e.g. 10.244.0.0/16")
    try:
        return IPv4Network(value.strip(), strict=True)
    except ValueError as exc:
        try:
            loose = IPv4Network(value.strip(), strict=False)
        except ValueError:
            loose = None
        if loose is not None:
            raise CidrError(f"'{value}' has host bits set (it is not the first address of its /{loose.prefixlen})",
                            f"use {loose}") from None
        if _is_ipv6(value):
            raise CidrError(f"'{value}' is an IPv6 network; podlab emulates an IPv4 cluster",
                            "use an IPv4 range, e.g. 10.244.0.0/16") from None
        raise CidrError(f"'{value}' is not an IPv4 network ({exc})",
                        "write it as address/prefix with four numbers 0..255 and a prefix 0..32, "
                        "e.g. 10.244.0.0/16") from None


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_network(text.strip(), strict=False), ipaddress.IPv6Network)
    except ValueError:
        return False


def parse_address(value: object) -> IPv4Address:
    """Parse a single IPv4 address (no prefix)."""
    if isinstance(value, str):
        try:
            return IPv4Address(value.strip())
        except ValueError:
            pass  # raised below as a CidrError that says what the value is
    raise CidrError(f"{_describe(value)} is not an IPv4 address",
                    "write a single address without a prefix, e.g. 192.168.56.21")


def special_range(net: IPv4Network) -> str | None:
    """Name the kind of range that cannot carry lab traffic (loopback, multicast...), or None."""
    for kind, block in (("the 'this network' range 0.0.0.0/8", "0.0.0.0/8"), ("loopback", "127.0.0.0/8"),
                        ("link-local", "169.254.0.0/16"), ("multicast", "224.0.0.0/4"),
                        ("reserved", "240.0.0.0/4")):
        if net.overlaps(IPv4Network(block)):
            return f"overlaps {kind} ({block})"
    return None


def prefix_for(count: int, extra: int = 0) -> int:
    """Longest prefix whose range holds ``count + extra`` addresses."""
    need = max(count + extra, 1)
    return 32 - (need - 1).bit_length()
