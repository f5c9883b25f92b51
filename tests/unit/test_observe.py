"""The kernel read model's decoding (``netlink.observe``), fed the messages a kernel sends: each is built as
pyroute2 builds it, encoded to bytes and parsed back by pyroute2's rtnetlink marshal, exactly as a dump's reply
is read; no kernel, no root."""
from __future__ import annotations

import ipaddress
import socket

from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from emulator.netlink import applier, observe
from emulator.netlink.desired import AddrSpec, FdbSpec, NeighSpec, RouteSpec, VxlanSpec

AF_BRIDGE = 7


def wire(*messages) -> list:
    """``messages`` as a dump's reply: encoded in one buffer and parsed back."""
    data = b""
    for seq, m in enumerate(messages, 1):
        m["header"]["sequence_number"] = seq
        m.encode()
        data += m.data
    return list(MarshalRtnl().parse(data))


def link(index: int, name: str, kind: str | None = None, up: bool = True, data: list | None = None, **attrs):
    m = ifinfmsg()
    m["header"]["type"] = RTM_NEWLINK
    m["index"], m["flags"] = index, 1 if up else 0
    m["attrs"] = [("IFLA_IFNAME", name), *((k, v) for k, v in attrs.items())]
    if kind:
        info = [("IFLA_INFO_KIND", kind)] + ([("IFLA_INFO_DATA", {"attrs": data})] if data else [])
        m["attrs"].append(("IFLA_LINKINFO", {"attrs": info}))
    return m


def node_links() -> list:
    return wire(
        link(1, "lo", IFLA_MTU=65536, IFLA_OPERSTATE="UNKNOWN"),
        link(2, "eth0", "veth", IFLA_MTU=1500, IFLA_ADDRESS="0a:58:c0:a8:38:0b", IFLA_LINK=5,
             IFLA_OPERSTATE="UP", IFLA_STATS64={"rx_packets": 10, "tx_packets": 20}),
        link(3, "cni0", "bridge", IFLA_MTU=1450, IFLA_ADDRESS="0a:58:0a:f4:01:01"),
        link(4, "flannel.1", "vxlan", IFLA_MTU=1450, IFLA_ADDRESS="02:00:00:00:00:01", data=[
            ("IFLA_VXLAN_ID", 1), ("IFLA_VXLAN_LOCAL", "192.168.56.11"), ("IFLA_VXLAN_LINK", 2),
            ("IFLA_VXLAN_PORT", 8472), ("IFLA_VXLAN_LEARNING", 0)]),
        link(7, "veth1a2b3c4d", "veth", up=False, IFLA_MTU=1450, IFLA_MASTER=3, IFLA_IFALIAS="podlab: failed at T",
             IFLA_OPERSTATE="DOWN"))


def test_links_decode_kind_master_vxlan_alias_and_peer() -> None:
    links = observe.decode_links(node_links())
    assert list(links) == ["lo", "eth0", "cni0", "flannel.1", "veth1a2b3c4d"]
    assert links["lo"].kind == "loopback" and links["lo"].operstate == "UNKNOWN"
    eth0 = links["eth0"]
    assert (eth0.index, eth0.kind, eth0.mac, eth0.mtu, eth0.up, eth0.master, eth0.peer_index) == \
        (2, "veth", "0a:58:c0:a8:38:0b", 1500, True, None, 5)
    vx = links["flannel.1"]
    assert (vx.vni, vx.vxlan_local, vx.vxlan_dev, vx.vxlan_port, vx.learning) == (1, "192.168.56.11", "eth0", 8472,
                                                                                   False)
    port = links["veth1a2b3c4d"]
    assert (port.master, port.up, port.alias, port.operstate) == ("cni0", False, "podlab: failed at T", "DOWN")
    assert observe.decode_counters(node_links()) == {"eth0": (10, 20)}


def addr(index: int, ip: str, prefixlen: int, family: int = socket.AF_INET):
    m = ifaddrmsg()
    m["header"]["type"] = RTM_NEWADDR
    m["family"], m["index"], m["prefixlen"] = family, index, prefixlen
    m["attrs"] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    return m


def route(dst: str | None, dst_len: int, oif: int | None = None, gateway: str | None = None, proto: int = 3,
          onlink: bool = False, table: int = 254, type_: int = 1, scope: int = 0):
    m = rtmsg()
    m["header"]["type"] = RTM_NEWROUTE
    m["family"], m["dst_len"], m["table"], m["proto"], m["type"], m["scope"] = (socket.AF_INET, dst_len, table,
                                                                                proto, type_, scope)
    m["flags"] = 4 if onlink else 0
    m["attrs"] = ([("RTA_DST", dst)] if dst else []) + ([("RTA_OIF", oif)] if oif else []) + \
        ([("RTA_GATEWAY", gateway)] if gateway else []) + [("RTA_TABLE", table)]
    return m


def neigh(index: int, lladdr: str, state: int, ip: str | None = None, dst: str | None = None,
          master: int | None = None, family: int = socket.AF_INET):
    m = ndmsg()
    m["header"]["type"] = RTM_NEWNEIGH
    m["family"], m["ifindex"], m["state"] = family, index, state
    m["attrs"] = ([("NDA_DST", ip)] if ip else []) + [("NDA_LLADDR", lladdr)] + \
        ([("NDA_DST", dst)] if dst else []) + ([("NDA_MASTER", master)] if master else [])
    return m


NAMES = {1: "lo", 2: "eth0", 3: "cni0", 4: "flannel.1", 7: "veth1a2b3c4d"}


def test_addresses_resolve_their_device() -> None:
    addrs = observe.decode_addrs(wire(addr(1, "127.0.0.1", 8), addr(3, "10.244.1.1", 24), addr(9, "10.9.9.9", 32)),
                                 NAMES)
    assert [(a.dev, a.text(), a.index) for a in addrs] == [("lo", "127.0.0.1/8", 1), ("cni0", "10.244.1.1/24", 3),
                                                          ("", "10.9.9.9/32", 9)]
    assert addrs[1].interface == ipaddress.IPv4Interface("10.244.1.1/24")


def test_routes_main_table_only_with_origin_and_text() -> None:
    routes = observe.decode_routes(wire(
        route(None, 0, oif=2, gateway="192.168.56.1"),
        route("10.244.1.0", 24, oif=3, proto=2, scope=253),
        route("10.244.2.0", 24, oif=4, gateway="10.244.2.0", onlink=True),
        route("10.244.3.0", 24, oif=2, gateway="192.168.56.13", proto=12),
        route("10.244.4.0", 24, type_=7),
        route("10.244.1.1", 32, oif=3, table=255, type_=2, proto=2)), NAMES)
    assert [r.text() for r in routes] == [
        "default via 192.168.56.1 dev eth0",
        "10.244.1.0/24 dev cni0 proto kernel scope link",
        "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
        "10.244.3.0/24 via 192.168.56.13 dev eth0 proto bird",
        "10.244.4.0/24 dev ?"]
    assert [r.origin for r in routes] == ["static", "connected", "onlink", "bird", "static"]
    assert routes[4].as_dict() == {"dst": "10.244.4.0/24", "dev": "", "gateway": None, "origin": "static",
                                   "protocol": 3, "onlink": False, "type": "unreachable"}


def test_neighbours_and_fdb() -> None:
    neighs = observe.decode_neighs(wire(neigh(4, "02:00:00:00:00:02", 0x80, ip="10.244.2.0"),
                                        neigh(2, "0a:58:c0:a8:38:0c", 0x04 | 0x08, ip="192.168.56.12")), NAMES)
    assert [(n.dev, n.ip, n.mac, n.state, n.permanent) for n in neighs] == [
        ("flannel.1", "10.244.2.0", "02:00:00:00:00:02", "PERMANENT", True),
        ("eth0", "192.168.56.12", "0a:58:c0:a8:38:0c", "STALE|DELAY", False)]
    fdb = observe.decode_fdb(wire(neigh(4, "02:00:00:00:00:02", 0x80, dst="192.168.56.12", family=AF_BRIDGE),
                                  neigh(7, "0a:58:0a:f4:01:02", 0x02, master=3, family=AF_BRIDGE)), NAMES)
    assert [(f.dev, f.mac, f.dst, f.master, f.permanent) for f in fdb] == [
        ("flannel.1", "02:00:00:00:00:02", "192.168.56.12", None, True),
        ("veth1a2b3c4d", "0a:58:0a:f4:01:02", None, "cni0", False)]


def test_route_decision_reads_as_ip_route_get() -> None:
    m = route("10.244.2.3", 32, oif=4, gateway="10.244.2.0")
    m["attrs"].append(("RTA_PREFSRC", "10.244.1.0"))
    dec = observe.decode_decision(wire(m)[0], NAMES)
    assert dec == observe.RouteDecision("flannel.1", "10.244.2.0", "10.244.1.0", False)
    assert dec.text("10.244.2.3") == "10.244.2.3 via 10.244.2.0 dev flannel.1 src 10.244.1.0"


def test_the_applier_sees_only_the_lab_kind_of_state() -> None:
    """``applier.observed``: main-table routes of protocol boot, permanent neighbours, permanent VXLAN FDB
    entries with a remote; links with their VXLAN parameters in the desired state's words."""
    snap = observe.Snapshot(ns="no-such-namespace")  # never opened: every part is given below
    snap.__dict__.update(
        links=observe.decode_links(node_links()),
        addrs=observe.decode_addrs(wire(addr(3, "10.244.1.1", 24)), NAMES),
        routes=observe.decode_routes(wire(route("10.244.2.0", 24, oif=4, gateway="10.244.2.0", onlink=True),
                                          route("10.244.3.0", 24, oif=2, gateway="192.168.56.13", proto=12),
                                          route("10.244.1.0", 24, oif=3, proto=2)), NAMES),
        neighs=observe.decode_neighs(wire(neigh(4, "02:00:00:00:00:02", 0x80, ip="10.244.2.0"),
                                          neigh(2, "0a:58:c0:a8:38:0c", 0x02, ip="192.168.56.12")), NAMES),
        fdb=observe.decode_fdb(wire(neigh(4, "02:00:00:00:00:02", 0x80, dst="192.168.56.12", family=AF_BRIDGE),
                                    neigh(7, "0a:58:0a:f4:01:02", 0x80, master=3, family=AF_BRIDGE)), NAMES))
    obs = applier.observed(snap)
    assert obs.links["flannel.1"].vxlan == VxlanSpec(1, "192.168.56.11", "eth0", 8472, False)
    assert obs.links["cni0"].kind == "bridge" and obs.links["lo"].kind == "loopback"
    assert obs.addrs == {AddrSpec("cni0", "10.244.1.1", 24)}
    assert obs.routes == {RouteSpec("10.244.2.0/24", "flannel.1", "10.244.2.0", onlink=True)}
    assert obs.neighs == {NeighSpec("flannel.1", "10.244.2.0", "02:00:00:00:00:02")}
    assert obs.fdbs == {FdbSpec("flannel.1", "02:00:00:00:00:02", "192.168.56.12")}
    assert snap.by_index(3).name == "cni0" and [p.name for p in snap.ports("cni0")] == ["veth1a2b3c4d"]
    assert snap.match_route("10.244.2.7").dev == "flannel.1" and snap.local_dev("10.244.1.1") == "cni0"
    assert snap.vtep("flannel.1", "02:00:00:00:00:02").dst == "192.168.56.12"
    assert snap.fdb_port("cni0", "0A:58:0A:F4:01:02").dev == "veth1a2b3c4d"
