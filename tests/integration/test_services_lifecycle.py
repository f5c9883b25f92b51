"""Issue 4, around the e2e checks: the CLI in kubectl's shape, cluster DNS over UDP and TCP, a bad topology
refused before anything exists, no path out of the lab, and ``down`` removing every process, namespace and
resolv.conf the services layer made."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import pytest

from emulator.proc.lifecycle import alive
from emulator.errors import BuildError, TopologyError
from emulator.state import record
from emulator.lab import teardown
from emulator.lab.api import Lab, run_in
from emulator.netlink import netns
from emulator.topology.loader import loads
from tests.integration.conftest import PODLAB, unique_name

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


@pytest.fixture(scope="module")
def lab() -> Lab:
    name = unique_name("s")
    try:
        yield Lab.up(loads(SMALL, source="<test>", name=name, routing="host-gw"))
    finally:
        teardown.destroy(name)


def podlab(lab: Lab, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PODLAB, "--lab", lab.name, *args], capture_output=True, text=True, input=input,
                          timeout=60)


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
    r = podlab(lab, "apply", "-f", "-", input=MANIFESTS)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["deployment.apps/hello created", "service/hello created"]
    assert podlab(lab, "apply", "-f", "-", input=MANIFESTS).stdout.split() == [
        "deployment.apps/hello", "unchanged", "service/hello", "unchanged"]
    deadline = time.monotonic() + 20
    while True:
        deps = json.loads(podlab(lab, "get", "deploy", "hello", "-o", "json").stdout)["items"]
        if deps[0]["status"].get("readyReplicas") == 2:
            break
        assert time.monotonic() < deadline, deps
        time.sleep(0.1)
    table = podlab(lab, "get", "svc", "-A").stdout.splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert any(line.split()[:2] == ["kube-system", "kube-dns"] for line in table)
    hello = next(line.split() for line in table if " hello " in line)
    np = lab.store.get("services", "hello")["spec"]["ports"][0]["nodePort"]
    assert hello[2] == "NodePort" and hello[5] == f"80:{np}/TCP"
    table = podlab(lab, "get", "svc").stdout.splitlines()  # the default namespace, as kubectl lists it
    assert table[0].split()[0] == "NAME" and " kube-dns " not in "\n".join(table)
    eps = podlab(lab, "get", "ep", "hello").stdout.splitlines()
    assert eps[0].split() == ["NAME", "ENDPOINTS", "AGE"] and eps[1].count(":8080") == 2
    assert podlab(lab, "get", "deploy").stdout.splitlines()[1].split()[:4] == ["hello", "2/2", "2", "2"]
    assert "KUBE-SVC-" in podlab(lab, "describe", "svc", "hello").stdout
    assert podlab(lab, "scale", "deploy", "hello", "--replicas", "3").stdout.strip() == "deployment.apps/hello scaled"
    deadline = time.monotonic() + 20
    while len([p for p in lab.store.names("pods") if p.startswith("hello-")]) != 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    bad = podlab(lab, "apply", "-f", "-", input="apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
                                                "spec: {ports: [{port: 99999}]}\n")
    assert bad.returncode == 2 and "spec.ports[0].port" in bad.stderr and "fix:" in bad.stderr
    assert podlab(lab, "delete", "deploy", "hello").stdout.strip() == 'deployment.apps "hello" deleted'
    assert not [p for p in lab.store.names("pods") if p.startswith("hello-")]
    assert podlab(lab, "delete", "svc/hello").stdout.strip() == 'service "hello" deleted'
    assert podlab(lab, "get", "svc", "hello").returncode == 1
    ext = podlab(lab, "exec", "external", "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert ext.returncode == 0 and "203.0.113.2/24" in ext.stdout


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


def test_down_removes_processes_namespaces_and_resolv_files() -> None:
    name = unique_name("s")
    lab = Lab.up(loads(SMALL, source="<test>", name=name))
    try:
        pids = [{"pid": e.pid, "start": e.start, "what": e.what} for e in record.processes(name)]
        whats = {p["what"] for p in pids}
        assert {"cluster DNS", "controller-manager", "kube-proxy of node-1", "kube-proxy of node-2",
                "external echo server"} <= whats
        owned = [f"/etc/netns/{ns}" for ns in json.loads((lab.paths.root / "resolv-owned.json").read_text())]
        assert owned and all(os.path.isdir(d) for d in owned)
        spaces = [f"{name}-{s}" for s in ("dns", "gw", "external")]
        assert all(netns.exists(n) for n in spaces)
    finally:
        teardown.destroy(name)
    assert not any(alive(p["pid"], p["start"]) for p in pids)
    assert not any(os.path.exists(d) for d in owned)
    assert not any(netns.exists(n) for n in spaces)


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
