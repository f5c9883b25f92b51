"""Around the Services e2e checks: the CLI in kubectl's shape, cluster DNS over UDP and TCP, a bad topology
refused before anything exists, no path out of the lab, and ``down`` removing every process, namespace and
resolv.conf the services layer made."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dns.message
import dns.query
import pytest

from emulator.check import probes as probe
from emulator.proc.lifecycle import alive
from emulator.errors import BuildError, TopologyError
from emulator.state import record
from emulator.lab.api import Lab, run_in
from emulator.netlink import netns
from emulator.services.component import wait_synced
from emulator.topology.loader import loads
from tests.integration.conftest import lab_fixture, podlab, unique_name

SMALL = """
version: 1
name: x
nodes: [{name: node-1}, {name: node-2}]
kubeProxy: {mode: iptables}
pods:
  - {name: client, node: node-1, containers: [{name: c, image: netexec}]}
"""
MANIFESTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers: [{name: c, image: netexec, ports: [{containerPort: 8080, name: http}]}]
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  type: NodePort
  selector: {app: hello}
  ports: [{name: http, port: 80, targetPort: http}]
"""


lab = lab_fixture(SMALL, "host-gw")


def test_cluster_dns_over_udp_and_tcp_from_a_pod(lab: Lab) -> None:
    q = dns.message.make_query("kube-dns.kube-system.svc.cluster.local", "A")
    with netns.entered(lab.pod("client").netns):  # the query leaves from the pod's namespace
        udp = dns.query.udp(q, "10.96.0.10", timeout=3)
        tcp = dns.query.tcp(q, "10.96.0.10", timeout=3)
    assert [r.to_text() for rr in udp.answer for r in rr] == ["10.96.0.10"]
    assert [r.to_text() for rr in tcp.answer for r in rr] == ["10.96.0.10"]
    resolv = Path(f"/etc/netns/{lab.pod('client').netns}/resolv.conf").read_text()
    assert "nameserver 10.96.0.10" in resolv and "options ndots:5" in resolv


def test_cli_apply_get_scale_delete(lab: Lab) -> None:
    r = podlab("apply", "-f", "-", input=MANIFESTS, lab=lab)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["deployment.apps/hello created", "service/hello created"]
    assert podlab("apply", "-f", "-", input=MANIFESTS, lab=lab).stdout.split() == [
        "deployment.apps/hello", "unchanged", "service/hello", "unchanged"]
    deadline = time.monotonic() + 20
    while (lab.store.get_status("deployments", "hello") or {}).get("readyReplicas") != 2:
        assert time.monotonic() < deadline, lab.store.get_status("deployments", "hello")
        time.sleep(0.05)
    wait_synced(lab.paths, lab.store, ["node-1", "node-2"])  # the endpoints are current
    bad_service = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 99999}]}\n"
    reads = {  # commands that change nothing, run side by side
        "deploy-json": (["get", "deploy", "hello", "-o", "json"], None), "svc": (["get", "svc", "-A"], None),
        "svc-default": (["get", "svc"], None),
        "ep": (["get", "ep", "hello"], None), "deploy": (["get", "deploy"], None),
        "describe": (["describe", "svc", "hello"], None), "bad": (["apply", "-f", "-"], bad_service),
        "external": (["exec", "external", "--", "ip", "-4", "-o", "addr", "show", "eth0"], None)}
    out = dict(probe.matrix(reads, lambda k: podlab(*reads[k][0], input=reads[k][1], lab=lab)))
    dep = json.loads(out["deploy-json"].stdout)  # one name: the object
    assert dep["status"].get("readyReplicas") == 2, dep
    table = out["svc"].stdout.splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert any(line.split()[:2] == ["kube-system", "kube-dns"] for line in table)
    hello = next(line.split() for line in table if " hello " in line)
    np = lab.store.get("services", "hello")["spec"]["ports"][0]["nodePort"]
    assert hello[2] == "NodePort" and hello[5] == f"80:{np}/TCP"
    table = out["svc-default"].stdout.splitlines()  # the default namespace, as kubectl lists it
    assert table[0].split()[0] == "NAME" and " kube-dns " not in "\n".join(table)
    eps = out["ep"].stdout.splitlines()
    assert eps[0].split() == ["NAME", "ENDPOINTS", "AGE"] and eps[1].count(":8080") == 2
    assert out["deploy"].stdout.splitlines()[1].split()[:4] == ["hello", "2/2", "2", "2"]
    assert "KUBE-SVC-" in out["describe"].stdout
    bad = out["bad"]
    assert bad.returncode == 2 and "spec.ports[0].port" in bad.stderr and "fix:" in bad.stderr
    ext = out["external"]
    assert ext.returncode == 0 and "203.0.113.2/24" in ext.stdout
    scaled = podlab("scale", "deploy", "hello", "--replicas", "3", lab=lab)
    assert scaled.stdout.strip() == "deployment.apps/hello scaled"
    deadline = time.monotonic() + 20
    while len([p for p in lab.store.names("pods") if p.startswith("hello-")]) != 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert podlab("delete", "deploy", "hello", lab=lab).stdout.strip() == 'deployment.apps "hello" deleted'
    assert not [p for p in lab.store.names("pods") if p.startswith("hello-")]
    assert podlab("delete", "svc/hello", lab=lab).stdout.strip() == 'service "hello" deleted'
    gone = podlab("get", "svc", "hello", lab=lab)
    assert gone.returncode == 4 and f'service "hello" not found in lab {lab.name}' in gone.stderr


def test_the_lab_has_no_path_out(lab: Lab) -> None:
    gw = f"{lab.name}-gw"
    assert "default" not in run_in(gw, ["ip", "route"]).stdout  # the router knows the LAN and 203.0.113.0/24 only
    assert run_in(gw, ["ip", "route", "get", "8.8.8.8"]).returncode != 0
    ext = f"{lab.name}-external"
    assert run_in(ext, ["ip", "route", "get", "8.8.8.8"]).stdout.startswith("8.8.8.8 via 203.0.113.1")  # the router
    # ... which has nowhere to send it; and no veth of the lab ends in the root namespace (checked for the session)
    assert run_in(lab.node("node-1").netns, ["ip", "route", "show", "default"]).stdout.startswith(
        "default via 192.168.56.1 dev eth0")


def test_bad_service_section_stops_up_before_anything_exists() -> None:
    name = unique_name("s")
    text = SMALL + "services: [{name: web, ports: [{port: 80, nodePort: 30001}]}]\n"
    with pytest.raises(TopologyError) as e:
        Lab.up(loads(text, source="lab.yaml", name=name))
    assert e.value.field == "services[0].ports[0].nodePort" and "fix:" in str(e.value)
    assert record.load(name) is None and not [n for n in netns.list_names() if n.startswith(f"{name}-")]


def test_failed_up_rolls_back_services_too(monkeypatch) -> None:
    from emulator.services import component
    name = unique_name("s")

    def broken(self, ctx):
        raise RuntimeError("injected fault after the services started")
    monkeypatch.setattr(component.ServicesComponent, "ready", broken)
    with pytest.raises(BuildError):
        Lab.up(loads(SMALL, source="<test>", name=name))
    assert record.load(name) is None and not [n for n in netns.list_names() if n.startswith(f"{name}-")]
    leftovers = os.listdir("/etc/netns") if os.path.isdir("/etc/netns") else []
    assert not [d for d in leftovers if d.startswith(f"{name}-")]


def test_down_removes_processes_namespaces_and_resolv_files(lab: Lab) -> None:
    """Runs last: it removes the module's lab."""
    pids = [{"pid": e.pid, "start": e.start, "what": e.what} for e in record.processes(lab.name)]
    whats = {p["what"] for p in pids}
    assert {"controller-manager", "kube-proxy of node-1", "kube-proxy of node-2", "external echo server"} <= whats
    assert "cluster DNS" not in whats  # DNS runs in pods, started by the agents like any pod's containers
    dns_pods = [p["metadata"]["name"] for p in lab.store.list("pods", ns="kube-system")
                if p["metadata"]["name"].startswith("coredns-")]
    dns_procs = [(st["containerStatuses"][0]["pid"], st["containerStatuses"][0]["pidStart"]) for st in
                 (lab.store.get_status("pods", n, "kube-system") for n in dns_pods)]
    assert len(dns_procs) == 2 and all(alive(pid, start) for pid, start in dns_procs)
    owned = [f"/etc/netns/{ns}" for ns in json.loads((lab.paths.root / "resolv-owned.json").read_text())]
    assert owned and all(os.path.isdir(d) for d in owned)
    spaces = [f"{lab.name}-{s}" for s in ("gw", "external")] + [f"{lab.name}-{n}.kube-system" for n in dns_pods]
    assert all(netns.exists(n) for n in spaces) and not netns.exists(f"{lab.name}-dns")
    assert lab.down()
    assert not any(alive(p["pid"], p["start"]) for p in pids)
    assert not any(alive(pid, start) for pid, start in dns_procs)
    assert not any(os.path.exists(d) for d in owned)
    assert not any(netns.exists(n) for n in spaces)
