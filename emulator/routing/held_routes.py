"""The routes a node actually holds for the other nodes' pod slices, read from its kernel, with their origin.

Whatever the routing mode, the question a student asks is "how does this node reach 10.244.2.0/24, and who put
that route there?". The answer is in the kernel's main table: the route's protocol and flags tell the origin, in
the one vocabulary of ``netlink.origin`` (the trace uses it too) — ``bird`` (learned over BGP by BIRD),
``onlink`` (a static route through ``flannel.1`` with the onlink flag: flannel's vxlan backend), ``static`` (a
plain static route via the peer's node IP: host-gw), ``connected`` (the kernel's own route for an address on an
interface). Reading is one netlink dump in the node's namespace.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_GETROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from emulator.netlink import msgs
from emulator.netlink import origin as route_origin
from emulator.netlink.rtnl import Rtnl

RTPROT_BIRD = route_origin.RTPROT_BIRD


@dataclass(frozen=True)
class HeldRoute:
    dst: str
    dev: str
    gateway: str | None
    proto: int
    onlink: bool
    kind: str = "unicast"  # unicast | unreachable | blackhole | prohibit

    @property
    def origin(self) -> str:
        return route_origin.origin(self.proto, self.onlink)

    def as_dict(self) -> dict:
        return {"dst": self.dst, "dev": self.dev, "gateway": self.gateway, "origin": self.origin,
                "protocol": self.proto, "onlink": self.onlink, "type": self.kind}


_TYPES = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}


def read(ns: str) -> list[HeldRoute]:
    """Every IPv4 route of the main table of namespace ``ns``."""
    with Rtnl.in_ns(ns) as rt:
        links = {m["index"]: m.get_attr("IFLA_IFNAME") for m in rt.query(msgs.link_dump(), RTM_GETLINK, dump=True)}
        rm = rtmsg()
        rm["family"] = socket.AF_INET
        out = []
        for m in rt.query(rm, RTM_GETROUTE, dump=True):
            if (m.get_attr("RTA_TABLE") or m["table"]) != msgs.RT_TABLE_MAIN:
                continue
            out.append(HeldRoute(dst=f"{m.get_attr('RTA_DST') or '0.0.0.0'}/{m['dst_len']}",
                                 dev=links.get(m.get_attr("RTA_OIF"), ""), gateway=m.get_attr("RTA_GATEWAY"),
                                 proto=m["proto"], onlink=bool(m["flags"] & msgs.RTNH_F_ONLINK),
                                 kind=_TYPES.get(m["type"], str(m["type"]))))
        return out


def for_slices(routes: list[HeldRoute], slices: dict[str, str]) -> dict[str, HeldRoute | None]:
    """For each node → slice in ``slices``, the route whose destination is exactly that slice (or None)."""
    by_dst = {r.dst: r for r in routes}
    return {node: by_dst.get(str(ipaddress.ip_network(s))) for node, s in slices.items()}
