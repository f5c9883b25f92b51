"""The external network and link shaping of a multi-host lab: 3 emulated hosts (as in ``test_multihost``: own
network, mount and pid namespaces, own sshd; the CLI in a controller namespace), one lab for the module.

The topology asks for ``external:`` and has Services; node-2 has a ``link:`` and pod web-3 one. Proven from what
the kernels and the external host's own programs see: the router and the external host exist once, on mhe1 (the
host of node-1), every node on every host routes by default to the router through the stretched underlay and
masquerades its pods; pods on mhe2 and mhe3 reach the external host, whose echo server and tcpdump see the node's
address, never the pod's (and ``trace`` walks it host by host); the external host reaches a NodePort on a node of another host but no pod IP; a node's
own process reaches a ClusterIP whose one endpoint is on another host; the shapes are tbf qdiscs on the right
host's interfaces only, and iperf3 into the shaped pod across hosts runs at its rate. ``podlab exec external``
runs on mhe1. ``podlab cleanup`` leaves nothing on any host afterwards.
"""
from __future__ import annotations

import json
import subprocess
import time
from typing import Iterator

import pytest

from emulator.hosts.emulated import EmulatedHosts
from tests.integration.conftest import ROOT
from tests.integration.test_multihost import COMMAND, PY, controller_records, ctl, host_leftovers

LAB = "mhe-ext"
EXT = "203.0.113.2"
PODLAB = ["env", f"PYTHONPATH={ROOT}", PY, "-m", "emulator"]  # as ``ctl`` runs it, for the commands run in the background
NETEXEC = "containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]"
TOPOLOGY = f"""version: 1
name: {LAB}
routing: vxlan
external: {{cidr: 203.0.113.0/24}}
nodes: [{{name: node-1}}, {{name: node-2, link: {{rate: 20mbit}}}}, {{name: node-3}}]
pods:
  - {{name: web-1, node: node-1, labels: {{app: one}}, {NETEXEC}}}
  - {{name: web-2, node: node-2, labels: {{app: two}}, {NETEXEC}}}
  - {{name: web-3, node: node-3, labels: {{app: three}}, link: {{rate: 10mbit}}, {NETEXEC}}}
services:
  - name: two
    selector: {{app: two}}
    ports: [{{port: 80, targetPort: 8080}}]
  - name: two-np
    type: NodePort
    selector: {{app: two}}
    ports: [{{port: 80, targetPort: 8080, nodePort: 30090}}]
"""


@pytest.fixture(scope="module")
def hosts() -> Iterator[EmulatedHosts]:
    with EmulatedHosts(3, prefix="mhe") as hs:
        yield hs


@pytest.fixture(scope="module")
def lab(hosts: EmulatedHosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    d = tmp_path_factory.mktemp("mhe")
    topo = d / "t.yaml"
    topo.write_text(TOPOLOGY)
    r = ctl(hosts, "up", str(topo), "--hosts", str(hosts.inventory(COMMAND)))
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        rec = json.loads(subprocess.run(hosts.controller_argv(["cat", f"/run/podlab/multihost/{LAB}.json"]),
                                        capture_output=True, text=True, check=True).stdout)
        pods = {p["name"]: p for p in json.loads(ctl(hosts, "get", "pods", "-o", "json").stdout)["items"]}
        yield {"up": r, "record": rec, "pods": pods}
    finally:  # cleanup, not down (test_multihost_services ends its lab, with its external network, by down):
        # --all in the controller's namespaces, whose /run/podlab is the harness's own, holding this lab alone
        dn = ctl(hosts, "cleanup", "--all")
        assert dn.returncode == 0 and f"lab {LAB} removed from hosts mhe1, mhe2, mhe3" in dn.stdout, \
            dn.stdout + dn.stderr
        assert host_leftovers(hosts) == {} and controller_records(hosts) == []


def in_ns(hosts: EmulatedHosts, host: str, ns: str, *argv: str) -> subprocess.CompletedProcess:
    return hosts.host_run(host, ["ip", "netns", "exec", f"{LAB}-{ns}", *argv])


def until_ok(hosts: EmulatedHosts, *args: str, tries: int = 20) -> subprocess.CompletedProcess:
    """``podlab ARGS`` until it succeeds (netexec binds its port a moment after its pod is Running)."""
    for _ in range(tries):
        r = ctl(hosts, *args)
        if r.returncode == 0:
            return r
        time.sleep(0.25)
    return r


def test_external_network_lives_on_the_first_nodes_host(hosts: EmulatedHosts, lab: dict) -> None:
    assert lab["record"]["external"] == "mhe1"
    assert "external network 203.0.113.0/24: host 203.0.113.2" in lab["up"].stderr, lab["up"].stderr
    for h in hosts.names:
        ns = hosts.host_run(h, ["ip", "netns", "list"]).stdout
        assert (f"{LAB}-gw" in ns, f"{LAB}-external" in ns) == ((h == "mhe1"),) * 2, (h, ns)
        # in that host's own lab record before they were made: its down/cleanup removes them even after a crash
        rec = json.loads(hosts.host_run(h, ["cat", f"/run/podlab/labs/{LAB}/lab.json"]).stdout)
        assert ({f"{LAB}-gw", f"{LAB}-external"} <= set(rec["namespaces"])) == (h == "mhe1"), (h, rec["namespaces"])
    node = {n: h for n, h in lab["record"]["placement"].items()}
    for n, h in node.items():  # every node on every host: default route to the router, flannel's masquerade
        route = in_ns(hosts, h, n, "ip", "-4", "route", "show", "default").stdout
        assert route.startswith("default via 192.168.56.1 dev eth0"), (n, h, route)
        nat = in_ns(hosts, h, n, "iptables-save", "-t", "nat").stdout
        assert "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4" in nat and "MASQUERADE" in nat, (n, nat)
    r = ctl(hosts, "exec", "external", "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert r.returncode == 0 and f"inet {EXT}/24" in r.stdout, r.stdout + r.stderr
    c = ctl(hosts, "check")  # every pod of every host, seen by the external host with its node's address
    assert c.returncode == 0, c.stdout + c.stderr
    assert "pod-to-pod: 9/9 pairs answer" in c.stdout and \
        "ok   snat-to-external: 3/3 pods seen by the external host with their node's IP" in c.stdout, c.stdout
    gw = in_ns(hosts, "mhe1", "gw", "ip", "-4", "route").stdout  # the router knows no pod or Service range
    assert "10.244." not in gw and "10.96." not in gw and "default" not in gw, gw


def test_pods_on_other_hosts_reach_the_external_host_from_their_nodes_address(hosts: EmulatedHosts,
                                                                             lab: dict) -> None:
    ips = lab["record"]["nodeIPs"]
    for pod, node in (("web-2", "node-2"), ("web-3", "node-3")):
        r = until_ok(hosts, "exec", pod, "--", "curl", "-sS", "--max-time", "3", f"http://{EXT}/clientip")
        assert r.returncode == 0, r.stdout + r.stderr
        seen = r.stdout.strip().rsplit(":", 1)[0]  # what the external host's echo server saw as the peer
        assert seen == ips[node] and seen != lab["pods"][pod]["ip"], (pod, r.stdout)
    # ICMP from a pod on mhe3, seen by tcpdump on the external host (mhe1): the node's address, not the pod's
    dump = subprocess.Popen(hosts.controller_argv([*PODLAB, "exec", "external", "--", "timeout", "8",
                                                   "tcpdump", "-l", "-n", "-c", "2", "-i", "eth0",
                                                   "icmp[icmptype] == icmp-echo"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # the exec reaches mhe1 and tcpdump opens its socket
        p = ctl(hosts, "exec", "web-3", "--", "ping", "-n", "-c", "3", "-i", "0.3", "-W", "2", EXT)
        assert p.returncode == 0 and "3 received" in p.stdout, p.stdout + p.stderr
        out, err = dump.communicate(timeout=20)
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    assert f"IP {ips['node-3']} > {EXT}: ICMP echo request" in out, out + err
    assert lab["pods"]["web-3"]["ip"] not in out, out
    # trace walks it host by host: SNAT on node-3 (mhe3), through the stretch to the router and host on mhe1
    t = ctl(hosts, "trace", "web-3", "external:80")
    assert t.returncode == 0, t.stdout + t.stderr
    web3 = lab["pods"]["web-3"]["ip"]
    assert f"mhe3/node-3    eth0          SNAT {web3} → {ips['node-3']}" in t.stdout, t.stdout
    assert "mhe3/underlay  stretch0" in t.stdout and "mhe1/gw        eth1" in t.stdout, t.stdout
    assert f"{EXT} is a local address of external (eth0): delivered" in t.stdout, t.stdout


def test_external_host_reaches_node_ports_but_no_pod(hosts: EmulatedHosts, lab: dict) -> None:
    ips, web3 = lab["record"]["nodeIPs"], lab["pods"]["web-3"]["ip"]
    # one exec on the external host (mhe1): a NodePort on node-3 (mhe3) and node-1 (mhe1), its endpoint web-2 on
    # mhe2 (a few tries: kube-proxy may still be writing its rules); then web-3's pod IP, which must not answer
    script = "; ".join(f"for i in $(seq 10); do curl -sS --max-time 3 http://{ips[n]}:30090/hostname && break; "
                       "sleep 0.3; done; echo" for n in ("node-3", "node-1"))
    script += (f"; curl -sS --max-time 2 http://{web3}:8080/hostname && echo reached-pod; ip route get {web3}; "
               f"ping -n -c 1 -W 2 {web3}")
    r = ctl(hosts, "exec", "external", "--", "sh", "-c", script)
    lines = r.stdout.split("\n")
    assert lines[:2] == ["web-2", "web-2"], r.stdout + r.stderr
    assert "reached-pod" not in r.stdout and f"{web3} via 203.0.113.1 dev eth0" in r.stdout, r.stdout
    # the router answers for the pod range it has no route to, as a real edge router would
    assert "From 203.0.113.1 icmp_seq=1 Destination Net Unreachable" in r.stdout, r.stdout + r.stderr
    assert "Couldn't connect to server" in r.stderr, r.stderr
    t = ctl(hosts, "trace", "external", f"{ips['node-3']}:30090", "--endpoint", f"{lab['pods']['web-2']['ip']}:8080")
    assert t.returncode == 0, t.stdout + t.stderr  # from mhe1's external host through mhe3's node-3 to mhe2's web-2
    path = t.stdout.split("path: ", 1)[1]
    assert path.startswith("mhe1/external eth0 → mhe1/gw eth1") and "mhe3/node-3 eth0" in path, path
    assert path.rstrip().endswith("mhe2/web-2 eth0"), path


def test_node_process_reaches_cluster_ip_on_another_host(hosts: EmulatedHosts, lab: dict) -> None:
    svc = json.loads(ctl(hosts, "get", "svc", "two", "-o", "json").stdout)["spec"]["clusterIP"]
    for node in ("node-3", "node-1"):  # the node's own process (not a pod); the one endpoint, web-2, on mhe2
        r = until_ok(hosts, "exec", node, "--", "curl", "-sS", "--max-time", "3", f"http://{svc}/hostname")
        assert r.returncode == 0 and r.stdout.strip() == "web-2", (node, r.stdout + r.stderr)


def tbf(hosts: EmulatedHosts, host: str, ns: str, dev: str) -> dict | None:
    r = in_ns(hosts, host, ns, "tc", "-j", "-s", "qdisc", "show", "dev", dev)
    assert r.returncode == 0, r.stderr
    return next((q for q in json.loads(r.stdout or "[]") if q.get("kind") == "tbf"), None)


def test_topology_link_shapes_applied_on_the_right_host(hosts: EmulatedHosts, lab: dict) -> None:
    # node-2 (mhe2): its eth0 and its port on mhe2's part of the LAN, both at 20 Mbit/s
    for ns, dev in (("node-2", "eth0"), ("underlay", "node-2")):
        q = tbf(hosts, "mhe2", ns, dev)
        assert q is not None and q["options"]["rate"] * 8 == 20_000_000, (ns, dev, q)
    assert tbf(hosts, "mhe1", "node-1", "eth0") is None and tbf(hosts, "mhe3", "node-3", "eth0") is None
    # web-3 (mhe3): its eth0 shaped at 10 Mbit/s by the CNI chain there
    q = tbf(hosts, "mhe3", "web-3", "eth0")
    assert q is not None and q["options"]["rate"] * 8 == 10_000_000, q
    shown = ctl(hosts, "link", "show", "web-3", "-o", "json")
    assert shown.returncode == 0 and "tbf" in shown.stdout, shown.stdout + shown.stderr
    # real packets: iperf3 from web-1 (mhe1) into web-3 (mhe3) runs at web-3's rate, not the stretch's
    web3 = lab["pods"]["web-3"]["ip"]
    server = subprocess.Popen(hosts.controller_argv([*PODLAB, "exec", "web-3", "--", "timeout", "15",
                                                     "iperf3", "-s", "-1", "-p", "5299"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        c = ctl(hosts, "exec", "web-1", "--", "iperf3", "-c", web3, "-p", "5299", "-t", "2", "-R", "-J")
        assert c.returncode == 0, c.stdout + c.stderr
        server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    got = json.loads(c.stdout)["end"]["sum_received"]["bits_per_second"]
    assert 5e6 < got < 12e6, got  # -R: web-3 sends, through its shaped eth0 (unshaped: >1 Gbit/s here)
    after = tbf(hosts, "mhe3", "web-3", "eth0")
    assert after is not None and after["bytes"] > 1_000_000, after
