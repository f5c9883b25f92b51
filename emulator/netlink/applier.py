"""The one idempotent applier: make a namespace's links, addresses, neighbours, FDB and routes match a ``NsState``.

``observe`` dumps what the namespace holds (four dumps), ``desired.plan`` computes the difference (pure), and
``apply`` sends the operations in at most three batches (links; addresses and forwarding entries; routes), so
re-applying an unchanged state costs four dumps and no change. Running it twice is always safe.
"""
from __future__ import annotations

import os
import socket

from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_GETNEIGH, RTM_GETROUTE
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from emulator.errors import NetlinkError
from emulator.netlink import msgs, netns
from emulator.netlink.desired import (AddrSpec, CableSpec, FdbSpec, LinkSpec, NeighSpec, NsState, Observed, ObservedLink, Op,
                                      RouteSpec, VxlanSpec, plan)
from emulator.netlink.rtnl import Request, Rtnl
from pyroute2.netlink.rtnl import RTM_GETADDR
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg


def _links(rt: Rtnl) -> dict[str, ObservedLink]:
    raw = rt.query(msgs.link_dump(), RTM_GETLINK, dump=True)
    names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in raw}
    out: dict[str, ObservedLink] = {}
    for m in raw:
        info = m.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        vx = None
        if kind == "vxlan":
            data = info.get_attr("IFLA_INFO_DATA")
            vx = VxlanSpec(vni=data.get_attr("IFLA_VXLAN_ID"), local=data.get_attr("IFLA_VXLAN_LOCAL"),
                           dev=names.get(data.get_attr("IFLA_VXLAN_LINK"), ""),
                           port=data.get_attr("IFLA_VXLAN_PORT"),
                           learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")))
        name = m.get_attr("IFLA_IFNAME")
        out[name] = ObservedLink(name=name, index=m["index"], kind=kind, mtu=m.get_attr("IFLA_MTU"),
                                 mac=m.get_attr("IFLA_ADDRESS") or "", up=bool(m["flags"] & msgs.IFF_UP), vxlan=vx)
    return out


def observe(rt: Rtnl) -> Observed:
    obs = Observed(links=_links(rt))
    by_index = {l.index: l.name for l in obs.links.values()}
    am = ifaddrmsg()
    am["family"] = socket.AF_INET
    for m in rt.query(am, RTM_GETADDR, dump=True):
        obs.addrs.add(AddrSpec(by_index.get(m["index"], ""), m.get_attr("IFA_LOCAL"), m["prefixlen"]))
    rm = rtmsg()
    rm["family"] = socket.AF_INET
    for m in rt.query(rm, RTM_GETROUTE, dump=True):
        table = m.get_attr("RTA_TABLE") or m["table"]
        if table != msgs.RT_TABLE_MAIN or m["proto"] != msgs.RTPROT_BOOT:
            continue
        dst = f"{m.get_attr('RTA_DST') or '0.0.0.0'}/{m['dst_len']}"
        obs.routes.add(RouteSpec(dst=dst, dev=by_index.get(m.get_attr("RTA_OIF"), ""),
                                 gateway=m.get_attr("RTA_GATEWAY"), onlink=bool(m["flags"] & msgs.RTNH_F_ONLINK)))
    nm = ndmsg()
    nm["family"] = socket.AF_INET
    for m in rt.query(nm, RTM_GETNEIGH, dump=True):
        if m["state"] & msgs.NUD_PERMANENT and m.get_attr("NDA_LLADDR"):
            obs.neighs.add(NeighSpec(by_index.get(m["ifindex"], ""), m.get_attr("NDA_DST"), m.get_attr("NDA_LLADDR")))
    vx_devs = {l.index for l in obs.links.values() if l.kind == "vxlan"}
    if vx_devs:
        fm = ndmsg()
        fm["family"] = msgs.AF_BRIDGE
        for m in rt.query(fm, RTM_GETNEIGH, dump=True):
            if m["ifindex"] in vx_devs and m["state"] & msgs.NUD_PERMANENT and m.get_attr("NDA_DST"):
                obs.fdbs.add(FdbSpec(by_index[m["ifindex"]], m.get_attr("NDA_LLADDR"), m.get_attr("NDA_DST")))
    return obs


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
        reqs.append(msgs.link_set(links[spec.name].index, spec.name, up=spec.up, mtu=spec.mtu))
    return reqs


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
        current.links = _links(rt)
    idx = {name: l.index for name, l in current.links.items()}
    mid: list[Request] = []
    routes: list[Request] = []
    for op in ops:
        w = op.what
        if isinstance(w, AddrSpec):
            mid.append(msgs.addr_add(idx[w.dev], w.ip, w.prefixlen, w.dev, replace=True))
        elif isinstance(w, FdbSpec):
            f = msgs.fdb_replace if op.action == "add" else msgs.fdb_del
            mid.append(f(idx[w.dev], w.mac, w.dst, f"fdb {w.mac} dev {w.dev}"))
        elif isinstance(w, NeighSpec):
            if op.action == "add":
                mid.append(msgs.neigh_replace(idx[w.dev], w.ip, w.mac, f"neigh {w.ip} dev {w.dev}"))
            elif w.dev in idx:
                mid.append(msgs.neigh_del(idx[w.dev], w.ip, w.mac, f"neigh {w.ip} dev {w.dev}"))
        elif isinstance(w, RouteSpec):
            net = w.network
            if op.action == "add":
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
    links = _links(rt)
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
