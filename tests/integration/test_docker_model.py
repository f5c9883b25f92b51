"""The single-host Docker model beside the pod model (topologies/docker-vs-pods.yaml), in vxlan and host-gw.

Every claim is what a receiver answered: netexec's ``/hostname`` (which pod or container got the request) and
``/clientip`` (the source its kernel saw). Docker: two containers on two nodes hold 172.17.0.2; a container
addressing another node's container by IP reaches its own node's instead (or nobody); through a published port
the receiver sees the sending node's address; the external host's address survives the DNAT. hostPort: node
IP:8081 reaches the pod from the other node, from pods on both nodes and from external, on the built-in node
(podlab's portmap) and the reference node (the real /usr/lib/cni/portmap, whose rules read alike); the second
pod asking for node-1's 8081 stays Pending with the scheduler's reason. After ``down``: nothing of the lab left.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess

import pytest

from emulator.check import run_lab
from emulator.check.probes import http_ns
from emulator.cni import portmap
from emulator.netlink import netns
from emulator.proc.lifecycle import alive
from emulator.state import record
from emulator.topology import names
from tests.integration.conftest import ROOT, TOPOLOGIES, kubectl_runner, lab_fixture, podlab, podlab_argv, root_links, wait_for_line

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/cni/portmap"),
                                reason="containernetworking-plugins (the real portmap) not installed")
TOPO = TOPOLOGIES / "docker-vs-pods.yaml"
RUNNING = ["web-1", "web-2", "hp-1", "hp-2"]
HOSTPORT = 8081


def _ready(lab) -> None:
    lab.wait_serving(8080, pods=RUNNING)
    for key in ("node-3.web", "node-4.web", "node-4.db"):
        node, _, name = key.partition(".")
        assert _get(names.node_ns(lab.name, node), f"http://{_ctr(lab, key)['status']['ipAddress']}:80/healthz",
                    tries=50).ok


lab = lab_fixture(TOPO, ["vxlan", "host-gw"], ready=_ready, prefix="dk")


def _ctr(lab, key: str) -> dict:
    return lab.store.get("containers", key)


def _get(ns: str, url: str, tries: int = 1):
    for _ in range(tries):
        r = http_ns(ns, url, timeout=2)
        if r.ok:
            return r
    return r


def _ns(lab, what: str) -> str:
    return lab.target_ns(what)


def _node_ip(lab, node: str) -> str:
    return lab.node(node).ip


def test_check_fails_the_three_docker_rules_and_passes_the_pods(lab) -> None:
    rep = run_lab(lab)
    by = {r.name: r for r in rep.results}
    for name in ("unique-pod-ips", "pod-to-pod", "no-nat", "node-to-pod"):
        assert by[name].status == "PASS", by[name]
    dup = by["unique-container-ips"]
    assert dup.status == "FAIL"
    assert any(f.subject == "address 172.17.0.2" and "node-3/web" in f.observed and "node-4/web" in f.observed
               for f in dup.findings), dup.findings
    c2c = by["container-to-container"]
    assert c2c.status == "FAIL" and c2c.summary.startswith("0/4 ")
    web = {f.subject: f.observed for f in c2c.findings}
    assert web["node-4/db → node-3/web"].startswith("node-4/web, on the sender's node node-4 answered")
    assert web["node-3/web → node-4/web"].startswith("the sender itself answered")
    assert "dev docker0" in web["node-3/web → node-4/db"]  # nobody holds 172.17.0.3 on node-3: its own bridge
    pub = by["published-ports"]
    assert pub.status == "FAIL"
    seen = {f.subject: f.observed for f in pub.findings}
    n4 = _node_ip(lab, "node-4")
    assert seen[f"container node-4/db → {_node_ip(lab, 'node-3')}:8080 (node-3/web)"] == \
        f"node-3/web saw {n4} (the address of node-4)"


def test_container_by_ip_reaches_its_own_nodes_container(lab) -> None:
    """db on node-4 asks for 172.17.0.2 meaning node-3's web: node-4's web answers (the receiver names itself)."""
    r = _get(_ns(lab, "container/node-4/db"), "http://172.17.0.2:80/hostname")
    assert r.ok and r.body == "node-4/web"
    r = _get(_ns(lab, "container/node-3/web"), "http://172.17.0.3:80/hostname")
    assert not r.ok  # node-3 has no 172.17.0.3 and no route to node-4's docker0


def test_published_port_from_another_node_and_from_external(lab) -> None:
    n3 = _node_ip(lab, "node-3")
    url = f"http://{n3}:8080/clientip"
    cases = {"node/node-1": _node_ip(lab, "node-1"), "container/node-4/db": _node_ip(lab, "node-4"),
             "external": None}
    for src, want in cases.items():
        r = _get(_ns(lab, src), url)
        assert r.ok, (src, r)
        seen = r.body.rsplit(":", 1)[0]
        if want is None:  # the external host: DNAT only, its own address arrives
            ext = lab.exec("external", ["ip", "-j", "-4", "addr", "show", "dev", "eth0"]).stdout
            want = json.loads(ext)[0]["addr_info"][0]["local"]
        assert seen == want, (src, seen, want)
        assert _get(_ns(lab, src), f"http://{n3}:8080/hostname").body == "node-3/web"


@pytest.mark.parametrize("target, pod, node", [("node-1", "hp-1", "builtin"), ("node-2", "hp-2", "reference")])
def test_hostport_from_every_vantage_point(lab, target: str, pod: str, node: str) -> None:
    ip = _node_ip(lab, target)
    other = "node-2" if target == "node-1" else "node-1"
    local_pod, remote_pod = ("web-1", "web-2") if target == "node-1" else ("web-2", "web-1")
    for src in (f"node/{other}", f"node/{target}", local_pod, remote_pod, "external", "container/node-4/db"):
        r = _get(_ns(lab, src), f"http://{ip}:{HOSTPORT}/hostname", tries=3)
        assert r.ok and r.body == pod, (src, r)
    # the hairpin: a pod of the same node reaches the hostPort masqueraded (CNI-HOSTPORT-SETMARK → MASQ)
    seen = _get(_ns(lab, local_pod), f"http://{ip}:{HOSTPORT}/clientip").body.rsplit(":", 1)[0]
    assert seen == str(ipaddress.ip_network(lab.node(target).pod_cidr).network_address + 1)  # cni0's, not the pod's
    seen = _get(_ns(lab, "external"), f"http://{ip}:{HOSTPORT}/clientip").body.rsplit(":", 1)[0]
    assert seen.startswith("203.0.113.")  # DNAT only: the caller's own address


def test_real_portmap_beside_the_builtin_one(lab) -> None:
    """node-2 (cni: reference) has no portmap of podlab's: its rules are the real plugin's, and read exactly as
    the built-in plugin's on node-1 (chain names from the same SHA-512 of network and container ID)."""
    assert not (lab.paths.cni_bin_dir("node-2") / "portmap").exists()
    conf = json.loads((lab.paths.cni_conf_dir("node-2") / "10-flannel.conflist").read_text())
    assert conf["plugins"][-1] == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    shapes = {}
    for node, pod in (("node-1", "hp-1"), ("node-2", "hp-2")):
        save = lab.exec(f"node/{node}", ["iptables-save", "-t", "nat"]).stdout
        chain = portmap.chain_name("cbr0", lab.pod(pod).status["sandbox"]["id"])
        ip = lab.pod(pod).ip
        assert f"-A {chain} -p tcp -m tcp --dport {HOSTPORT} -j DNAT --to-destination {ip}:8080" in save
        assert "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE" in save
        shapes[node] = sorted(line.replace(chain, "CHAIN").split(" --comment")[0] for line in save.splitlines()
                              if "CNI-" in line and "-s 10.244" not in line and "DNAT --to" not in line)
    assert shapes["node-1"] == shapes["node-2"]


def test_second_pod_on_a_taken_hostport_stays_pending(lab) -> None:
    st = lab.pod("hp-3").status
    assert st["phase"] == "Pending" and st["reason"] == "Unschedulable"
    assert st["message"].startswith("0/2 nodes are available: 1 node(s) didn't have free ports for the requested "
                                    "pod ports, 1 node(s) didn't match Pod's node affinity/selector.")
    out = podlab("get", "pods", lab=lab).stdout
    assert any(line.split()[:3] == ["hp-3", "0/1", "Pending"] for line in out.splitlines()), out
    out = podlab("describe", "pod", "hp-3", lab=lab).stdout
    assert "FailedScheduling" in out and "default-scheduler" in out and "didn't have free ports" in out, out


def test_a_docker_host_runs_no_kubelet(lab) -> None:
    assert lab.agent_pid("node-3") is None and lab.agent_pid("node-1") is not None
    assert not (lab.paths.cni_conf_dir("node-3") / "10-flannel.conflist").exists()
    out = podlab("describe", "node", "node-3", lab=lab).stdout
    assert "Docker host: no kubelet" in out and "docker0" in out and "172.17.0.1/16" in out, out
    rows = {line.split()[0]: line.split()[1] for line in podlab("get", "nodes", lab=lab).stdout.splitlines()[1:]}
    assert rows == {"node-1": "Ready", "node-2": "Ready", "node-3": "Ready", "node-4": "Ready"}


def test_get_containers_and_exec(lab) -> None:
    r = podlab("get", "containers", lab=lab)
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0] == ["NAME", "NODE", "IMAGE", "STATUS", "IP", "PORTS"]
    assert ["web", "node-3", "netexec"] == rows[1][:3] and "0.0.0.0:8080->80/tcp" in rows[1]
    obj = json.loads(podlab("get", "container", "node-4/db", "-o", "json", lab=lab).stdout)
    assert obj["kind"] == "Container" and obj["status"]["ipAddress"] == "172.17.0.3"
    assert podlab("get", "container", "web", lab=lab).returncode == 4  # two nodes have a "web": say which
    out = podlab("exec", "container/node-3/web", "--", "ip", "-4", "-o", "addr", "show", "eth0", lab=lab).stdout
    assert "172.17.0.2/16" in out
    save = lab.exec("node/node-3", ["iptables-save"]).stdout
    for line in ("-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
                 "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE", "-A FORWARD -j DOCKER-USER",
                 "-A DOCKER-FORWARD -j DOCKER-CT", ":FORWARD DROP [0:0]"):
        assert line in save.splitlines(), line


def test_capture_on_a_container_shows_the_masqueraded_source(lab, tmp_path) -> None:
    """On node-3/web's eth0 the SYN from node-4's db arrives from node-4's address, to web's own 172.17.0.2:80."""
    n3, n4 = _node_ip(lab, "node-3"), _node_ip(lab, "node-4")
    out = tmp_path / "c.pcapng"
    cap = subprocess.Popen(podlab_argv("capture", "container/node-3/web", "--filter", "tcp port 80 and "
                                       "tcp[tcpflags] & tcp-syn != 0", "-c", "2", "-d", "20", "-w", str(out),
                                       "--decode", lab=lab),
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(cap.stderr, "capturing on", timeout=20)
        assert _get(_ns(lab, "container/node-4/db"), f"http://{n3}:8080/hostname").body == "node-3/web"
        stdout, stderr = cap.communicate(timeout=30)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    assert cap.returncode == 0, stderr
    assert re.search(rf"{re.escape(n4)} → 172\.17\.0\.2 +TCP +\d+ → 80 \[SYN\]", stdout), stdout


DOWN = """
version: 1
name: x
nodes: [{name: node-1}, {name: node-2, runtime: docker}]
pods: [{name: p, node: node-1, containers: [{name: c, image: netexec, ports: [{containerPort: 80, hostPort: 8080}]}]}]
containers: [{name: web, node: node-2, publish: ["8080:80"]}]
"""


def test_down_leaves_nothing(make_lab) -> None:
    before = root_links()
    lab2 = make_lab(DOWN)
    owned = list(lab2.record["namespaces"])
    assert names.container_ns(lab2.name, "node-2", "web") in owned and all(netns.exists(n) for n in owned)
    procs = [e.proc for e in record.processes(lab2.name)]
    assert podlab("down", lab2.name).returncode == 0
    assert not [n for n in owned if netns.exists(n)]
    assert not [p for p in procs if alive(*p)]
    assert root_links() == before


def test_trace_through_a_published_port_and_to_another_hosts_container(lab) -> None:
    """trace walks containers too: the MASQUERADE on the sending node and the DNAT on the receiving one, read
    from their rules; and the address of another host's container ends on the sender's own docker0."""
    from emulator.tools.trace import trace
    n3, n4 = _node_ip(lab, "node-3"), _node_ip(lab, "node-4")
    res = trace(lab, "container/node-4/db", f"{n3}:8080")
    text = "\n".join(res.lines())
    assert res.delivered and res.problem is None, text
    assert f"SNAT 172.17.0.3 → {n4}" in text and "by iptables nat POSTROUTING" in text
    assert f"DNAT {n3}:8080 → 172.17.0.2:80 by iptables nat PREROUTING → DOCKER" in text
    assert res.hops[-1].at == "node-3.web"
    res = trace(lab, "container/node-3/web", "172.17.0.3:80")
    assert not res.delivered and "node-4/db holds 172.17.0.3, on another Docker host" in (res.problem or "")
    res = trace(lab, "container/node-4/db", "172.17.0.2:80")  # meant node-3's web: node-4's own answers
    assert res.delivered and res.hops[-1].at == "node-4.web"


def test_apply_after_up_meets_the_nodeports_filter(lab) -> None:
    """Pods applied to the running lab: one wanting 8081 (taken on both nodes) stays Pending with the scheduler's
    message; one pinned to node-2 with a free hostPort runs behind the real portmap, whose DEL removes its chain."""
    web = lambda hp: [{"name": "web", "image": "netexec", "ports": [{"containerPort": 8080, "hostPort": hp}]}]  # noqa
    try:
        lab.apply_pod({"name": "hp-4", "containers": web(HOSTPORT)})
        st = lab.pod("hp-4").status
        assert st["phase"] == "Pending" and st["message"].startswith(
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.")
        lab.apply_pod({"name": "hp-5", "node": "node-2", "containers": web(9091)})
        st = lab.wait_pod("hp-5")
        r = _get(_ns(lab, "external"), f"http://{_node_ip(lab, 'node-2')}:9091/hostname", tries=20)
        assert r.ok and r.body == "hp-5"
        chain = portmap.chain_name("cbr0", st["sandbox"]["id"])
        assert chain in lab.exec("node/node-2", ["iptables-save", "-t", "nat"]).stdout
        lab.delete_pod("hp-5")
        assert chain not in lab.exec("node/node-2", ["iptables-save", "-t", "nat"]).stdout
        lab.delete_pod("hp-4")
        assert lab.store.get_status("pods", "hp-4") is None
    finally:
        for p in ("hp-4", "hp-5"):
            if lab.store.get("pods", p) is not None:
                lab.delete_pod(p)


def test_kube_proxy_runs_on_the_kubernetes_nodes_only(lab) -> None:
    """A Docker host runs no kube-proxy (none of its rules, no kube-proxy-xxxxx pod), as a real Docker host."""
    for node, want in (("node-1", True), ("node-2", True), ("node-3", False), ("node-4", False)):
        rules = lab.exec(f"node/{node}", ["iptables-save", "-t", "nat"]).stdout
        assert ("KUBE-SERVICES" in rules) == want, (node, rules[:500])
    out = kubectl_runner(lab.name)("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-proxy", "-o",
                                   "jsonpath={.items[*].spec.nodeName}").stdout
    assert sorted(out.split()) == ["node-1", "node-2"]
