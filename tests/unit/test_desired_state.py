"""Desired network state is pure: routing modes compute it from the topology, ``plan`` diffs it (no kernel)."""
from __future__ import annotations

from emulator.netlink.desired import (AddrSpec, FdbSpec, LinkSpec, NeighSpec, NsState, Observed, ObservedLink,
                                      RouteSpec, VxlanSpec, plan)
from emulator.routing import full_node_state, get
from emulator.routing.base import subnet_env, vtep_mac
from emulator.topology.loader import loads

THREE = """
version: 1
name: t
routing: {mode}
nodes: [{{name: node-1}}, {{name: node-2}}, {{name: node-3}}]
"""


def topo(mode: str = "vxlan"):
    return loads(THREE.format(mode=mode), source="<t>")


def test_vxlan_state_is_flannels() -> None:
    t = topo()
    n1, n2, n3 = t.nodes
    st = get("vxlan").node_state(t, n1)
    (link,) = st.links
    assert (link.name, link.kind, link.mtu) == ("flannel.1", "vxlan", 1450)
    assert link.vxlan == VxlanSpec(vni=1, local="192.168.56.11", dev="eth0", port=8472, learning=False)
    assert st.addrs == (AddrSpec("flannel.1", "10.244.1.0", 32),)
    assert set(st.routes) == {RouteSpec("10.244.2.0/24", "flannel.1", "10.244.2.0", True),
                              RouteSpec("10.244.3.0/24", "flannel.1", "10.244.3.0", True)}
    assert NeighSpec("flannel.1", "10.244.2.0", vtep_mac(n2)) in st.neighs
    assert FdbSpec("flannel.1", vtep_mac(n3), "192.168.56.13") in st.fdbs
    assert st.managed_devices == ("flannel.1",)


def test_vtep_macs_are_stable_unicast_and_distinct() -> None:
    t = topo()
    macs = [vtep_mac(n) for n in t.nodes]
    assert len(set(macs)) == 3 and macs == [vtep_mac(n) for n in topo().nodes]
    for m in macs:
        first = int(m.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast


def test_host_gw_state_routes_via_node_ips() -> None:
    t = topo("host-gw")
    st = get("host-gw").node_state(t, t.nodes[1])
    assert set(st.routes) == {RouteSpec("10.244.1.0/24", "eth0", "192.168.56.11"),
                              RouteSpec("10.244.3.0/24", "eth0", "192.168.56.13")}
    assert not st.links and not st.fdbs and not st.neighs


def test_base_state_and_pod_mtu() -> None:
    t = topo("host-gw")
    st = full_node_state(t, t.nodes[0])
    cni0 = next(l for l in st.links if l.name == "cni0")
    assert cni0.kind == "bridge" and cni0.mtu == 1500
    assert AddrSpec("cni0", "10.244.1.1", 24) in st.addrs and AddrSpec("eth0", "192.168.56.11", 24) in st.addrs
    assert ("net.ipv4.ip_forward", "1") in st.sysctls
    assert next(l for l in full_node_state(topo(), topo().nodes[0]).links if l.name == "cni0").mtu == 1450


def test_subnet_env() -> None:
    t = topo()
    assert subnet_env(t, t.nodes[1]) == ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\n"
                                         "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")


def observed_from(st: NsState) -> Observed:
    links = {l.name: ObservedLink(l.name, i + 1, l.kind, l.mtu or 1500, l.mac or "", l.up, l.vxlan)
             for i, l in enumerate(st.links)}
    return Observed(links=links, addrs=set(st.addrs), routes=set(st.routes), neighs=set(st.neighs),
                    fdbs=set(st.fdbs))


def test_plan_of_a_matching_namespace_is_empty() -> None:
    t = topo()
    st = full_node_state(t, t.nodes[0])
    assert plan(observed_from(st), st) == []


def test_plan_removes_stale_entries_only_in_its_scope() -> None:
    t = topo()
    st = full_node_state(t, t.nodes[0])
    cur = observed_from(st)
    stale_route = RouteSpec("10.244.9.0/24", "flannel.1", "10.244.9.0", True)
    foreign_route = RouteSpec("172.16.0.0/16", "eth0", "192.168.56.1")
    cur.routes |= {stale_route, foreign_route}
    cur.neighs.add(NeighSpec("flannel.1", "10.244.9.0", "0e:00:00:00:00:09"))
    cur.neighs.add(NeighSpec("eth0", "192.168.56.99", "0e:00:00:00:00:99"))
    ops = plan(cur, st)
    assert {(o.action, o.what) for o in ops} == {("del", stale_route),
                                                 ("del", NeighSpec("flannel.1", "10.244.9.0", "0e:00:00:00:00:09"))}


def test_plan_adds_missing_and_recreates_changed_vxlan() -> None:
    t = topo()
    st = full_node_state(t, t.nodes[0])
    cur = observed_from(st)
    del cur.links["flannel.1"]
    cur.routes.clear()
    ops = plan(cur, st)
    assert ops[0].action == "add" and ops[0].what.name == "flannel.1"
    assert {o.what for o in ops if o.action == "add" and isinstance(o.what, RouteSpec)} == set(st.routes)
    cur = observed_from(st)
    vx = cur.links["flannel.1"]
    cur.links["flannel.1"] = ObservedLink(vx.name, vx.index, "vxlan", vx.mtu, vx.mac, True,
                                          VxlanSpec(1, "192.168.56.99", "eth0", 8472))
    assert [o.action for o in plan(cur, st)] == ["recreate"]
    cur = observed_from(st)
    cur.links["cni0"] = ObservedLink("cni0", 3, "bridge", 9000, cur.links["cni0"].mac, False)
    assert [(o.action, o.what.name) for o in plan(cur, st)] == [("set", "cni0")]


def test_plan_replaces_a_route_with_another_gateway() -> None:
    desired = NsState(routes=(RouteSpec("10.244.2.0/24", "eth0", "192.168.56.12"),),
                      managed_prefixes=("10.244.0.0/16",))
    cur = Observed(routes={RouteSpec("10.244.2.0/24", "eth0", "192.168.56.99")})
    ops = plan(cur, desired)
    assert [(o.action, o.what) for o in ops] == [("add", desired.routes[0])]  # sent as a replace
    assert LinkSpec("lo").kind is None
