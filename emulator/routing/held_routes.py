"""The routes a node actually holds for the other nodes' pod slices, read from its kernel, with their origin.

Whatever the routing mode, the question a student asks is "how does this node reach 10.244.2.0/24, and who put
that route there?". The answer is in the kernel's main table: the route's protocol and flags tell the origin, in
the one vocabulary of ``netlink.origin`` (the trace uses it too) — ``bird`` (learned over BGP by BIRD),
``onlink`` (a static route through ``flannel.1`` with the onlink flag: flannel's vxlan backend), ``static`` (a
plain static route via the peer's node IP: host-gw), ``connected`` (the kernel's own route for an address on an
interface). The routes are the kernel read model's (``netlink.observe.Route``): one link and one route dump in
the node's namespace.
"""
from __future__ import annotations

import ipaddress

from emulator.netlink import origin as route_origin
from emulator.netlink.observe import Route, Snapshot

RTPROT_BIRD = route_origin.RTPROT_BIRD


def read(ns: str) -> list[Route]:
    """Every IPv4 route of the main table of namespace ``ns``."""
    with Snapshot(ns=ns) as snap:
        return snap.routes


def for_slices(routes: list[Route], slices: dict[str, str]) -> dict[str, Route | None]:
    """For each node → slice in ``slices``, the route whose destination is exactly that slice (or None)."""
    by_dst = {r.dst: r for r in routes}
    return {node: by_dst.get(ipaddress.ip_network(str(s))) for node, s in slices.items()}
