"""NetworkPolicy from the real kubectl: a policy created through the lab's API server lands in the one store and
is enforced by the node's enforcer as one from ``podlab apply`` is; ``kubectl delete`` lifts it. Bad policies are
refused by the API server with the real server's field path, and nothing changes."""
from __future__ import annotations

import subprocess
import time

from emulator.testing import LabUnderTest
from tests.integration.conftest import kubectl_runner, lab_fixture

TOPOLOGY = """
version: 1
name: npk
networkPolicies: []
nodes: [{name: node-1}, {name: node-2}]
pods:
  - {name: server, node: node-1, labels: {app: server}}
  - {name: client, node: node-2, labels: {app: client}}
"""
DENY = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-server}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
"""
BAD = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/8}}]}]
"""

lab = lab_fixture(TOPOLOGY, "vxlan", prefix="npk")


def kubectl(lab: LabUnderTest, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return kubectl_runner(lab.name)(*args, input=input, check=False)


def reached(lab: LabUnderTest, want: bool, timeout: float = 5.0) -> bool:
    """Whether client reaches server on TCP 8080, waiting up to ``timeout`` for it to become ``want``."""
    deadline = time.monotonic() + timeout
    while True:
        ok = lab.observed_source("client", "server", 8080) is not None
        if ok == want or time.monotonic() > deadline:
            return ok
        time.sleep(0.1)


def test_a_policy_made_with_kubectl_is_enforced_and_lifted(lab: LabUnderTest) -> None:
    assert reached(lab, True), "client cannot reach server before any policy"
    r = kubectl(lab, "apply", "-f", "-", input=DENY)
    assert r.returncode == 0 and r.stdout.strip() == "networkpolicy.networking.k8s.io/deny-server created", r.stderr
    assert lab.store.get("networkpolicies", "deny-server") is not None  # the one store the enforcers follow
    assert not reached(lab, False), "the policy applied with kubectl is not enforced"
    got = kubectl(lab, "get", "netpol").stdout.split()
    assert got[:4] == ["NAME", "POD-SELECTOR", "AGE", "deny-server"] and got[4] == "app=server", got
    r = kubectl(lab, "delete", "netpol", "deny-server")
    assert r.returncode == 0 and 'networkpolicy.networking.k8s.io "deny-server" deleted' in r.stdout, r.stderr
    assert reached(lab, True), "deleting the policy with kubectl did not lift it"


def test_an_invalid_policy_is_refused_with_its_field_path_and_changes_nothing(lab: LabUnderTest) -> None:
    before = sorted(lab.store.names("networkpolicies"))
    r = kubectl(lab, "apply", "-f", "-", input=BAD)
    assert r.returncode != 0 and "spec.ingress[0].from[0].ipBlock.cidr" in r.stderr, r.stdout + r.stderr
    assert sorted(lab.store.names("networkpolicies")) == before
    assert reached(lab, True)
