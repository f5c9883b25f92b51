"""Desired network state of one namespace, as plain frozen data, and the pure diff against what exists.

Routing modes and the lab builder *compute* a ``NsState`` (no kernel access); ``applier.apply`` reads what the
namespace holds, calls ``plan`` (pure, unit-tested) and sends the resulting operations in batches. Anything the
state does not mention is left alone, except inside the *managed* scope the state declares: routes of protocol
``boot`` whose destination lies in ``managed_prefixes``, and permanent neighbour / FDB entries on
``managed_devices``. That scope is what makes re-applying after a topology change remove stale routes without
ever touching routes the lab does not own (connected routes, BIRD's routes, a user's experiment on another
prefix).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class VxlanSpec:
    vni: int
    local: str
    dev: str
    port: int
    learning: bool = False


@dataclass(frozen=True)
class LinkSpec:
    """A link the namespace must hold. ``kind`` None means it exists already (made by someone else: eth0)."""

    name: str
    kind: Literal["bridge", "vxlan"] | None = None
    mtu: int | None = None
    mac: str | None = None
    up: bool = True
    vxlan: VxlanSpec | None = None


@dataclass(frozen=True)
class AddrSpec:
    dev: str
    ip: str
    prefixlen: int


@dataclass(frozen=True)
class RouteSpec:
    dst: str  # "10.244.2.0/24" or "0.0.0.0/0"
    dev: str
    gateway: str | None = None
    onlink: bool = False

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.dst)


@dataclass(frozen=True)
class NeighSpec:
    dev: str
    ip: str
    mac: str


@dataclass(frozen=True)
class FdbSpec:
    dev: str
    mac: str
    dst: str


@dataclass(frozen=True)
class CableSpec:
    """A veth cable from the namespace it is applied in to another: end ``name`` here (a port of bridge ``master``
    if given), end ``peer`` in namespace ``peer_ns``. It joins a node or the router to the underlay
    LAN; the far end's addresses and routes are that namespace's own ``NsState``."""
    name: str
    peer: str
    peer_ns: str
    mtu: int
    master: str | None = None


@dataclass(frozen=True)
class NsState:
    links: tuple[LinkSpec, ...] = ()
    addrs: tuple[AddrSpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    neighs: tuple[NeighSpec, ...] = ()
    fdbs: tuple[FdbSpec, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    managed_prefixes: tuple[str, ...] = ()
    managed_devices: tuple[str, ...] = ()

    def merged(self, other: "NsState") -> "NsState":
        return NsState(*(getattr(self, f) + getattr(other, f) for f in (
            "links", "addrs", "routes", "neighs", "fdbs", "sysctls", "managed_prefixes", "managed_devices")))


@dataclass(frozen=True)
class ObservedLink:
    name: str
    index: int
    kind: str | None
    mtu: int
    mac: str
    up: bool
    vxlan: VxlanSpec | None = None


@dataclass
class Observed:
    """What a namespace holds now, in the same vocabulary as ``NsState`` (filled by the applier)."""

    links: dict[str, ObservedLink] = field(default_factory=dict)
    addrs: set[AddrSpec] = field(default_factory=set)
    routes: set[RouteSpec] = field(default_factory=set)  # main table, proto boot only
    neighs: set[NeighSpec] = field(default_factory=set)  # permanent only
    fdbs: set[FdbSpec] = field(default_factory=set)  # permanent, with a dst


@dataclass(frozen=True)
class Op:
    action: Literal["add", "set", "del", "recreate"]
    what: LinkSpec | AddrSpec | RouteSpec | NeighSpec | FdbSpec


def _managed_route(r: RouteSpec, prefixes: list[ipaddress.IPv4Network]) -> bool:
    return any(r.network.subnet_of(p) for p in prefixes)


def plan(current: Observed, desired: NsState) -> list[Op]:
    """Operations that make ``current`` match ``desired``, in an order the kernel accepts."""
    ops: list[Op] = []
    for link in desired.links:
        have = current.links.get(link.name)
        if have is None:
            ops.append(Op("add", link))
        elif link.kind and (have.kind != link.kind or (link.vxlan and have.vxlan != link.vxlan)):
            ops.append(Op("recreate", link))
        elif (link.mtu and have.mtu != link.mtu) or have.up != link.up or (link.mac and have.mac != link.mac):
            ops.append(Op("set", link))
    want_fdb, want_neigh = set(desired.fdbs), set(desired.neighs)
    managed_devs = set(desired.managed_devices)
    ops += [Op("add", a) for a in desired.addrs if a not in current.addrs]
    ops += [Op("del", f) for f in sorted(current.fdbs, key=repr) if f.dev in managed_devs and f not in want_fdb]
    ops += [Op("add", f) for f in desired.fdbs if f not in current.fdbs]
    ops += [Op("del", n) for n in sorted(current.neighs, key=repr) if n.dev in managed_devs and n not in want_neigh]
    ops += [Op("add", n) for n in desired.neighs if n not in current.neighs]
    prefixes = [ipaddress.IPv4Network(p) for p in desired.managed_prefixes]
    want_routes = {r.dst: r for r in desired.routes}
    for r in sorted(current.routes, key=repr):
        if _managed_route(r, prefixes) and r.dst not in want_routes:
            ops.append(Op("del", r))
    ops += [Op("add", r) for r in desired.routes if r not in current.routes]
    return ops
