"""The one idempotent applier: make a namespace's links, addresses, neighbours, FDB and routes match a ``NsState``.

``observe`` dumps what the namespace holds (four dumps), ``desired.plan`` computes the difference (pure), and
``apply`` sends the operations in at most three batches (links; addresses and forwarding entries; routes), so
re-applying an unchanged state costs four dumps and no change. The per-remote-node entries (neighbour, FDB entry,
route: O(nodes²) in a lab) are encoded from templates (``templates.fast``), not by pyroute2 each time. Running it twice is always safe.
"""
from __future__ import annotations

import dataclasses
import os

from emulator.errors import NetlinkError
from emulator.netlink import msgs, netns
from emulator.netlink.desired import (AddrSpec, CableSpec, FdbSpec, LinkSpec, NeighSpec, NsState, Observed, ObservedLink, Op,
                                      RouteSpec, VxlanSpec, plan)
from emulator.netlink.observe import Link, Snapshot
from emulator.netlink.rtnl import Request, Rtnl
from emulator.netlink.templates import fast


def _observed_link(link: Link) -> ObservedLink:
    vx = None
    if link.kind == "vxlan":
        vx = VxlanSpec(vni=link.vni or 0, local=link.vxlan_local or "", dev=link.vxlan_dev or "",
                       port=link.vxlan_port or 0, learning=bool(link.learning))
    return ObservedLink(name=link.name, index=link.index, kind=link.kind or None, mtu=link.mtu, mac=link.mac,
                        up=link.up, vxlan=vx)


def _links(snap: Snapshot) -> dict[str, ObservedLink]:
    return {name: _observed_link(link) for name, link in snap.links.items()}


def observed(snap: Snapshot) -> Observed:
    """What ``snap`` shows, in the vocabulary of ``NsState``: the lab's own kind of state only (main-table routes
    of protocol boot, permanent neighbours with an address, permanent FDB entries of VXLAN devices with a
    remote)."""
    obs = Observed(links=_links(snap))
    obs.addrs = {AddrSpec(a.dev, a.ip, a.prefixlen) for a in snap.addrs}
    obs.routes = {RouteSpec(dst=str(r.dst), dev=r.dev, gateway=r.gateway, onlink=r.onlink) for r in snap.routes
                  if r.protocol == msgs.RTPROT_BOOT}
    obs.neighs = {NeighSpec(n.dev, n.ip, n.mac) for n in snap.neighs if n.permanent and n.mac}
    vx_devs = {link.name for link in snap.links.values() if link.kind == "vxlan"}
    if vx_devs:
        obs.fdbs = {FdbSpec(f.dev, f.mac, f.dst) for f in snap.fdb if f.dev in vx_devs and f.permanent and f.dst}
    return obs


def observe(rt: Rtnl) -> Observed:
    """Dump what the namespace behind ``rt`` holds (links, addresses, routes, neighbours, and FDB where it has a
    VXLAN device) and return it as ``observed`` does."""
    return observed(Snapshot(rt))


def _link_ops(op: Op, links: dict[str, ObservedLink]) -> list[Request]:
    spec = op.what
    assert isinstance(spec, LinkSpec)
    reqs: list[Request] = []
    if op.action == "recreate":
        reqs.append(msgs.link_del(links[spec.name].index, spec.name))
    if op.action in ("add", "recreate"):
        if spec.kind == "bridge":
            reqs.append(msgs.link_add_bridge(spec.name, spec.mtu or 1500, spec.mac, spec.up))
        elif spec.kind == "vxlan" and spec.vxlan:
            v = spec.vxlan
            reqs.append(msgs.link_add_vxlan(spec.name, v.vni, v.local, links[v.dev].index, v.port,
                                            spec.mtu or 1450, spec.mac or "", v.learning, spec.up))
        else:
            raise NetlinkError(f"link {spec.name} is missing and has no kind to create it with (was it deleted by "
                               "hand? only the lab's own links can be re-made)", obj=spec.name)
    else:
        reqs.append(msgs.link_set(links[spec.name].index, spec.name, up=spec.up, mtu=spec.mtu,
                                  mac=spec.mac if spec.mac and spec.mac != links[spec.name].mac else None))
    return reqs


def _named(req: Request, obj: str) -> Request:
    """A templated request (``templates.fast``) named as errors should name it."""
    return dataclasses.replace(req, obj=obj)


def apply(rt: Rtnl, desired: NsState, ns_name: str | None = None) -> list[Op]:
    """Make the namespace behind ``rt`` match ``desired``; return the operations that were needed."""
    if ns_name and desired.sysctls:
        with netns.entered(ns_name):
            for key, value in desired.sysctls:
                netns.write_sysctl(key, value)
    current = observe(rt)
    ops = plan(current, desired)
    if not ops:
        return ops
    link_reqs = [r for op in ops if isinstance(op.what, LinkSpec) for r in _link_ops(op, current.links)]
    if link_reqs:
        rt.batch(link_reqs)
        current.links = _links(Snapshot(rt))
    idx = {name: l.index for name, l in current.links.items()}
    mid: list[Request] = []
    routes: list[Request] = []
    for op in ops:
        w = op.what
        if isinstance(w, AddrSpec):
            mid.append(msgs.addr_add(idx[w.dev], w.ip, w.prefixlen, w.dev, replace=True))
        elif isinstance(w, FdbSpec):
            obj = f"fdb {w.mac} dev {w.dev}"
            if op.action == "add":
                mid.append(_named(fast("fdb", lambda i, mac, dst: msgs.fdb_replace(i, mac, dst, "fdb"),
                                       i=idx[w.dev], mac=w.mac, dst=w.dst), obj))
            else:
                mid.append(msgs.fdb_del(idx[w.dev], w.mac, w.dst, obj))
        elif isinstance(w, NeighSpec):
            if op.action == "add":
                mid.append(_named(fast("neigh", lambda i, ip, mac: msgs.neigh_replace(i, ip, mac, "neigh"),
                                       i=idx[w.dev], ip=w.ip, mac=w.mac), f"neigh {w.ip} dev {w.dev}"))
            elif w.dev in idx:
                mid.append(msgs.neigh_del(idx[w.dev], w.ip, w.mac, f"neigh {w.ip} dev {w.dev}"))
        elif isinstance(w, RouteSpec):
            net = w.network
            if op.action == "add" and w.gateway:
                plen, onlink = net.prefixlen, w.onlink
                routes.append(_named(fast(f"route /{plen} via onlink={onlink}", lambda dst, gw, i: msgs.route_add(
                    dst, plen, "route", gateway=gw, oif=i, onlink=onlink), dst=str(net.network_address),
                    gw=w.gateway, i=idx[w.dev]), f"route {w.dst}"))
            elif op.action == "add":
                routes.append(msgs.route_add(str(net.network_address), net.prefixlen, f"route {w.dst}",
                                             gateway=w.gateway, oif=idx[w.dev], onlink=w.onlink))
            else:
                routes.append(msgs.route_del(str(net.network_address), net.prefixlen, f"route {w.dst}"))
    rt.batch(mid)
    rt.batch(routes)
    return ops


def plug(rt: Rtnl, cables: list[CableSpec]) -> list[str]:
    """Make the cables of the namespace behind ``rt`` exist (one batch; a cable whose end is there is left as it
    is, so plugging twice is safe); return the names of the ends created."""
    links = Snapshot(rt).links
    todo = [c for c in cables if c.name not in links]
    fds: list[int] = []
    try:
        reqs = []
        for c in todo:
            fds.append(netns.open_fd(c.peer_ns))
            master = links[c.master].index if c.master else None
            reqs.append(msgs.link_add_veth(c.name, c.peer, fds[-1], c.mtu, master=master))
        rt.batch(reqs)
    finally:
        for fd in fds:
            os.close(fd)
    return [c.name for c in todo]
