"""The one kernel read model: what a namespace holds — links, addresses, routes, neighbours, FDB — as typed records.

Every reader of the kernel goes through here: the applier (what to change), ``trace`` and ``graph`` (the path a
packet takes), ``check`` (routes and addresses as evidence), ``describe node`` (interfaces, the routes to other
nodes' slices and their origin), faults (the underlay ports), teardown (the ports still on the LAN), the CNI
plugins (a link's index, flags, peer). So pyroute2's messages are decoded in one place, into one vocabulary:
a route's protocol and origin are named as ``netlink.origin`` names them, whoever shows it.

Two halves:

- ``decode_*`` turn the messages of one dump into records. They are pure (they take pyroute2 messages, however
  obtained), so unit tests feed them encoded messages without a kernel. A dump's references by index (a route's
  device, a port's bridge, a VXLAN device's underlay link) are resolved against the link dump of the same
  namespace; an index that is not there becomes ``""`` (it vanished between the two dumps).
- ``Snapshot`` reads one namespace through an ``Rtnl`` socket opened inside it (no process per query): each dump
  is made once, when first asked for, and kept (``links``, ``addrs``, ``routes``, ``neighs``, ``fdb``), so a
  snapshot is one consistent-enough picture for one trace or one ``plan``; ``counters`` re-reads the interface
  statistics every call, ``route_get`` asks the kernel's own decision (``ip route get``), and ``link`` asks for
  one link by name (one small request where a whole dump would be waste, as on the CNI hot path).

Only IPv4 and the main routing table are read: podlab's labs have nothing else.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

from pyroute2.netlink import nlmsg
from pyroute2.netlink.rtnl import RTM_GETADDR, RTM_GETLINK, RTM_GETNEIGH, RTM_GETROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from emulator.errors import NetlinkError, NoRouteError
from emulator.netlink import msgs, origin
from emulator.netlink.rtnl import Rtnl

NUD_NAMES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE", 0x20: "FAILED",
             0x40: "NOARP", 0x80: "PERMANENT"}
ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
RTN_UNICAST, RTN_LOCAL = 1, 2


# -- the records ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str  # veth, bridge, vxlan, loopback, ... ("" when the kernel names none)
    mac: str
    mtu: int
    up: bool  # administratively (IFF_UP)
    master: str | None  # the bridge this link is a port of
    vni: int | None = None
    vxlan_port: int | None = None
    vxlan_local: str | None = None
    vxlan_dev: str | None = None
    learning: bool | None = None
    alias: str = ""  # IFLA_IFALIAS (``ip link set DEV alias ...``)
    operstate: str = ""  # UP, DOWN, LOWERLAYERDOWN, UNKNOWN, ...
    peer_index: int | None = None  # IFLA_LINK: a veth's peer's index, in the peer's namespace


@dataclass(frozen=True)
class Addr:
    dev: str
    ip: str
    prefixlen: int
    index: int

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.ip}/{self.prefixlen}")

    def text(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


@dataclass(frozen=True)
class Route:
    """A main-table IPv4 route."""

    dst: ipaddress.IPv4Network
    dev: str  # "" for a route without a device (unreachable, blackhole)
    gateway: str | None
    onlink: bool
    protocol: int  # the kernel's number; ``proto`` names it
    scope: int
    type: int  # RTN_*; ``kind`` names it

    @property
    def proto(self) -> str:
        """iproute2's name of the protocol (``origin.proto_name``)."""
        return origin.proto_name(self.protocol)

    @property
    def origin(self) -> str:
        """Who put it there, in the words ``describe node`` and ``trace`` use (``origin.origin``)."""
        return origin.origin(self.protocol, self.onlink)

    @property
    def kind(self) -> str:
        return ROUTE_TYPES.get(self.type, str(self.type))

    def text(self) -> str:
        """The route as ``ip route`` prints it."""
        dst = "default" if self.dst.prefixlen == 0 else str(self.dst)
        via = f" via {self.gateway}" if self.gateway else ""
        onlink = " onlink" if self.onlink else ""
        scope = " scope link" if self.scope == msgs.RT_SCOPE_LINK else ""
        proto = f" proto {self.proto}" if self.proto != origin.HIDDEN else ""
        return f"{dst}{via} dev {self.dev or '?'}{proto}{scope}{onlink}"

    def as_dict(self) -> dict:
        return {"dst": str(self.dst), "dev": self.dev, "gateway": self.gateway, "origin": self.origin,
                "protocol": self.protocol, "onlink": self.onlink, "type": self.kind}


@dataclass(frozen=True)
class Neigh:
    dev: str
    ip: str
    mac: str
    state: str  # NUD_* names joined by "|" (``PERMANENT``, ``REACHABLE``, ``STALE|DELAY``)
    permanent: bool = False  # NUD_PERMANENT: set by hand or by the lab, never aged out


@dataclass(frozen=True)
class Fdb:
    dev: str
    mac: str
    dst: str | None  # remote VTEP (VXLAN FDB)
    master: str | None  # bridge (learned/static bridge FDB)
    state: str
    permanent: bool = False


@dataclass(frozen=True)
class RouteDecision:
    dev: str
    gateway: str | None
    prefsrc: str | None
    local: bool  # the kernel would deliver locally (RTN_LOCAL)

    def text(self, dst: str) -> str:
        """The decision as ``ip route get DST`` prints it."""
        via = f" via {self.gateway}" if self.gateway else ""
        src = f" src {self.prefsrc}" if self.prefsrc else ""
        return f"{'local ' if self.local else ''}{dst}{via} dev {self.dev}{src}"


# -- decoding (pure) -----------------------------------------------------------------------------------------------
def state_name(state: int) -> str:
    return "|".join(name for bit, name in NUD_NAMES.items() if state & bit) or "NONE"


def decode_links(raw: Iterable[nlmsg]) -> dict[str, Link]:
    """The links of one RTM_GETLINK dump, by name."""
    raw = list(raw)
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
                         vxlan_dev=names.get(data.get_attr("IFLA_VXLAN_LINK"), ""),
                         learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")))
        name = m.get_attr("IFLA_IFNAME")
        out[name] = Link(m["index"], name, kind, m.get_attr("IFLA_ADDRESS") or "", m.get_attr("IFLA_MTU") or 0,
                         bool(m["flags"] & msgs.IFF_UP), names.get(m.get_attr("IFLA_MASTER")),
                         alias=m.get_attr("IFLA_IFALIAS") or "", operstate=m.get_attr("IFLA_OPERSTATE") or "",
                         peer_index=m.get_attr("IFLA_LINK"), **extra)
    return out


def decode_counters(raw: Iterable[nlmsg]) -> dict[str, tuple[int, int]]:
    """(rx_packets, tx_packets) per interface, from one RTM_GETLINK dump."""
    out: dict[str, tuple[int, int]] = {}
    for m in raw:
        st = m.get_attr("IFLA_STATS64") or m.get_attr("IFLA_STATS")
        if st is not None:
            out[m.get_attr("IFLA_IFNAME")] = (st["rx_packets"], st["tx_packets"])
    return out


def decode_addrs(raw: Iterable[nlmsg], names: dict[int, str]) -> list[Addr]:
    """The IPv4 addresses of one RTM_GETADDR dump; ``names``: link index → name."""
    return [Addr(names.get(m["index"], ""), m.get_attr("IFA_LOCAL"), m["prefixlen"], m["index"]) for m in raw
            if m["family"] == socket.AF_INET]


def decode_routes(raw: Iterable[nlmsg], names: dict[int, str]) -> list[Route]:
    """The main-table IPv4 routes of one RTM_GETROUTE dump."""
    out = []
    for m in raw:
        if m["family"] != socket.AF_INET or (m.get_attr("RTA_TABLE") or m["table"]) != msgs.RT_TABLE_MAIN:
            continue
        dst = ipaddress.IPv4Network(f"{m.get_attr('RTA_DST') or '0.0.0.0'}/{m['dst_len']}")
        out.append(Route(dst, names.get(m.get_attr("RTA_OIF"), ""), m.get_attr("RTA_GATEWAY"),
                         bool(m["flags"] & msgs.RTNH_F_ONLINK), m["proto"], m["scope"], m["type"]))
    return out


def decode_neighs(raw: Iterable[nlmsg], names: dict[int, str]) -> list[Neigh]:
    """The IPv4 neighbour entries of one RTM_GETNEIGH dump."""
    return [Neigh(names.get(m["ifindex"], ""), m.get_attr("NDA_DST"), m.get_attr("NDA_LLADDR") or "",
                  state_name(m["state"]), bool(m["state"] & msgs.NUD_PERMANENT)) for m in raw
            if m["family"] == socket.AF_INET]


def decode_fdb(raw: Iterable[nlmsg], names: dict[int, str]) -> list[Fdb]:
    """The bridge forwarding entries of one AF_BRIDGE RTM_GETNEIGH dump (bridge ports' and VXLAN devices')."""
    return [Fdb(names.get(m["ifindex"], ""), m.get_attr("NDA_LLADDR") or "", m.get_attr("NDA_DST"),
                names.get(m.get_attr("NDA_MASTER")), state_name(m["state"]), bool(m["state"] & msgs.NUD_PERMANENT))
            for m in raw if m["family"] == msgs.AF_BRIDGE]


def decode_decision(m: nlmsg, names: dict[int, str]) -> RouteDecision:
    """The reply of an RTM_GETROUTE for one destination."""
    return RouteDecision(names.get(m.get_attr("RTA_OIF"), "?"), m.get_attr("RTA_GATEWAY"), m.get_attr("RTA_PREFSRC"),
                         m["type"] == RTN_LOCAL)


# -- requests --------------------------------------------------------------------------------------------------------
def _family(msg_class: type, family: int) -> nlmsg:
    m = msg_class()
    m["family"] = family
    return m


def link(rt: Rtnl, name: str) -> Link | None:
    """Link ``name`` of the namespace behind ``rt`` (one request, no dump), or None if there is none."""
    try:
        raw = rt.query(msgs.link_get(name), RTM_GETLINK, obj=name)
    except NetlinkError as e:
        if e.errno in (errno.ENODEV, errno.ENOENT):
            return None
        raise
    return decode_links(raw).get(name)


def addresses_of(rt: Rtnl, name: str) -> list[Addr]:
    """The IPv4 addresses of link ``name`` (its index from the reply's header, then one address dump; [] if there
    is no such link)."""
    try:
        idx = rt.link_index(name)
    except NetlinkError:
        return []
    raw = rt.query(_family(ifaddrmsg, socket.AF_INET), RTM_GETADDR, dump=True)
    return [a for a in decode_addrs(raw, {idx: name}) if a.index == idx]


class Snapshot:
    """What one namespace holds, each part dumped once when first read. Give ``rt`` (a socket the caller owns) or
    ``ns`` (a namespace name or fd: the snapshot opens its own socket when it first needs it; ``close`` ends it).
    ``label`` names the namespace in messages (``node-1``, ``web-1``, ``underlay``)."""

    def __init__(self, rt: Rtnl | None = None, *, ns: str | int | None = None, label: str | None = None) -> None:
        if rt is None and ns is None:
            raise TypeError("a Snapshot needs a socket (rt) or a namespace (ns)")
        self._rt, self._own = rt, rt is None
        self.ns = ns
        self.label = label or (ns if isinstance(ns, str) else rt.label if rt else "")

    @property
    def rt(self) -> Rtnl:
        if self._rt is None:
            assert self.ns is not None
            self._rt = Rtnl.in_ns(self.ns)
        return self._rt

    def close(self) -> None:
        if self._own and self._rt is not None:
            self._rt.close()
            self._rt = None

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dump(self, msg_class: type, family: int, mtype: int) -> list[nlmsg]:
        return self.rt.query(_family(msg_class, family), mtype, dump=True)

    # -- links ----------------------------------------------------------------------------------------------------
    @cached_property
    def links(self) -> dict[str, Link]:
        return decode_links(self.rt.query(msgs.link_dump(), RTM_GETLINK, dump=True))

    @cached_property
    def names(self) -> dict[int, str]:
        """Link index → name."""
        return {link.index: link.name for link in self.links.values()}

    def by_index(self, index: int | None) -> Link | None:
        name = self.names.get(index) if index is not None else None
        return self.links.get(name) if name is not None else None

    def ports(self, bridge: str) -> list[Link]:
        return [link for link in self.links.values() if link.master == bridge]

    def counters(self) -> dict[str, tuple[int, int]]:
        """(rx_packets, tx_packets) per interface, read now."""
        return decode_counters(self.rt.query(msgs.link_dump(), RTM_GETLINK, dump=True))

    # -- addresses, routes ----------------------------------------------------------------------------------------
    @cached_property
    def addrs(self) -> list[Addr]:
        return decode_addrs(self._dump(ifaddrmsg, socket.AF_INET, RTM_GETADDR), self.names)

    def local_dev(self, ip: str) -> str | None:
        """The device holding ``ip``, if the namespace holds it."""
        return next((a.dev for a in self.addrs if a.ip == ip), None)

    @cached_property
    def routes(self) -> list[Route]:
        return decode_routes(self._dump(rtmsg, socket.AF_INET, RTM_GETROUTE), self.names)

    def match_route(self, dst: str, dev: str | None = None) -> Route | None:
        """The longest-prefix unicast route covering ``dst`` (on ``dev`` if given)."""
        addr = ipaddress.IPv4Address(dst)
        cands = [r for r in self.routes if addr in r.dst and r.type == RTN_UNICAST and (dev is None or r.dev == dev)]
        return max(cands, key=lambda r: r.dst.prefixlen, default=None)

    def route_get(self, dst: str) -> RouteDecision:
        """What the kernel decides for a packet to ``dst`` (``ip route get``); NoRouteError if nothing matches."""
        rm = _family(rtmsg, socket.AF_INET)
        rm["dst_len"] = 32
        rm["attrs"] = [("RTA_DST", dst)]
        try:
            m = self.rt.query(rm, RTM_GETROUTE, obj=f"route to {dst}")[0]
        except NetlinkError as e:
            if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL):
                raise NoRouteError(f"{self.label} has no route to {dst}", obj=self.label, errno=e.errno) from None
            raise
        return decode_decision(m, self.names)

    # -- neighbours, FDB ------------------------------------------------------------------------------------------
    @cached_property
    def neighs(self) -> list[Neigh]:
        return decode_neighs(self._dump(ndmsg, socket.AF_INET, RTM_GETNEIGH), self.names)

    def neigh(self, dev: str, ip: str) -> Neigh | None:
        return next((n for n in self.neighs if n.dev == dev and n.ip == ip), None)

    @cached_property
    def fdb(self) -> list[Fdb]:
        return decode_fdb(self._dump(ndmsg, msgs.AF_BRIDGE, RTM_GETNEIGH), self.names)

    def fdb_port(self, bridge: str, mac: str) -> Fdb | None:
        """The bridge FDB entry that says which port of ``bridge`` leads to ``mac`` (learned or static)."""
        mac = mac.lower()
        return next((f for f in self.fdb if f.master == bridge and f.mac.lower() == mac and f.dev != bridge), None)

    def vtep(self, dev: str, mac: str) -> Fdb | None:
        """The VXLAN FDB entry (MAC → remote VTEP IP) on ``dev``."""
        mac = mac.lower()
        return next((f for f in self.fdb if f.dev == dev and f.mac.lower() == mac and f.dst), None)
