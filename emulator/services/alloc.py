"""ClusterIP and NodePort allocation, as the API server does it, but reproducible.

The API server hands out ClusterIPs at random from the upper part of the Service CIDR and keeps a lower band
(min(max(16, size/16), 256) addresses) for IPs users choose; NodePorts likewise from 30000-32767 with a lower
band of min(max(16, range/32), 128) ports. podlab keeps the bands and the "looks random" shape but derives the
starting point from a hash of ``namespace/name`` (then probes upward for a free value), so the same topology
gets the same ClusterIPs on every ``up`` and a lesson's instructions stay true. Fixed addresses: the network
address, ``.1`` (the ``kubernetes`` Service in a real cluster) and ``.10`` (``kube-dns``).
"""
from __future__ import annotations

import hashlib
import ipaddress
from typing import Iterable

from emulator.errors import AllocationError
from emulator.services.model import NODE_PORT_MAX, NODE_PORT_MIN

DNS_OFFSET = 10  # kube-dns sits at the tenth address of the Service CIDR (10.96.0.10)
API_OFFSET = 1  # the "kubernetes" Service (10.96.0.1)


def dns_ip(cidr: ipaddress.IPv4Network) -> str:
    return str(cidr.network_address + DNS_OFFSET)


def api_ip(cidr: ipaddress.IPv4Network) -> str:
    """The ``default/kubernetes`` Service's ClusterIP: the first address of the Service CIDR."""
    return str(cidr.network_address + API_OFFSET)


def reserved(cidr: ipaddress.IPv4Network) -> set[str]:
    return {str(cidr.network_address), str(cidr.broadcast_address), str(cidr.network_address + API_OFFSET),
            dns_ip(cidr)}


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _probe(key: str, lo: int, hi: int, taken: set[int]) -> int | None:
    """First free value at or after hash(key) within [lo, hi], wrapping around; None if all are taken."""
    size = hi - lo + 1
    if size <= 0:
        return None
    start = _seed(key) % size
    for i in range(size):
        v = lo + (start + i) % size
        if v not in taken:
            return v
    return None


def allocate_ip(key: str, cidr: ipaddress.IPv4Network, taken: Iterable[str]) -> str:
    """A free ClusterIP for ``key`` ("namespace/name"): upper band first, then the lower band."""
    used = {int(ipaddress.IPv4Address(ip)) for ip in list(taken) + list(reserved(cidr))
            if ip and ip != "None" and ipaddress.IPv4Address(ip) in cidr}
    base, size = int(cidr.network_address), cidr.num_addresses
    band = min(max(16, size // 16), 256)
    last = base + size - 2  # the broadcast address is never used
    for lo, hi in ((base + band, last), (base + 1, min(base + band - 1, last))):
        v = _probe(key, lo, hi, used)
        if v is not None:
            return str(ipaddress.IPv4Address(v))
    raise AllocationError(f"the Service CIDR {cidr} has no free address left for service {key}", obj=key)


def allocate_node_port(key: str, taken: Iterable[int]) -> int:
    used = set(taken)
    band = min(max(16, (NODE_PORT_MAX - NODE_PORT_MIN + 1) // 32), 128)
    for lo, hi in ((NODE_PORT_MIN + band, NODE_PORT_MAX), (NODE_PORT_MIN, NODE_PORT_MIN + band - 1)):
        v = _probe(key, lo, hi, used)
        if v is not None:
            return v
    raise AllocationError(f"no free NodePort left in {NODE_PORT_MIN}-{NODE_PORT_MAX} for service {key}", obj=key)
