"""A read-only view of one lab namespace's kernel state: links, addresses, routes, neighbours, bridge FDB.

Everything comes from rtnetlink dumps made through ``Rtnl.in_ns`` (a socket opened inside the namespace, no
process per query), decoded by pyroute2, and is kept as small frozen records so that the trace logic works on
plain data. ``route_get`` asks the kernel itself which route it would use (``ip route get``), so a trace follows
the kernel's decision, including policy it may have that we do not model; ``match_route`` finds the table entry
behind that decision, to show the student the line of ``ip route`` that matched. Dumps are made lazily, once
per view; ``counters`` re-reads the interface statistics every call (``--verify`` compares two readings).
"""
from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from functools import cached_property

from pyroute2.netlink.rtnl import RTM_GETADDR, RTM_GETLINK, RTM_GETNEIGH, RTM_GETROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from emulator.errors import NetlinkError, NoRouteError
from emulator.netlink import msgs, origin
from emulator.netlink.rtnl import Rtnl

RT_TABLE_MAIN = 254
NUD_NAMES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE", 0x20: "FAILED",
             0x40: "NOARP", 0x80: "PERMANENT"}


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str  # veth, bridge, vxlan, loopback, ...
    mac: str
    mtu: int
    up: bool
    master: str | None  # the bridge this link is a port of
    vni: int | None = None
    vxlan_port: int | None = None
    vxlan_local: str | None = None
    vxlan_dev: str | None = None
    learning: bool | None = None


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network
    dev: str
    gateway: str | None
    onlink: bool
    proto: str  # iproute2's name of the protocol (``origin.proto_name``)
    scope: int
    type: int
    origin: str = ""  # who put it there, in the words ``describe node`` uses (``origin.origin``)

    def text(self) -> str:
        """The route as ``ip route`` prints it."""
        dst = "default" if self.dst.prefixlen == 0 else str(self.dst)
        via = f" via {self.gateway}" if self.gateway else ""
        onlink = " onlink" if self.onlink else ""
        scope = " scope link" if self.scope == msgs.RT_SCOPE_LINK else ""
        proto = f" proto {self.proto}" if self.proto != origin.HIDDEN else ""
        return f"{dst}{via} dev {self.dev}{proto}{scope}{onlink}"


@dataclass(frozen=True)
class Neigh:
    dev: str
    ip: str
    mac: str
    state: str


@dataclass(frozen=True)
class Fdb:
    dev: str
    mac: str
    dst: str | None  # remote VTEP (VXLAN FDB)
    master: str | None  # bridge (learned/static bridge FDB)
    state: str


@dataclass(frozen=True)
class RouteDecision:
    dev: str
    gateway: str | None
    prefsrc: str | None
    local: bool  # the kernel would deliver locally (RTN_LOCAL)


class NsView:
    """Kernel state of one namespace; ``label`` names it in messages (``node-1``, ``web-1``, ``underlay``)."""

    def __init__(self, ns: str, label: str | None = None) -> None:
        self.ns, self.label = ns, label or ns
        self._rt: Rtnl | None = None

    @property
    def rt(self) -> Rtnl:
        if self._rt is None:
            self._rt = Rtnl.in_ns(self.ns)
        return self._rt

    def close(self) -> None:
        if self._rt is not None:
            self._rt.close()
            self._rt = None

    # -- links --------------------------------------------------------------------------------------------
    def _link_dump(self) -> list:
        return self.rt.query(msgs.link_dump(), RTM_GETLINK, dump=True)

    @cached_property
    def links(self) -> dict[str, Link]:
        raw = self._link_dump()
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in raw}
        out: dict[str, Link] = {}
        for m in raw:
            info = m.get_attr("IFLA_LINKINFO")
            kind = (info.get_attr("IFLA_INFO_KIND") if info else None) or ("loopback" if m["index"] == 1 else "")
            extra: dict = {}
            if kind == "vxlan":
                data = info.get_attr("IFLA_INFO_DATA")
                extra = dict(vni=data.get_attr("IFLA_VXLAN_ID"), vxlan_port=data.get_attr("IFLA_VXLAN_PORT"),
                             vxlan_local=data.get_attr("IFLA_VXLAN_LOCAL"),
                             vxlan_dev=names.get(data.get_attr("IFLA_VXLAN_LINK")),
                             learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")))
            name = m.get_attr("IFLA_IFNAME")
            out[name] = Link(m["index"], name, kind, m.get_attr("IFLA_ADDRESS") or "", m.get_attr("IFLA_MTU") or 0,
                             bool(m["flags"] & msgs.IFF_UP), names.get(m.get_attr("IFLA_MASTER")), **extra)
        return out

    def by_index(self, index: int | None) -> Link | None:
        return next((link for link in self.links.values() if link.index == index), None)

    def ports(self, bridge: str) -> list[Link]:
        return [link for link in self.links.values() if link.master == bridge]

    def counters(self) -> dict[str, tuple[int, int]]:
        """(rx_packets, tx_packets) per interface, read now."""
        out: dict[str, tuple[int, int]] = {}
        for m in self._link_dump():
            st = m.get_attr("IFLA_STATS64") or m.get_attr("IFLA_STATS")
            if st is not None:
                out[m.get_attr("IFLA_IFNAME")] = (st["rx_packets"], st["tx_packets"])
        return out

    # -- addresses, routes --------------------------------------------------------------------------------
    @cached_property
    def addrs(self) -> list[tuple[str, ipaddress.IPv4Interface]]:
        am = ifaddrmsg()
        am["family"] = socket.AF_INET
        idx = {link.index: link.name for link in self.links.values()}
        return [(idx.get(m["index"], "?"), ipaddress.IPv4Interface(f"{m.get_attr('IFA_LOCAL')}/{m['prefixlen']}"))
                for m in self.rt.query(am, RTM_GETADDR, dump=True)]

    def local_dev(self, ip: str) -> str | None:
        """The device holding ``ip``, if the namespace holds it."""
        addr = ipaddress.IPv4Address(ip)
        return next((dev for dev, iface in self.addrs if iface.ip == addr), None)

    @cached_property
    def routes(self) -> list[Route]:
        rm = rtmsg()
        rm["family"] = socket.AF_INET
        idx = {link.index: link.name for link in self.links.values()}
        out = []
        for m in self.rt.query(rm, RTM_GETROUTE, dump=True):
            if (m.get_attr("RTA_TABLE") or m["table"]) != RT_TABLE_MAIN:
                continue
            dst = ipaddress.IPv4Network(f"{m.get_attr('RTA_DST') or '0.0.0.0'}/{m['dst_len']}")
            onlink = bool(m["flags"] & msgs.RTNH_F_ONLINK)
            out.append(Route(dst, idx.get(m.get_attr("RTA_OIF"), "?"), m.get_attr("RTA_GATEWAY"), onlink,
                             origin.proto_name(m["proto"]), m["scope"], m["type"], origin.origin(m["proto"], onlink)))
        return out

    def match_route(self, dst: str, dev: str | None = None) -> Route | None:
        """The longest-prefix main-table route covering ``dst`` (on ``dev`` if given)."""
        addr = ipaddress.IPv4Address(dst)
        cands = [r for r in self.routes if addr in r.dst and r.type == 1 and (dev is None or r.dev == dev)]
        return max(cands, key=lambda r: r.dst.prefixlen, default=None)

    def route_get(self, dst: str) -> RouteDecision:
        """What the kernel decides for a packet to ``dst`` (``ip route get``); NoRouteError if nothing matches."""
        rm = rtmsg()
        rm["family"] = socket.AF_INET
        rm["dst_len"] = 32
        rm["attrs"] = [("RTA_DST", dst)]
        try:
            m = self.rt.query(rm, RTM_GETROUTE, obj=f"route to {dst}")[0]
        except NetlinkError as e:
            if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL):
                raise NoRouteError(f"{self.label} has no route to {dst}", obj=self.label, errno=e.errno) from None
            raise
        link = self.by_index(m.get_attr("RTA_OIF"))
        return RouteDecision(link.name if link else "?", m.get_attr("RTA_GATEWAY"), m.get_attr("RTA_PREFSRC"),
                             m["type"] == 2)

    # -- neighbours, FDB ----------------------------------------------------------------------------------
    @cached_property
    def neighs(self) -> list[Neigh]:
        nm = ndmsg()
        nm["family"] = socket.AF_INET
        idx = {link.index: link.name for link in self.links.values()}
        return [Neigh(idx.get(m["ifindex"], "?"), m.get_attr("NDA_DST"), m.get_attr("NDA_LLADDR") or "",
                      _state(m["state"])) for m in self.rt.query(nm, RTM_GETNEIGH, dump=True)]

    def neigh(self, dev: str, ip: str) -> Neigh | None:
        return next((n for n in self.neighs if n.dev == dev and n.ip == ip), None)

    @cached_property
    def fdb(self) -> list[Fdb]:
        fm = ndmsg()
        fm["family"] = msgs.AF_BRIDGE
        idx = {link.index: link.name for link in self.links.values()}
        return [Fdb(idx.get(m["ifindex"], "?"), m.get_attr("NDA_LLADDR") or "", m.get_attr("NDA_DST"),
                    idx.get(m.get_attr("NDA_MASTER")), _state(m["state"]))
                for m in self.rt.query(fm, RTM_GETNEIGH, dump=True)]

    def fdb_port(self, bridge: str, mac: str) -> Fdb | None:
        """The bridge FDB entry that says which port of ``bridge`` leads to ``mac`` (learned or static)."""
        mac = mac.lower()
        return next((f for f in self.fdb if f.master == bridge and f.mac.lower() == mac and f.dev != bridge), None)

    def vtep(self, dev: str, mac: str) -> Fdb | None:
        """The VXLAN FDB entry (MAC → remote VTEP IP) on ``dev``."""
        mac = mac.lower()
        return next((f for f in self.fdb if f.dev == dev and f.mac.lower() == mac and f.dst), None)


def _state(state: int) -> str:
    return "|".join(name for bit, name in NUD_NAMES.items() if state & bit) or "NONE"
