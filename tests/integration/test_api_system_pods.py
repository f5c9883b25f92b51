"""The cluster's own pods with the real kubectl: in a bgp lab running kube-proxy, ``kubectl get pods -A -o wide``
lists ``kube-proxy-xxxxx`` and ``calico-node-xxxxx`` per node (hostNetwork: the node's IP), their status follows
the real processes (a stopped BIRD turns its calico-node pod not ready, a started one counts a restart), ``logs``
shows the process's own log and ``exec`` runs in the node's namespace."""
from __future__ import annotations

import re
import time

import pytest

from emulator.lab import teardown
from emulator.lab.api import Lab
from emulator.topology.loader import loads
from tests.integration.conftest import kubectl_runner, podlab, unique_name

TOPOLOGY = """
version: 1
name: x
routing: bgp
kubeProxy: {mode: iptables}
nodes: [{name: node-1}, {name: node-2}]
pods:
  - {name: web-1, node: node-1, labels: {app: web}, containers: [{name: c, image: netexec, ports: [{containerPort: 8080}]}]}
"""


@pytest.fixture(scope="module")
def lab():
    name = unique_name("sysp")
    try:
        yield Lab.up(loads(TOPOLOGY, "<system pods>", name=name))
    finally:
        teardown.destroy(name)


@pytest.fixture(scope="module")
def kubectl(lab, tmp_path_factory):
    return kubectl_runner(lab.name, tmp_path_factory.mktemp("kubectl-cache"))


def rows(kubectl, *args: str) -> dict[str, list[str]]:
    return {r.split()[1]: r.split() for r in kubectl("get", "pods", "-A", "-o", "wide", *args).stdout.splitlines()[1:]}


def wait_row(kubectl, name: str, ready: str, timeout: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        row = rows(kubectl)[name]
        if row[2] == ready:
            return row
        assert time.monotonic() < deadline, f"{name} never became {ready}: {row}"
        time.sleep(0.3)


def test_kube_proxy_and_calico_node_per_node(lab: Lab, kubectl) -> None:
    deadline = time.monotonic() + 15
    while len([n for n in rows(kubectl) if re.match(r"^(kube-proxy|calico-node)-[a-z0-9]{5}$", n)]) < 4:
        assert time.monotonic() < deadline, rows(kubectl)
        time.sleep(0.3)
    table = rows(kubectl)
    ips = {n.name: n.ip for n in lab.nodes}
    for prefix in ("kube-proxy", "calico-node"):
        mine = [r for n, r in table.items() if n.startswith(prefix + "-")]
        assert sorted(r[7] for r in mine) == ["node-1", "node-2"]
        for r in mine:
            assert r[0] == "kube-system" and r[2] == "1/1" and r[3] == "Running" and r[6] == ips[r[7]], r
    assert not [n for n in table if n.startswith("kube-flannel")]
    proxy = next(r for n, r in table.items() if n.startswith("kube-proxy-") and r[7] == "node-1")
    log = kubectl("logs", "-n", "kube-system", proxy[1]).stdout
    assert log.strip(), "kube-proxy's log is empty"
    out = kubectl("exec", "-n", "kube-system", proxy[1], "--", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"inet {ips['node-1']}/" in out
    owner = kubectl("get", "pod", "-n", "kube-system", proxy[1], "-o",
                    "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} "
                    "{.spec.hostNetwork}").stdout
    assert owner == "DaemonSet/kube-proxy true"
    r = kubectl("delete", "ds", "-n", "kube-system", "kube-proxy", check=False)
    assert r.returncode == 1 and "MethodNotAllowed" in r.stderr  # the lab's own: read-only


def test_calico_node_follows_bird(lab: Lab, kubectl) -> None:
    name = next(n for n, r in rows(kubectl).items() if n.startswith("calico-node-") and r[7] == "node-1")
    wait_row(kubectl, name, "1/1")
    r = podlab("bgp", "stop", "node-1", lab=lab)
    assert r.returncode == 0, r.stderr
    try:
        row = wait_row(kubectl, name, "0/1")
        assert row[3] == "CrashLoopBackOff"
        ds = {r.split()[0]: r.split() for r in kubectl("get", "ds", "-n", "kube-system").stdout.splitlines()[1:]}
        assert ds["calico-node"][1:4] == ["2", "2", "1"] and ds["kube-proxy"][1:4] == ["2", "2", "2"]
    finally:
        r = podlab("bgp", "start", "node-1", lab=lab)
        assert r.returncode == 0, r.stderr
    row = wait_row(kubectl, name, "1/1")
    assert row[3] == "Running" and row[4].startswith("1"), row
