"""Issue 2 acceptance: a 3-node lab in each routing mode is a flat, NAT-free pod network on real namespaces."""
from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
import time

import pytest

from emulator.check import probes as probe
from emulator.lab.api import Lab, popen_in
from emulator.topology import names
from tests.integration.conftest import three_node_text

MODES = ["vxlan", "host-gw", "bgp"]


@pytest.fixture(scope="module", params=MODES)
def lab3(request) -> Lab:
    from tests.integration.conftest import unique_name
    from emulator.lab import teardown
    from emulator.topology.loader import loads
    name = unique_name("m")
    lab = Lab.up(loads(three_node_text(), source="<test>", name=name, routing=request.param))
    try:
        for p in lab.pods:  # netexec binds its port a few ms after the pod is Running
            assert probe.wait_http(lab, f"node/{p.node}", p.ip), f"netexec in {p.name} never answered"
        yield lab
    finally:
        teardown.destroy(name)


def test_pod_ips_unique_and_inside_node_slices(lab3: Lab) -> None:
    ips = [p.ip for p in lab3.pods]
    assert len(ips) == 6 and len(set(ips)) == 6, ips
    for p in lab3.pods:
        slice_ = ipaddress.ip_network(lab3.node(p.node).pod_cidr)
        assert ipaddress.ip_address(p.ip) in slice_, (p.name, p.ip, slice_)
        assert p.status["phase"] == "Running"


def test_every_pod_reaches_every_pod_icmp(lab3: Lab) -> None:
    pods = lab3.pods
    pairs = [(a.name, b.ip) for a, b in itertools.permutations(pods, 2)]
    results = probe.matrix(pairs, lambda pr: probe.ping(lab3, pr[0], pr[1]))
    failed = [pr for pr, ok in results if not ok]
    assert not failed, f"ping failed for {failed}"


def test_every_pod_reaches_every_pod_tcp_without_nat(lab3: Lab) -> None:
    pods = {p.name: p.ip for p in lab3.pods}
    pairs = [(a, b) for a, b in itertools.permutations(pods, 2)]
    results = probe.matrix(pairs, lambda pr: probe.observed_source(lab3, pr[0], pods[pr[1]]))
    wrong = [(a, b, seen) for (a, b), seen in results if seen != pods[a]]
    assert not wrong, f"receiver saw the wrong source (sender, receiver, seen): {wrong}"


def test_node_reaches_its_pods(lab3: Lab) -> None:
    for p in lab3.pods:
        node = lab3.node(p.node)
        assert probe.ping(lab3, f"node/{node.name}", p.ip), (node.name, p.name)
        seen = probe.observed_source(lab3, f"node/{node.name}", p.ip)
        assert seen == str(ipaddress.ip_network(node.pod_cidr).network_address + 1), (p.name, seen)


def test_routes_and_mtu_follow_the_mode(lab3: Lab) -> None:
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


def _capture(lab: Lab, node: str, bpf: str, action, count: int = 2, extra: list[str] | None = None) -> str:
    ns = names.node_ns(lab.name, node)
    cmd = ["tcpdump", "-l", "-n", "-i", "eth0", "-c", str(count), *(extra or []), bpf]
    cap = popen_in(ns, cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # in the lab's journal
    try:
        time.sleep(0.5)  # tcpdump attaches its filter
        action()
        out, _ = cap.communicate(timeout=10)
        return out
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()


def test_underlay_shows_vxlan_or_plain_ip(lab3: Lab) -> None:
    mode = lab3.record["routing"]
    src = next(p for p in lab3.pods if p.node == "node-1")
    dst = next(p for p in lab3.pods if p.node == "node-2")
    n1, n2 = lab3.node("node-1"), lab3.node("node-2")
    ping = lambda: probe.ping(lab3, src.name, dst.ip, count=2)  # noqa: E731
    if mode == "vxlan":
        out = _capture(lab3, "node-1", "udp port 8472", ping, extra=["-T", "vxlan"])
        assert f"{n1.ip}." in out and f"{n2.ip}.8472" in out, out
        assert "VXLAN" in out and "vni 1" in out and f"{src.ip} > {dst.ip}" in out, out
    else:
        out = _capture(lab3, "node-1", f"icmp and host {dst.ip}", ping)
        assert f"{src.ip} > {dst.ip}: ICMP echo request" in out, out
        assert "8472" not in out


def test_flannel_facts(lab3: Lab) -> None:
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


def test_ipam_files_in_host_local_layout(lab3: Lab) -> None:
    d = lab3.paths.ipam_dir("node-1") / "cbr0"
    files = {f.name for f in d.iterdir()}
    node1_ips = {p.ip for p in lab3.pods if p.node == "node-1"}
    assert node1_ips <= files and "last_reserved_ip.0" in files and "lock" in files
    for p in lab3.pods:
        if p.node == "node-1":
            cid, ifname = (d / p.ip).read_bytes().decode().split("\r\n")
            assert cid == p.status["sandbox"]["id"] and ifname == "eth0"


def test_applier_is_idempotent(lab3: Lab) -> None:
    from emulator import routing
    from emulator.netlink import applier
    from emulator.netlink.rtnl import Rtnl
    from emulator.topology.loader import loads
    topo = loads(three_node_text(), source="<test>", name=lab3.name, routing=lab3.record["routing"])
    for n in topo.nodes:
        ns = names.node_ns(lab3.name, n.name)
        with Rtnl.in_ns(ns) as rt:
            assert applier.apply(rt, routing.full_node_state(topo, n), ns_name=ns) == []
