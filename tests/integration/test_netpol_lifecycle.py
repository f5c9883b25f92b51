"""NetworkPolicy in a running lab: policies from the topology, the CLI (apply/get/describe/delete, check netpol,
netpol matrix/status), changes live before the next probe (a new pod, a namespace that appears later), refused
bad input, enforcement after Service DNAT and before SNAT (a NodePort from outside), statefulness, SCTP detection,
enforcers started on demand, and the break-it test: a rule removed by hand is found by ``check netpol`` and put
back by the enforcer's next sync."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest

from emulator.errors import MissingDependencyError
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.netpol import cluster, component, enforcer, kernel, names, nodestate, probe
from emulator.netpol.parse import parse_manifest
from emulator.state.store import read_json
from tests.integration import enforcer_pause
from tests.integration.conftest import lab_fixture, podlab

SERVER = ("{name: c, image: 'registry.k8s.io/e2e-test-images/agnhost:2.53', args: [porter], "
          "ports: [{containerPort: 80, name: http}, {containerPort: 80, protocol: UDP, name: dns-ish}]}")
TOPOLOGY = f"""
version: 1
name: x
routing: host-gw
nodes: [{{name: node-1}}, {{name: node-2}}]
kubeProxy: {{mode: nftables}}
pods:
  - {{name: server, node: node-1, labels: {{app: server}}, containers: [{SERVER}]}}
  - {{name: client, node: node-2, labels: {{role: client}}, containers: [{SERVER}]}}
  - {{name: other, node: node-1, labels: {{role: other}}, containers: [{SERVER}]}}
services:
  - {{name: server, type: NodePort, selector: {{app: server}}, ports: [{{port: 80, targetPort: 80}}]}}
networkPolicies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {{name: allow-client}}
    spec:
      podSelector: {{matchLabels: {{app: server}}}}
      ingress:
        - from: [{{podSelector: {{matchLabels: {{role: client}}}}}}]
          ports: [{{port: http}}]
        - from: [{{ipBlock: {{cidr: 203.0.113.0/24}}}}]
"""


def cli(lab: Lab, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return podlab(*args, lab=lab, input=stdin)


def tcp(lab: Lab, src: str, ip: str, port: int = 80, ns: str | None = None) -> bool:
    return probe.run([probe.Target(ns or lab.pod(src).netns, ip, port, "TCP")])[0].connected


def sync(lab: Lab) -> None:
    component.wait_synced(lab.paths, lab.store, [n.name for n in lab.nodes])


def server_answers(lab: Lab) -> None:
    """The client reaches the server (admitted by the topology's policy) once its server has bound port 80."""
    ip = lab.pod("server").ip
    deadline = time.monotonic() + 10
    while not tcp(lab, "client", ip):
        assert time.monotonic() < deadline, "the server never answered the client"
        time.sleep(0.1)


lab = lab_fixture(TOPOLOGY, ready=server_answers)


def test_topology_policy_is_live_when_up_returns(lab: Lab) -> None:
    ip = lab.pod("server").ip
    assert tcp(lab, "client", ip)  # admitted by ingress[0] (named port http = 80/TCP)
    assert not tcp(lab, "other", ip)  # same node as the server, not admitted
    r = probe.run([probe.Target(lab.pod("client").netns, ip, 80, "UDP")])[0]
    assert not r.connected and r.detail == "timeout"  # the rule names a TCP port only
    assert tcp(lab, "server", lab.pod("other").ip)  # other pods are not selected: open


def test_get_describe_status(lab: Lab) -> None:
    r = cli(lab, "get", "netpol")
    assert r.returncode == 0 and "allow-client" in r.stdout and "app=server" in r.stdout, r.stderr
    r = cli(lab, "describe", "netpol", "allow-client")
    assert r.returncode == 0, r.stderr
    assert "Allowing ingress traffic:" in r.stdout and "To Port: http/TCP" in r.stdout
    assert "default/server (" in r.stdout and "ingress[0] admits: default/client" in r.stdout
    assert f"chain {names.policy_chain('Ingress', 'default', 'allow-client')}" in r.stdout
    r = cli(lab, "netpol", "status")
    assert r.returncode == 0 and r.stdout.count("Running") == 2, r.stdout
    assert not tcp(lab, "other", lab.pod("server").ip)  # counted by the drop rule
    r = cli(lab, "netpol", "explain", "other", "server")
    assert r.returncode == 0 and "default/other → default/server 80/TCP: dropped" in r.stdout, r.stderr
    assert 'dropped by node-1 chain ingress, rule "no NetworkPolicy allows this ingress" [' in r.stdout
    assert "[0 packets so far]" not in r.stdout.split("dropped by")[1].splitlines()[0]


def test_nodeport_is_policed_after_dnat_and_before_snat(lab: Lab) -> None:
    """From outside through the NodePort: on the server's node the source is still the external host (SNAT comes
    after the policy), so the ipBlock admits it; through the other node it arrives masqueraded to that node's IP
    and is dropped — externalTrafficPolicy: Cluster loses the client's address."""
    svc = lab.store.get("services", "server")
    port = svc["spec"]["ports"][0]["nodePort"]
    ext = f"{lab.name}-external"
    assert netns.exists(ext)
    assert tcp(lab, "", lab.node("node-1").ip, port, ns=ext)
    assert not tcp(lab, "", lab.node("node-2").ip, port, ns=ext)


def test_bad_input_is_refused_and_changes_nothing(lab: Lab) -> None:
    before = sorted(lab.store.names(cluster.POLICIES))
    bad = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad}
spec:
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/8}}]}]
"""
    r = cli(lab, "apply", "-f", "-", stdin=bad)
    assert r.returncode == 2 and "spec.ingress[0].from[0].ipBlock.cidr" in r.stderr and "10.0.0.0/8" in r.stderr
    r = cli(lab, "apply", "-f", "-", stdin=bad.replace("{ipBlock: {cidr: 10.0.0.1/8}}", "{podSelector: {}}")
            .replace("ingress:", "egress:").replace("from:", "to:") + "  policyTypes: [Egres]\n")
    assert r.returncode == 2 and "spec.policyTypes[0]" in r.stderr and "did you mean 'Egress'" in r.stderr
    assert sorted(lab.store.names(cluster.POLICIES)) == before


def test_apply_delete_and_a_new_pod_before_the_next_probe(lab: Lab) -> None:
    doc = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: other-egress, namespace: default}
spec:
  podSelector: {matchLabels: {role: other}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {tier: backend}}}]}]
"""
    r = cli(lab, "apply", "-f", "-", stdin=doc)
    assert r.returncode == 0 and "networkpolicy.networking.k8s.io/other-egress created" in r.stdout, r.stderr
    assert not tcp(lab, "other", lab.pod("client").ip)
    lab.apply_pod({"name": "backend", "node": "node-2", "labels": {"tier": "backend"},
                   "containers": [{"name": "c", "image": "agnhost", "args": ["porter"],
                                   "ports": [{"containerPort": 80}]}]})
    try:
        lab.wait_pod("backend")
        sync(lab)
        ip = lab.pod("backend").ip
        deadline = time.monotonic() + 5  # the new pod's server binds a moment after Running
        while not tcp(lab, "client", ip) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tcp(lab, "other", ip)  # admitted the moment it exists: egress to tier=backend
        r = cli(lab, "apply", "-f", "-", stdin=doc)
        assert "other-egress unchanged" in r.stdout
        r = cli(lab, "delete", "netpol", "other-egress")
        assert r.returncode == 0 and "deleted" in r.stdout, r.stderr
        assert tcp(lab, "other", lab.pod("client").ip)
    finally:
        lab.delete_pod("backend")


def test_policy_for_a_namespace_whose_pods_come_later(lab: Lab) -> None:
    """A namespace made after the enforcers started, its policy stored before its first pod: the pod's store
    directory (pods/late/) appears later, and the enforcers watch it and isolate the pod."""
    assert lab.create_namespace("late") == "namespace/late created"
    try:
        cluster.put_policy(lab.store, parse_manifest({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                                      "metadata": {"name": "deny", "namespace": "late"},
                                                      "spec": {"podSelector": {}, "ingress": []}}))
        sync(lab)
        lab.apply_pod({"name": "latepod", "namespace": "late", "node": "node-2",
                       "containers": [{"name": "c", "image": "agnhost", "args": ["porter"],
                                       "ports": [{"containerPort": 80}]}]})
        lab.wait_pod("late/latepod")
        sync(lab)
        time.sleep(0.3)
        ip = lab.pod("late/latepod").ip
        assert not tcp(lab, "client", ip)
        cluster.delete_policy(lab.store, "late", "deny")
        sync(lab)
        deadline = time.monotonic() + 5
        while not tcp(lab, "client", ip) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tcp(lab, "client", ip)
    finally:
        cluster.delete_policy(lab.store, "late", "deny")
        lab.delete_namespace("late")  # its pod too, as the namespace controller does


def test_stateful_an_open_flow_outlives_a_new_deny(lab: Lab) -> None:
    """Policy decides at connection setup (as Calico, kube-router, Antrea): a UDP flow allowed before keeps its
    conntrack entry after a deny-all, a new flow (a new source port) is dropped."""
    ip = lab.pod("other").ip
    s = netns.socket_in(lab.pod("client").netns, socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.connect((ip, 80))
        s.send(b"one")
        assert s.recv(100) == b"one"
        cluster.put_policy(lab.store, parse_manifest({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                                      "metadata": {"name": "deny-other"},
                                                      "spec": {"podSelector": {"matchLabels": {"role": "other"}},
                                                               "ingress": []}}))
        sync(lab)
        s.send(b"two")
        assert s.recv(100) == b"two"
        assert not probe.run([probe.Target(lab.pod("client").netns, ip, 80, "UDP")])[0].connected
    finally:
        s.close()
        cluster.delete_policy(lab.store, "default", "deny-other")
        sync(lab)


def test_sctp_is_detected(lab: Lab) -> None:
    r = cli(lab, "netpol", "matrix", "--port", "80/SCTP", "--probe")
    assert r.returncode == 0, r.stderr
    if not probe.sctp_available():
        assert "this kernel has no SCTP sockets" in r.stdout
        with pytest.raises(MissingDependencyError, match="no SCTP sockets"):
            probe.run([probe.Target(lab.pod("client").netns, lab.pod("server").ip, 80, "SCTP")])


def _handle(lab: Lab, node: str, chain: str, comment: str) -> int:
    out = lab.node(node).exec(["nft", "-a", "list", "chain", names.FAMILY, names.TABLE, chain]).stdout
    for line in out.splitlines():
        if f'comment "{comment}"' in line:
            return int(line.rsplit("# handle", 1)[1])
    raise AssertionError(f"no rule {comment!r} in {chain} on {node}:\n{out}")


def test_break_it_a_rule_removed_by_hand(lab: Lab) -> None:
    r = cli(lab, "check", "netpol")
    assert r.returncode == 0, r.stdout + r.stderr
    st_path = enforcer.status_path(lab.paths, "node-1")
    before = read_json(st_path)["repairs"]
    chain = names.policy_chain("Ingress", "default", "allow-client")
    with enforcer_pause.paused(lab, "node-1"):  # the damage is seen before the enforcer's repair
        handle = _handle(lab, "node-1", chain, "default/allow-client ingress[0]")
        assert lab.node("node-1").exec(["nft", "delete", "rule", names.FAMILY, names.TABLE, chain, "handle",
                                        str(handle)]).returncode == 0
        r = cli(lab, "check", "netpol")
        assert r.returncode == 1, r.stdout
        assert "default/client → default/server 80/TCP via pod IP: expected connected, observed blocked" in r.stdout
        assert f"node-1: chain {chain}: rule 'default/allow-client ingress[0]' is missing" in r.stdout
        assert "allowed by default/allow-client ingress[0]" in r.stdout
    deadline = time.monotonic() + enforcer.HEALTH_PERIOD + 5
    while read_json(st_path)["repairs"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read_json(st_path)["repairs"] == before + 1
    assert "full resync" in enforcer.log_path(lab.paths, "node-1").read_text()
    want = nodestate.build(cluster.ClusterReader(lab.store).cluster(), "node-1")
    assert kernel.differences(kernel.read(lab, "node-1"), want) == []
    r = cli(lab, "check", "netpol")
    assert r.returncode == 0, r.stdout


def test_enforcers_start_on_the_first_apply(make_lab) -> None:
    topo = """
version: 1
nodes: [{name: node-1}]
pods:
  - {name: a, labels: {app: a}, containers: [{name: c, image: agnhost, args: [porter], ports: [{containerPort: 80}]}]}
  - {name: b, labels: {app: b}, containers: [{name: c, image: agnhost, args: [porter], ports: [{containerPort: 80}]}]}
"""
    lab = make_lab(topo)
    assert not component.running(lab.paths, "node-1")
    doc = ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-a}\n"
           "spec: {podSelector: {matchLabels: {app: a}}}\n")
    r = cli(lab, "apply", "-f", "-", stdin=doc)
    assert r.returncode == 0 and "no enforcer was running on node-1" in r.stderr, r.stderr
    assert component.running(lab.paths, "node-1")
    assert not tcp(lab, "b", lab.pod("a").ip)
    assert lab.node("node-1").exec(["nft", "list", "table", names.FAMILY, names.TABLE]).returncode == 0
