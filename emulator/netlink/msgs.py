"""Builders of the rtnetlink requests podlab sends, as pyroute2 messages wrapped in ``Request``.

One function per kernel operation, named as ``ip`` would name it (``link_add_veth`` ~ ``ip link add ... type
veth peer ...``). They only build messages; ``Rtnl.batch`` sends them.
"""
from __future__ import annotations

import socket
import struct

from pyroute2.netlink.rtnl import (RTM_DELLINK, RTM_DELNEIGH, RTM_DELROUTE, RTM_GETLINK, RTM_NEWADDR,
                                   RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from emulator.netlink.rtnl import CREATE, REPLACE, Request, ok_exists, ok_missing

IFF_UP = 1
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 4
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
AF_BRIDGE = 7


def _link(index: int = 0, up: bool | None = None, attrs: list | None = None) -> ifinfmsg:
    m = ifinfmsg()
    m["index"] = index
    if up is not None:
        m["flags"] = IFF_UP if up else 0
        m["change"] = IFF_UP
    m["attrs"] = attrs or []
    return m


def link_get(name: str) -> ifinfmsg:
    return _link(attrs=[("IFLA_IFNAME", name)])


def link_dump() -> ifinfmsg:
    return _link()


def link_add_bridge(name: str, mtu: int, mac: str | None = None, up: bool = True) -> Request:
    attrs: list = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu),
                   ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})]
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    return Request(_link(up=up, attrs=attrs), RTM_NEWLINK, CREATE, obj=name)


def link_add_veth(name: str, peer: str, peer_ns_fd: int | None, mtu: int, master: int | None = None,
                  up: bool = True, mac: str | None = None, peer_mac: str | None = None) -> Request:
    """``ip link add NAME mtu M numtxqueues 1 numrxqueues 1 [master B] type veth peer name PEER [netns FD]``
    (the peer comes up later: the kernel refuses IFF_UP on a peer created in another namespace).

    One queue each way, asked for at creation: a veth gets one per CPU otherwise and the kernel then trims the
    queues in use to one, waiting for an RCU grace period while it holds the RTNL lock, which every other
    netlink request and every new namespace of the machine then waits for. The queues in use are the same."""
    queues = [("IFLA_NUM_TX_QUEUES", 1), ("IFLA_NUM_RX_QUEUES", 1)]
    peer_attrs: list = [("IFLA_IFNAME", peer), ("IFLA_MTU", mtu), *queues]
    if peer_mac:
        peer_attrs.append(("IFLA_ADDRESS", peer_mac))
    if peer_ns_fd is not None:
        peer_attrs.append(("IFLA_NET_NS_FD", peer_ns_fd))
    peer_msg = {"index": 0, "flags": 0, "change": 0, "family": 0, "ifi_type": 0, "attrs": peer_attrs}
    attrs: list = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu), *queues]
    if master:
        attrs.append(("IFLA_MASTER", master))
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                              ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_msg)]})]}))
    return Request(_link(up=up, attrs=attrs), RTM_NEWLINK, CREATE, obj=name)


def link_add_vxlan(name: str, vni: int, local: str, dev_index: int, port: int, mtu: int, mac: str,
                   learning: bool = False, up: bool = True) -> Request:
    data = [("IFLA_VXLAN_ID", vni), ("IFLA_VXLAN_LOCAL", local), ("IFLA_VXLAN_LINK", dev_index),
            ("IFLA_VXLAN_PORT", port), ("IFLA_VXLAN_LEARNING", 1 if learning else 0)]
    attrs = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu), ("IFLA_ADDRESS", mac),
             ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", {"attrs": data})]})]
    return Request(_link(up=up, attrs=attrs), RTM_NEWLINK, CREATE, obj=name)


def link_set(index: int, obj: str, up: bool | None = None, mtu: int | None = None, master: int | None = None,
             name: str | None = None, ns_fd: int | None = None, mac: str | None = None) -> Request:
    attrs: list = []
    if mac is not None:
        attrs.append(("IFLA_ADDRESS", mac))
    if mtu is not None:
        attrs.append(("IFLA_MTU", mtu))
    if master is not None:
        attrs.append(("IFLA_MASTER", master))
    if name is not None:
        attrs.append(("IFLA_IFNAME", name))
    if ns_fd is not None:
        attrs.append(("IFLA_NET_NS_FD", ns_fd))
    return Request(_link(index=index, up=up, attrs=attrs), RTM_NEWLINK, 0, obj=obj)


def link_set_bridge_port(index: int, obj: str, hairpin: bool, mcast_flood: bool = True) -> Request:
    """``ip link set DEV type bridge_slave hairpin on [mcast_flood off]`` (the CNI bridge plugin's hairpinMode;
    see ``cni.bridge`` for why its ports do not flood multicast)."""
    port = [("IFLA_BRPORT_MODE", 1 if hairpin else 0)]
    if not mcast_flood:
        port.append(("IFLA_BRPORT_MCAST_FLOOD", 0))
    attrs = [("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"),
                                          ("IFLA_INFO_SLAVE_DATA", {"attrs": port})]})]
    return Request(_link(index=index, attrs=attrs), RTM_NEWLINK, 0, obj=obj)


def link_set_bridge_port_by_name(name: str, hairpin: bool, mcast_flood: bool = True) -> Request:
    """As ``link_set_bridge_port``, naming the device (so it can share a batch with the request creating it)."""
    req = link_set_bridge_port(0, name, hairpin, mcast_flood)
    req.msg["attrs"].insert(0, ("IFLA_IFNAME", name))
    return req


def link_attr_u32(message: bytes, attr: int) -> int | None:
    """A 32-bit attribute of a raw RTM_NEWLINK message (e.g. IFLA_LINK of an echoed veth: its peer's index)."""
    off = 32  # nlmsghdr (16) + ifinfomsg (16)
    while off + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, off)
        if length < 4:
            return None
        if kind & 0x3FFF == attr and length >= 8:
            return struct.unpack_from("=I", message, off + 4)[0]
        off += (length + 3) & ~3
    return None


def link_del_by_name(name: str) -> Request:
    return Request(_link(attrs=[("IFLA_IFNAME", name)]), RTM_DELLINK, 0, obj=name, ok_errnos=ok_missing())


def link_del(index: int, obj: str) -> Request:
    return Request(_link(index=index), RTM_DELLINK, 0, obj=obj, ok_errnos=ok_missing())


def addr_add(index: int, ip: str, prefixlen: int, obj: str, replace: bool = False) -> Request:
    m = ifaddrmsg()
    m["family"] = socket.AF_INET
    m["prefixlen"] = prefixlen
    m["index"] = index
    m["attrs"] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    return Request(m, RTM_NEWADDR, REPLACE if replace else CREATE, obj=f"{obj} {ip}/{prefixlen}",
                   ok_errnos=ok_exists() if replace else ())


def _route(dst: str, dst_len: int, gateway: str | None, oif: int | None, onlink: bool, proto: int,
           table: int, scope: int | None) -> rtmsg:
    m = rtmsg()
    m["family"] = socket.AF_INET
    m["dst_len"] = dst_len
    m["table"] = table if table < 256 else 252
    m["proto"] = proto
    m["type"] = 1  # unicast
    m["scope"] = scope if scope is not None else (RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK)
    m["flags"] = RTNH_F_ONLINK if onlink else 0
    attrs: list = []
    if dst_len:
        attrs.append(("RTA_DST", dst))
    if gateway:
        attrs.append(("RTA_GATEWAY", gateway))
    if oif:
        attrs.append(("RTA_OIF", oif))
    if table >= 256:
        attrs.append(("RTA_TABLE", table))
    m["attrs"] = attrs
    return m


def route_add(dst: str, dst_len: int, obj: str, gateway: str | None = None, oif: int | None = None,
              onlink: bool = False, proto: int = RTPROT_BOOT, table: int = RT_TABLE_MAIN,
              replace: bool = True, scope: int | None = None) -> Request:
    m = _route(dst, dst_len, gateway, oif, onlink, proto, table, scope)
    return Request(m, RTM_NEWROUTE, REPLACE if replace else CREATE, obj=obj)


def route_del(dst: str, dst_len: int, obj: str, table: int = RT_TABLE_MAIN) -> Request:
    m = _route(dst, dst_len, None, None, False, 0, table, 0)
    m["type"] = 0
    return Request(m, RTM_DELROUTE, 0, obj=obj, ok_errnos=ok_missing())


def _neigh(index: int, ip: str | None, mac: str, family: int, flags: int, dst: str | None) -> ndmsg:
    m = ndmsg()
    m["family"] = family
    m["ifindex"] = index
    m["state"] = NUD_PERMANENT
    m["flags"] = flags
    attrs: list = [("NDA_LLADDR", mac)]
    if ip:
        attrs.insert(0, ("NDA_DST", ip))
    if dst:
        attrs.append(("NDA_DST", dst))
    m["attrs"] = attrs
    return m


def neigh_replace(index: int, ip: str, mac: str, obj: str) -> Request:
    """``ip neigh replace IP lladdr MAC dev DEV nud permanent``."""
    return Request(_neigh(index, ip, mac, socket.AF_INET, 0, None), RTM_NEWNEIGH, REPLACE, obj=obj)


def neigh_del(index: int, ip: str, mac: str, obj: str) -> Request:
    return Request(_neigh(index, ip, mac, socket.AF_INET, 0, None), RTM_DELNEIGH, 0, obj=obj,
                   ok_errnos=ok_missing())


def fdb_replace(index: int, mac: str, dst: str, obj: str) -> Request:
    """``bridge fdb replace MAC dev DEV dst IP self permanent`` (a VXLAN forwarding entry)."""
    return Request(_neigh(index, None, mac, AF_BRIDGE, NTF_SELF, dst), RTM_NEWNEIGH, REPLACE, obj=obj)


def fdb_del(index: int, mac: str, dst: str, obj: str) -> Request:
    return Request(_neigh(index, None, mac, AF_BRIDGE, NTF_SELF, dst), RTM_DELNEIGH, 0, obj=obj,
                   ok_errnos=ok_missing())


__all__ = [n for n in dir() if n.startswith(("link_", "addr_", "route_", "neigh_", "fdb_"))] + [
    "RTM_GETLINK", "IFF_UP"]
