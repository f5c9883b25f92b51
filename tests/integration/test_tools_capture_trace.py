"""The tools on running labs: multi-point capture, trace (+ --verify, a broken route), live graph and the Mininet
CLI.

Two demo labs (vxlan and host-gw), module-scoped; every check reads what the kernel and the packets show.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from emulator.check import probes as probe
from emulator.lab.api import Lab, run_in
from emulator.testing import LabUnderTest
from emulator.tools import capture, decode, packets, pcapng, targets
from emulator.tools.trace import trace
from emulator.tools.trace_verify import verify
from tests.integration.conftest import ROOT, TOPOLOGIES, lab_fixture, podlab, podlab_argv, wait_for_line

DEMO = TOPOLOGIES / "demo.yaml"


def web_serving(lab: LabUnderTest) -> None:
    lab.wait_serving(8080, ["web-1", "web-2", "web-3"])


vx = lab_fixture(DEMO, "vxlan", name="vx", ready=web_serving)
hg = lab_fixture(DEMO, "host-gw", name="hg", ready=web_serving)


def node_ip(lab: Lab, node: str) -> str:
    return lab.node(node).ip


def kernel_links(ns: str) -> set[str]:
    return {l["ifname"] for l in json.loads(run_in(ns, ["ip", "-j", "link", "show"]).stdout)}


def assert_hops_are_real(res) -> None:
    cache: dict[str, set[str]] = {}
    for h in res.hops:
        if h.iface == "-":
            continue
        links = cache.setdefault(h.ns, kernel_links(h.ns))
        assert h.iface in links, (h.at, h.iface, sorted(links))


def walk(res) -> list[tuple[str, str]]:
    """(where, interface) of the hops that are devices a packet passes, in order, without repeats."""
    out: list[tuple[str, str]] = []
    for h in res.hops:
        if h.action in ("route", "deliver", "nat"):
            continue
        if not out or out[-1] != (h.at, h.iface):
            out.append((h.at, h.iface))
    return out


# -- capture ---------------------------------------------------------------------------------------------------
def test_three_point_capture_of_one_cross_node_ping(vx: Lab, tmp_path: Path) -> None:
    web1, web3 = vx.pod("web-1").ip, vx.pod("web-3").ip
    n1, n2 = node_ip(vx, "node-1"), node_ip(vx, "node-2")
    points = [targets.resolve(vx, t) for t in ("web-1", "underlay:lan0", "web-3")]
    path = str(tmp_path / "ping.pcapng")
    with capture.Capture(points, bpf="icmp or udp port 8472", count=2) as cap:
        assert probe.ping(vx, "web-1", web3)
        assert cap.wait(duration=10), cap.per_point()
    assert cap.write(path) == 6
    ifaces, pkts = pcapng.read(Path(path).read_bytes())
    assert [i.name for i in ifaces] == ["web-1:eth0", "underlay:lan0", "web-3:eth0"]
    assert all("netns" in i.description for i in ifaces)
    by_point: dict[str, list[packets.Frame]] = {}
    for p in pkts:
        by_point.setdefault(ifaces[p.iface].name, []).append(packets.decode_ethernet(p.data))
    for point in ("web-1:eth0", "web-3:eth0"):  # plain ICMP between the pod IPs, no tunnel
        frames = by_point[point]
        assert [(f.proto, f.src, f.dst, f.vni) for f in frames] == [
            ("ICMP", web1, web3, None), ("ICMP", web3, web1, None)], point
    req, rep = by_point["underlay:lan0"]
    for f, (outer, inner) in ((req, ((n1, n2), (web1, web3))), (rep, ((n2, n1), (web3, web1)))):
        assert (f.proto, f.dport, f.vni) == ("UDP", 8472, 1)
        assert (f.src, f.dst) == outer
        assert f.inner is not None and (f.inner.proto, f.inner.src, f.inner.dst) == ("ICMP", *inner)
    if shutil.which("tshark"):  # the same facts as tshark decodes them (it maps 8472 to VXLAN only when told)
        lines, _ = decode.decode(path, use_tshark=True)
        tunneled = [l for l in lines if l.point == "underlay:lan0"]
        assert [(l.outer_src, l.outer_dst, l.vni, l.src, l.dst) for l in tunneled] == [
            (n1, n2, 1, web1, web3), (n2, n1, 1, web3, web1)]


def test_capture_cli_writes_file_and_decodes(vx: Lab, tmp_path: Path) -> None:
    out = tmp_path / "cli.pcapng"
    web3 = vx.pod("web-3").ip
    proc = subprocess.Popen(podlab_argv("capture", "web-1", "node-1:flannel.1", "node-1:eth0", "--filter",
                                        "icmp or udp port 8472", "-c", "2", "-d", "20", "-w", str(out), "--decode",
                                        lab=vx), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc.stderr, "capturing on", timeout=20)  # printed once every tcpdump is listening
        assert probe.ping(vx, "web-1", web3)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "6 packets" in stdout and out.stat().st_size > 0
    assert re.search(r"node-1:eth0 .*VXLAN VNI 1", stdout), stdout
    assert re.search(r"node-1:flannel\.1 .*ICMP", stdout), stdout


# -- trace -----------------------------------------------------------------------------------------------------
def test_trace_same_node_is_bridged_only(vx: Lab) -> None:
    res = trace(vx, "web-1", "web-2")
    assert res.delivered and res.problem is None
    v1, v2 = targets.pod_veth(vx, "web-1"), targets.pod_veth(vx, "web-2")
    assert walk(res) == [("web-1", "eth0"), ("node-1", v1), ("node-1", "cni0"), ("node-1", v2), ("web-2", "eth0")]
    assert not any("flannel" in h.iface or h.at == "underlay" for h in res.hops)
    assert_hops_are_real(res)
    assert verify(vx, res).ok, res.lines()


def test_trace_cross_node_vxlan(vx: Lab) -> None:
    res = trace(vx, "web-1", "web-3")
    assert res.delivered and res.problem is None, res.lines()
    v1, v3 = targets.pod_veth(vx, "web-1"), targets.pod_veth(vx, "web-3")
    assert walk(res) == [("web-1", "eth0"), ("node-1", v1), ("node-1", "cni0"), ("node-1", "flannel.1"),
                         ("node-1", "eth0"), ("underlay", "node-1"), ("underlay", "lan0"), ("node-2", "eth0"),
                         ("node-2", "flannel.1"), ("node-2", "cni0"), ("node-2", v3), ("web-3", "eth0")]
    route = next(h for h in res.hops if h.at == "node-1" and h.action == "route")
    assert route.text == "route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink (origin onlink)"
    vx_hop = next(h for h in res.hops if h.action == "vxlan")
    assert "VNI 1" in vx_hop.text and f"{node_ip(vx, 'node-2')}:8472" in vx_hop.text
    assert_hops_are_real(res)
    assert verify(vx, res).ok, res.lines()
    assert all(h.verified for h in res.hops if h.checks)


def test_trace_cross_node_hostgw(hg: Lab) -> None:
    res = trace(hg, "web-1", "web-3", "tcp", 8080)
    assert res.delivered and res.problem is None, res.lines()
    v1, v3 = targets.pod_veth(hg, "web-1"), targets.pod_veth(hg, "web-3")
    assert walk(res) == [("web-1", "eth0"), ("node-1", v1), ("node-1", "cni0"), ("node-1", "eth0"),
                         ("underlay", "node-1"), ("underlay", "lan0"), ("node-2", "eth0"), ("node-2", "cni0"),
                         ("node-2", v3), ("web-3", "eth0")]
    route = next(h for h in res.hops if h.at == "node-1" and h.action == "route")
    assert route.text == f"route 10.244.2.0/24 via {node_ip(hg, 'node-2')} dev eth0 (origin static)"
    assert not any(h.iface == "flannel.1" for h in res.hops)
    assert_hops_are_real(res)
    assert verify(hg, res).ok, res.lines()


def test_trace_pinpoints_a_deleted_route(vx: Lab) -> None:
    n1 = vx.node("node-1")
    assert n1.exec(["ip", "route", "del", "10.244.2.0/24"]).returncode == 0
    try:
        res = trace(vx, "web-1", "web-3")
        assert not res.delivered
        assert res.problem is not None and res.problem.startswith(
            "node-1 has no route to 10.244.2.0/24 (the pod CIDR of node-2)"), res.problem
        assert "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in res.problem
        r = podlab("trace", "web-1", "web-3", lab=vx)
        assert r.returncode == 1 and "PROBLEM: node-1 has no route to 10.244.2.0/24" in r.stdout
    finally:
        n1.exec(["ip", "route", "replace", "10.244.2.0/24", "via", "10.244.2.0", "dev", "flannel.1", "onlink"],
                check=True)
    assert trace(vx, "web-1", "web-3").delivered


def test_trace_cli_json_verify(vx: Lab) -> None:
    r = podlab("trace", "client-1", "web-1", "--verify", "-o", "json", lab=vx)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert d["ok"] and d["delivered"] and "answered" in d["probe"]
    assert d["path"].startswith("client-1 eth0 → node-2 ")


# -- graph of a running lab -----------------------------------------------------------------------------------
def test_graph_of_running_lab_shows_pod_ips_and_tunnel(vx: Lab, tmp_path: Path) -> None:
    svg, png = tmp_path / "lab.svg", tmp_path / "lab.png"
    for f in (svg, png):
        r = podlab("graph", "-w", str(f), lab=vx)
        assert r.returncode == 0, r.stderr
    texts = {t.text for t in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}text")}
    for p in vx.pods:
        assert p.ip in texts, (p.name, p.ip)
    assert targets.pod_veth(vx, "web-1") in texts and "VXLAN VNI 1, UDP 8472" in texts
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- Mininet CLI -----------------------------------------------------------------------------------------------
def mininet_shells() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if "mininet:" in l]


def test_mininet_cli_script_pingall(vx: Lab, tmp_path: Path) -> None:
    pytest.importorskip("emulator.cli.mncli", reason="Debian's mininet is not installed")
    before = mininet_shells()
    script = tmp_path / "cmds.mn"
    script.write_text("nodes\npingall\nweb-1 ping -c1 web-3\ndump\ntrace web-1 web-3\n")
    r = podlab("cli", "--script", str(script), lab=vx)
    assert r.returncode == 0, r.stderr
    # the hosts are every pod of the pod network — the 4 of the topology and kube-system's 2 coredns pods
    pods = sorted(p.ref for p in vx.pods)
    assert len(pods) == 6 and sum(p.startswith("kube-system/coredns-") for p in pods) == 2, pods
    pings = f"*** Results: 0% dropped ({len(pods) * (len(pods) - 1)}/{len(pods) * (len(pods) - 1)} received)"
    assert pings in r.stdout, r.stdout
    assert " ".join(sorted(pods + ["node-1", "node-2", "underlay"])) in r.stdout
    assert f"64 bytes from {vx.pod('web-3').ip}" in r.stdout  # the name web-3 was replaced by its IP
    assert f"<Pod web-1: eth0:{vx.pod('web-1').ip}" in r.stdout
    assert "path: web-1 eth0 → node-1" in r.stdout
    r = podlab("cli", input="pingall\n", lab=vx)
    assert pings in r.stdout, r.stdout + r.stderr
    assert mininet_shells() == before  # the CLI's shells are gone, nothing else was touched
