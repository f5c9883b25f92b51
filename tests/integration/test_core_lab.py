"""The pod network itself, once per routing mode: a 3-node lab (the shipped example) is a flat, NAT-free pod
network on real namespaces, with the routes, MTU, wire format, VXLAN device and IPAM files of its mode.

This is the one place that proves the full pod×pod matrix (ICMP, and TCP with the source observed by the
receiver) and node→pod in every mode; other modules rely on it, or run ``podlab check`` (``check.runner``).
``vxlan-3node.yaml``, ``hostgw-3node.yaml`` and ``bgp-3node.yaml`` are one cluster in three modes (a unit test
holds them to that), so this module's three labs cover all three files.
"""
from __future__ import annotations

import ipaddress
import itertools
import json

import pytest

from emulator import routing
from emulator.check import probes as probe
from emulator.netlink import applier
from emulator.netlink.rtnl import Rtnl
from emulator.testing import LabUnderTest
from emulator.topology import names
from emulator.topology.loader import load
from tests.integration.conftest import TOPOLOGIES, lab_fixture, serving

MODES = ["vxlan", "host-gw", "bgp"]
EXAMPLE = TOPOLOGIES / "vxlan-3node.yaml"

lab3 = lab_fixture(EXAMPLE, MODES, name="lab3", ready=serving())


def test_pod_ips_unique_and_inside_node_slices(lab3: LabUnderTest) -> None:
    """The topology's 6 pods and the cluster's 2 coredns pods of kube-system (``kubectl get pods -A`` shows them
    with pod IPs of their nodes' slices, as in a cluster) hold 8 distinct IPs."""
    ips = [p.ip for p in lab3.pods]
    assert len(ips) == 8 and len(set(ips)) == 8, ips
    assert sorted(p.namespace for p in lab3.pods) == ["default"] * 6 + ["kube-system"] * 2
    for p in lab3.pods:
        slice_ = ipaddress.ip_network(lab3.node(p.node).pod_cidr)
        assert ipaddress.ip_address(p.ip) in slice_, (p.name, p.ip, slice_)
        assert p.status["phase"] == "Running"


def test_every_pod_reaches_every_pod_icmp(lab3: LabUnderTest) -> None:
    pods = lab3.pods  # the coredns pods too: they are pods of the same network
    pairs = [(a.ref, b.ip) for a, b in itertools.permutations(pods, 2)]
    results = probe.matrix(pairs, lambda pr: probe.ping(lab3, pr[0], pr[1]))
    failed = [pr for pr, ok in results if not ok]
    assert not failed, f"ping failed for {failed}"


def test_every_pod_reaches_every_pod_tcp_without_nat(lab3: LabUnderTest) -> None:
    pods = {p.ref: p.ip for p in lab3.pods}
    servers = [p.ref for p in lab3.pods if p.namespace == "default"]  # netexec's /clientip (coredns serves DNS)
    pairs = [(a, b) for a, b in itertools.permutations(pods, 2) if b in servers]  # the coredns pods as clients
    results = probe.matrix(pairs, lambda pr: probe.observed_source(lab3, pr[0], pods[pr[1]]))
    wrong = [(a, b, seen) for (a, b), seen in results if seen != pods[a]]
    assert not wrong, f"receiver saw the wrong source (sender, receiver, seen): {wrong}"


def test_node_reaches_its_pods(lab3: LabUnderTest) -> None:
    def node_to_pod(p) -> tuple[bool, str | None]:
        src = f"node/{p.node}"
        return probe.ping(lab3, src, p.ip), probe.observed_source(lab3, src, p.ip)
    for p, (pinged, seen) in probe.matrix([p for p in lab3.pods if p.namespace == "default"], node_to_pod):
        cni0 = str(ipaddress.ip_network(lab3.node(p.node).pod_cidr).network_address + 1)
        assert pinged and seen == cni0, (p.name, pinged, seen)  # the node speaks from its cni0 address
    dns = [p for p in lab3.pods if p.namespace == "kube-system"]  # no HTTP server there: ICMP only
    assert len(dns) == 2 and all(probe.ping(lab3, f"node/{p.node}", p.ip) for p in dns)


def test_routes_and_mtu_follow_the_mode(lab3: LabUnderTest) -> None:
    mode = lab3.record["routing"]
    mtu = 1450 if mode == "vxlan" else 1500
    for p in lab3.pods:
        out = p.exec(["ip", "-j", "link", "show", "eth0"]).stdout
        assert json.loads(out)[0]["mtu"] == mtu
        routes = json.loads(p.exec(["ip", "-j", "route"]).stdout)
        assert any(r["dst"] == "default" and r["gateway"].endswith(".1") for r in routes), routes
    n1 = lab3.node("node-1")
    routes = {r["dst"]: r for r in json.loads(n1.exec(["ip", "-j", "route"]).stdout)}
    for other in lab3.nodes:
        if other.name == "node-1":
            continue
        r = routes[other.pod_cidr]
        if mode == "vxlan":
            assert r["dev"] == "flannel.1" and "onlink" in r.get("flags", []), r
            assert r["gateway"] == other.pod_cidr.split("/")[0]
        else:
            assert r["dev"] == "eth0" and r["gateway"] == other.ip, r


def test_underlay_shows_vxlan_or_plain_ip(lab3: LabUnderTest) -> None:
    mode = lab3.record["routing"]
    src = next(p for p in lab3.pods if p.node == "node-1")
    dst = next(p for p in lab3.pods if p.node == "node-2")
    n1, n2 = lab3.node("node-1"), lab3.node("node-2")
    bpf = "udp port 8472" if mode == "vxlan" else f"icmp and host {dst.ip}"
    with lab3.capture("node/node-1:eth0", bpf, count=2) as cap:  # the echo request and its reply
        assert probe.ping(lab3, src.name, dst.ip)
    assert cap.complete, cap.lines
    request, reply = cap.frames
    if mode == "vxlan":
        assert (request.src, request.dst, request.dport, request.vni) == (n1.ip, n2.ip, 8472, 1), cap.lines
        assert (reply.src, reply.dst, reply.vni) == (n2.ip, n1.ip, 1), cap.lines
        request, reply = request.inner, reply.inner
    assert (request.proto, request.src, request.dst, request.icmp_type) == ("ICMP", src.ip, dst.ip, 8), cap.lines
    assert (reply.proto, reply.src, reply.dst, reply.icmp_type) == ("ICMP", dst.ip, src.ip, 0), cap.lines


def test_flannel_facts(lab3: LabUnderTest) -> None:
    if lab3.record["routing"] != "vxlan":
        pytest.skip("vxlan only")
    n1 = lab3.node("node-1")
    link = json.loads(n1.exec(["ip", "-j", "-d", "link", "show", "flannel.1"]).stdout)[0]
    info = link["linkinfo"]["info_data"]
    assert (info["id"], info["port"], info["local"], link["mtu"]) == (1, 8472, n1.ip, 1450)
    assert info.get("learning") is False
    addrs = json.loads(n1.exec(["ip", "-j", "addr", "show", "flannel.1"]).stdout)[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs if a["family"] == "inet"] == [("10.244.1.0", 32)]
    neigh = n1.exec(["ip", "neigh", "show", "dev", "flannel.1"]).stdout
    fdb = n1.exec(["bridge", "fdb", "show", "dev", "flannel.1"]).stdout
    for other in lab3.nodes:
        if other.name != "node-1":
            base = other.pod_cidr.split("/")[0]
            assert f"{base} lladdr" in neigh and "PERMANENT" in neigh, neigh
            assert f"dst {other.ip} self permanent" in fdb, fdb
    env = (lab3.paths.flannel_env("node-1")).read_text()
    assert "FLANNEL_NETWORK=10.244.0.0/16" in env and "FLANNEL_SUBNET=10.244.1.1/24" in env
    assert "FLANNEL_MTU=1450" in env


def test_ipam_files_in_host_local_layout(lab3: LabUnderTest) -> None:
    d = lab3.paths.ipam_dir("node-1") / "cbr0"
    files = {f.name for f in d.iterdir()}
    node1_ips = {p.ip for p in lab3.pods if p.node == "node-1"}
    assert node1_ips <= files and "last_reserved_ip.0" in files and "lock" in files
    for p in lab3.pods:
        if p.node == "node-1":
            cid, ifname = (d / p.ip).read_bytes().decode().split("\r\n")
            assert cid == p.status["sandbox"]["id"] and ifname == "eth0"


def test_applier_is_idempotent(lab3: LabUnderTest) -> None:
    topo = load(EXAMPLE, name=lab3.name, routing=lab3.record["routing"])
    for n in topo.nodes:
        ns = names.node_ns(lab3.name, n.name)
        with Rtnl.in_ns(ns) as rt:
            assert applier.apply(rt, routing.full_node_state(topo, n), ns_name=ns) == []
