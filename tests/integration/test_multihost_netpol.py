"""NetworkPolicy across hosts: 3 emulated hosts × 2 nodes (as in ``test_multihost``: own network, mount and pid
namespaces, own sshd; the CLI and kubectl in a controller namespace), one shared lab.

Proven from real connections between pods (``curl`` in one pod to netexec in another, on other hosts): the
topology's default-deny ingress on ``back`` (mhn1) blocks ``client`` (mhn3) and ``other`` (mhn2); a policy applied
with ``podlab apply`` admitting ``app=client`` lets ``client`` in — the server sees the client's pod IP — while
``other`` stays denied; a pod with that label applied later on a host of its own is admitted once its apply
returns; an egress policy on the clients (only to ``app=back``) cuts ``client`` → ``other`` on its own node's
host; a policy created with kubectl through the controller's API server is enforced on every host and lifted by
``kubectl delete``; deleting the policies restores reachability. ``podlab get netpol``, ``netpol status``,
``explain`` and ``matrix`` answer across hosts. Nothing is left on any host afterwards.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from emulator.hosts.emulated import EmulatedHosts
from tests.integration.conftest import KUBECTL
from tests.integration.test_multihost import COMMAND, controller_records, ctl, host_leftovers, lab_store_view

LAB = "mhn-np"
NETEXEC = "containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]"
TOPOLOGY = f"""version: 1
name: {LAB}
routing: vxlan
nodes: [{{name: node-1}}, {{name: node-2}}, {{name: node-3}}, {{name: node-4}}, {{name: node-5}}, {{name: node-6}}]
pods:
  - {{name: back, node: node-1, labels: {{app: back}}, {NETEXEC}}}
  - {{name: other, node: node-2, labels: {{app: other}}, {NETEXEC}}}
  - {{name: client, node: node-3, labels: {{app: client}}, {NETEXEC}}}
networkPolicies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {{name: deny-back}}
    spec:
      podSelector: {{matchLabels: {{app: back}}}}
      policyTypes: [Ingress]
"""
ALLOW_CLIENT = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client}
spec:
  podSelector: {matchLabels: {app: back}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: 8080}]
"""
CLIENT_EGRESS = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: clients-to-back-only}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: back}}}]
"""
ALLOW_OTHER = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-other}
spec:
  podSelector: {matchLabels: {app: back}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: other}}}]
"""
LATER = f"""{{name: client-2, node: node-5, labels: {{app: client}}, {NETEXEC}}}
"""


@pytest.fixture(scope="module")
def hosts() -> Iterator[EmulatedHosts]:
    with EmulatedHosts(3, prefix="mhn") as hs:
        yield hs


@pytest.fixture(scope="module")
def lab(hosts: EmulatedHosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    d = tmp_path_factory.mktemp("mhn")
    topo = d / "t.yaml"
    topo.write_text(TOPOLOGY)
    r = ctl(hosts, "up", str(topo), "--hosts", str(hosts.inventory(COMMAND)))
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        yield {"up": r, "dir": d}
    finally:
        dn = ctl(hosts, "down", LAB)
        assert dn.returncode == 0, dn.stdout + dn.stderr
        assert host_leftovers(hosts) == {} and controller_records(hosts) == []


def manifest(lab: dict, name: str, text: str) -> str:
    p = Path(lab["dir"]) / name
    p.write_text(text)
    return str(p)


def apply(hosts: EmulatedHosts, lab: dict, name: str, text: str) -> str:
    r = ctl(hosts, "apply", "-f", manifest(lab, name, text))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def pod_ips(hosts: EmulatedHosts) -> dict[str, str]:
    return {p["name"]: p["ip"] for p in json.loads(ctl(hosts, "get", "pods", "-o", "json").stdout)["items"]}


def reach(hosts: EmulatedHosts, src: str, dst_ip: str, path: str = "hostname") -> str | None:
    """What ``src`` gets from netexec at ``dst_ip``:8080/``path`` (None: no connection within 2 s)."""
    r = ctl(hosts, "exec", src, "--", "curl", "-sS", "--max-time", "2", f"http://{dst_ip}:8080/{path}")
    return r.stdout.strip() if r.returncode == 0 else None


def kubectl(hosts: EmulatedHosts, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(hosts.controller_argv([str(KUBECTL), "--context", f"podlab-{LAB}", *args]),
                       capture_output=True, text=True, input=input, timeout=90)
    assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def test_up_enforces_the_topology_policy_on_every_host(hosts: EmulatedHosts, lab: dict) -> None:
    err = lab["up"].stderr
    assert "networkpolicy: 1 policy and the 3 pods of 3 hosts pushed to every host; kube-network-policies synced " \
           "on 6 nodes" in err, err
    ips = pod_ips(hosts)
    assert reach(hosts, "client", ips["back"]) is None  # mhn3 → mhn1: default deny
    assert reach(hosts, "other", ips["back"]) is None  # mhn2 → mhn1
    assert reach(hosts, "client", ips["other"]) == "other"  # other is not isolated
    for h in hosts.names:  # every host holds the policy and the other hosts' pods, and enforces on its 2 nodes
        assert set(lab_store_view(hosts, h, LAB, "networkpolicies")) == {"default/deny-back"}
        remote = set(lab_store_view(hosts, h, LAB, "remotepods"))
        assert remote == {"default/back", "default/other", "default/client"} - {
            {"mhn1": "default/back", "mhn2": "default/other", "mhn3": "default/client"}[h]}, (h, remote)
        ps = hosts.host_run(h, ["ps", "-eo", "comm="]).stdout.split()
        assert ps.count("kube-network-po") == 2, (h, ps)
    st = ctl(hosts, "netpol", "status")
    assert st.returncode == 0 and st.stdout.count("Running") == 6 and "# host mhn3" in st.stdout, st.stdout
    assert "deny-back" in ctl(hosts, "get", "netpol").stdout


def test_allow_by_pod_selector_admits_the_client_of_a_third_host(hosts: EmulatedHosts, lab: dict) -> None:
    out = apply(hosts, lab, "allow.yaml", ALLOW_CLIENT)
    assert "networkpolicy.networking.k8s.io/allow-client created" in out, out
    ips = pod_ips(hosts)
    assert reach(hosts, "client", ips["back"], "clientip").split(":")[0] == ips["client"]  # no NAT across hosts
    assert reach(hosts, "other", ips["back"]) is None
    assert "unchanged" in apply(hosts, lab, "allow.yaml", ALLOW_CLIENT)
    table = ctl(hosts, "get", "netpol").stdout
    assert "allow-client" in table and "app=back" in table, table
    ex = ctl(hosts, "netpol", "explain", "client", "back", "--port", "8080/TCP")
    assert ex.returncode == 0 and "allowed by default/allow-client ingress[0]" in ex.stdout, ex.stdout + ex.stderr
    assert "# host mhn1" in ex.stdout and "# host mhn3" in ex.stdout  # each host: its own node's counters
    m = ctl(hosts, "netpol", "matrix", "--port", "8080/TCP", "-o", "json")
    assert m.returncode == 0, m.stderr
    cells = json.loads(m.stdout)[0]["expected"]
    assert cells["cells"]["default/client"]["default/back"] is True, cells
    assert cells["cells"]["default/other"]["default/back"] is False, cells
    probe = ctl(hosts, "netpol", "matrix", "--probe")
    assert probe.returncode == 2 and "not available across hosts yet" in probe.stderr, probe.stderr


def test_a_pod_added_later_on_another_host_is_admitted_after_its_apply(hosts: EmulatedHosts, lab: dict) -> None:
    out = apply(hosts, lab, "later.yaml", LATER)
    assert "client-2 created on node-5 (host mhn2)" in out, out
    ips = pod_ips(hosts)
    assert reach(hosts, "client-2", ips["back"], "clientip").split(":")[0] == ips["client-2"]
    assert reach(hosts, "other", ips["back"]) is None  # the same host as client-2, still denied


def test_egress_policy_cuts_a_client_from_a_pod_that_is_not_its_peer(hosts: EmulatedHosts, lab: dict) -> None:
    ips = pod_ips(hosts)
    apply(hosts, lab, "egress.yaml", CLIENT_EGRESS)
    assert reach(hosts, "client", ips["other"]) is None  # dropped on client's node (mhn3), other is open
    assert reach(hosts, "client", ips["back"]) == "back"  # egress to app=back and back's ingress both allow
    r = ctl(hosts, "delete", "netpol", "clients-to-back-only")
    assert r.returncode == 0 and 'networkpolicy.networking.k8s.io "clients-to-back-only" deleted' in r.stdout, \
        r.stdout + r.stderr
    assert reach(hosts, "client", ips["other"]) == "other"


def test_kubectl_apply_and_delete_of_a_policy_reach_every_host(hosts: EmulatedHosts, lab: dict) -> None:
    ips = pod_ips(hosts)
    r = kubectl(hosts, "apply", "-f", "-", input=ALLOW_OTHER)
    assert "networkpolicy.networking.k8s.io/allow-other created" in r.stdout, r.stdout + r.stderr
    got = kubectl(hosts, "get", "networkpolicy").stdout
    assert all(n in got for n in ("deny-back", "allow-client", "allow-other")), got
    assert reach(hosts, "other", ips["back"]) == "back"
    for h in hosts.names:
        assert "default/allow-other" in lab_store_view(hosts, h, LAB, "networkpolicies")
    kubectl(hosts, "delete", "networkpolicy", "allow-other")
    assert "allow-other" not in kubectl(hosts, "get", "networkpolicy").stdout
    assert reach(hosts, "other", ips["back"]) is None


def test_deleting_the_policies_restores_reachability(hosts: EmulatedHosts, lab: dict) -> None:
    ips = pod_ips(hosts)
    r = ctl(hosts, "delete", "netpol", "deny-back", "allow-client")
    assert r.returncode == 0, r.stdout + r.stderr
    assert reach(hosts, "other", ips["back"]) == "back"
    assert reach(hosts, "client", ips["back"]) == "back"
    for h in hosts.names:
        assert lab_store_view(hosts, h, LAB, "networkpolicies") == {}
