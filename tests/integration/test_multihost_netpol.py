"""NetworkPolicy across hosts: 3 emulated hosts × 2 nodes (as in ``test_multihost``: own network, mount and pid
namespaces, own sshd; the CLI and kubectl in a controller namespace), one shared lab.

Proven from real connections between pods (``curl`` in one pod to netexec in another, on other hosts): the
topology's default-deny ingress on ``back`` (mhn1) blocks ``client`` (mhn3) and ``other`` (mhn2); a policy applied
with ``podlab apply`` admitting ``app=client`` lets ``client`` in — the server sees the client's pod IP — while
``other`` stays denied; a pod with that label applied later on a host of its own is admitted once its apply
returns; an egress policy on the clients (only to ``app=back``) cuts ``client`` → ``other`` on its own node's
host; a policy created with kubectl through the controller's API server is enforced on every host, changed by
``kubectl apply`` (a PATCH) and removed from every host by ``kubectl delete``; deleting the policies restores
reachability. ``podlab get netpol``, ``netpol status``, ``explain`` and ``matrix`` (``--probe``: each host
probing from its own pods) answer across hosts. Nothing is left on any host afterwards.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from emulator.hosts.emulated import EmulatedHosts
from tests.integration.conftest import KUBECTL, ROOT
from tests.integration.test_multihost import PY, ctl, module_lab

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
    with module_lab(hosts, tmp_path_factory.mktemp("mhn"), TOPOLOGY, LAB) as made:
        ips = pod_ips(hosts)
        serving(hosts, "node-1", ips.values())
        yield {**made, "ips": ips}


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


def reach(hosts: EmulatedHosts, src: str, *targets: str) -> dict[str, str | None]:
    """What ``src`` gets from netexec at each target (``IP/PATH``, port 8080), all at once in one exec: {target:
    the answer, or None when two tries of 2 s each made no connection (on a VM this loaded, the first connection
    across hosts after ``up`` may take longer than one)}."""
    script = " ".join(f'(out=$(curl -sS --max-time 2 --retry 1 --retry-delay 0 http://{t.replace("/", ":8080/", 1)}) && echo "{t} $out" '
                      f'|| echo "{t} -") &' for t in targets) + " wait"
    r = ctl(hosts, "exec", src, "--", "sh", "-c", script)
    assert r.returncode == 0, r.stdout + r.stderr
    got = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    assert set(got) == set(targets), r.stdout
    return {t: None if got[t] == "-" else got[t] for t in targets}


def stores(hosts: EmulatedHosts, host: str) -> dict[str, set[str]]:
    """The NetworkPolicies and remote pods a host's store holds ({kind: {ns/name}}), read in one process."""
    code = (f"import json,sys; sys.path.insert(0, {str(ROOT)!r}); from emulator.state.store import Store; "
            f"from emulator.state.paths import LabPaths; s = Store(LabPaths({LAB!r}).store); "
            "print(json.dumps({k: [o['metadata']['namespace'] + '/' + o['metadata']['name'] for o in s.list(k)] "
            "for k in ('networkpolicies', 'remotepods')}))")
    r = hosts.host_run(host, [PY, "-c", code])
    assert r.returncode == 0, r.stderr
    return {k: set(v) for k, v in json.loads(r.stdout).items()}


def serving(hosts: EmulatedHosts, node: str, ips) -> None:
    """Wait until netexec answers at every IP, asked from ``node`` (a pod reported Running may still be binding its
    port; a node's own connections pass every policy of its own pods, and these pods' peers are not isolated)."""
    loop = " && ".join(f"for i in $(seq 40); do curl -s --max-time 1 -o /dev/null http://{ip}:8080/hostname && "
                       "break; sleep 0.25; done && curl -s --max-time 1 -o /dev/null "
                       f"http://{ip}:8080/hostname" for ip in ips)
    r = ctl(hosts, "exec", node, "--", "sh", "-c", loop)
    assert r.returncode == 0, r.stdout + r.stderr


def kubectl(hosts: EmulatedHosts, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(hosts.controller_argv([str(KUBECTL), "--context", f"podlab-{LAB}", *args]),
                       capture_output=True, text=True, input=input, timeout=90)
    assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def test_up_enforces_the_topology_policy_on_every_host(hosts: EmulatedHosts, lab: dict) -> None:
    err = lab["up"].stderr
    assert "networkpolicy: 1 policy and the 3 pods of 3 hosts pushed to every host; kube-network-policies synced " \
           "on 6 nodes" in err, err
    ips = lab["ips"]
    assert reach(hosts, "client", f"{ips['back']}/hostname", f"{ips['other']}/hostname") == {
        f"{ips['back']}/hostname": None,  # mhn3 → mhn1: default deny
        f"{ips['other']}/hostname": "other"}  # other is not isolated
    assert reach(hosts, "other", f"{ips['back']}/hostname") == {f"{ips['back']}/hostname": None}  # mhn2 → mhn1
    home = {"mhn1": "default/back", "mhn2": "default/other", "mhn3": "default/client"}
    for h in hosts.names:  # every host holds the policy and the other hosts' pods, and enforces on its 2 nodes
        assert stores(hosts, h) == {"networkpolicies": {"default/deny-back"},
                                    "remotepods": set(home.values()) - {home[h]}}, h
        ps = hosts.host_run(h, ["ps", "-eo", "comm="]).stdout.split()
        assert ps.count("kube-network-po") == 2, (h, ps)
    tr = ctl(hosts, "trace", "client", "back:8080")  # host by host, the drop named by back's host
    assert tr.returncode == 1 and "PROBLEM: host mhn1: node-1 drops" in tr.stdout and \
        "isolated by default/deny-back" in tr.stdout, tr.stdout + tr.stderr
    r = ctl(hosts, "host", "sync")
    assert r.returncode == 0 and "1 NetworkPolicy and every host's pods pushed to 3 hosts; kube-network-policies " \
        "synced on 6 nodes" in r.stdout, r.stdout + r.stderr
    st = ctl(hosts, "netpol", "status")
    assert st.returncode == 0 and st.stdout.count("Running") == 6 and "# host mhn3" in st.stdout, st.stdout
    assert "deny-back" in ctl(hosts, "get", "netpol").stdout


def test_allow_by_pod_selector_admits_the_client_of_a_third_host(hosts: EmulatedHosts, lab: dict) -> None:
    out = apply(hosts, lab, "allow.yaml", ALLOW_CLIENT)
    assert "networkpolicy.networking.k8s.io/allow-client created" in out, out
    ips = lab["ips"]
    seen = reach(hosts, "client", f"{ips['back']}/clientip")[f"{ips['back']}/clientip"]
    assert seen is not None and seen.split(":")[0] == ips["client"], seen  # no NAT across hosts
    assert reach(hosts, "other", f"{ips['back']}/hostname") == {f"{ips['back']}/hostname": None}
    table = ctl(hosts, "get", "netpol").stdout
    assert "allow-client" in table and "app=back" in table, table
    ex = ctl(hosts, "netpol", "explain", "client", "back", "--port", "8080/TCP")
    assert ex.returncode == 0 and "allowed by default/allow-client ingress[0]" in ex.stdout, ex.stdout + ex.stderr
    assert "# host mhn1" in ex.stdout and "# host mhn3" in ex.stdout  # each host: its own node's counters
    m = ctl(hosts, "netpol", "matrix", "--port", "8080/TCP", "-o", "json")
    assert m.returncode == 0, m.stderr
    cells = json.loads(m.stdout)[0]["expected"]["cells"]
    assert cells["default/client"]["default/back"] is True and cells["default/other"]["default/back"] is False
    probe = ctl(hosts, "netpol", "matrix", "--probe", "--port", "8080/TCP")  # each host probes from its pods
    assert probe.returncode == 0 and "all 6 probed cells as expected" in probe.stdout, probe.stdout + probe.stderr
    observed = probe.stdout.split("observed:")[1]
    assert [ln.split() for ln in observed.splitlines()[2:5]] == [
        ["default/back", "?", ".", "."], ["default/client", ".", "?", "."], ["default/other", "X", ".", "?"]], observed


def test_a_pod_added_later_on_another_host_is_admitted_after_its_apply(hosts: EmulatedHosts, lab: dict) -> None:
    out = apply(hosts, lab, "later.yaml", LATER)
    assert "client-2 created on node-5 (host mhn2)" in out, out
    ips = lab["ips"] = pod_ips(hosts)
    seen = reach(hosts, "client-2", f"{ips['back']}/clientip")[f"{ips['back']}/clientip"]
    assert seen is not None and seen.split(":")[0] == ips["client-2"], seen
    assert "default/client-2" in stores(hosts, "mhn1")["remotepods"]  # back's host learnt of it


def test_egress_policy_cuts_a_client_from_a_pod_that_is_not_its_peer(hosts: EmulatedHosts, lab: dict) -> None:
    ips = lab["ips"]
    apply(hosts, lab, "egress.yaml", CLIENT_EGRESS)
    other, back = f"{ips['other']}/hostname", f"{ips['back']}/hostname"
    # dropped on client's node (mhn3: other is open); to app=back both back's ingress and client's egress allow
    assert reach(hosts, "client", other, back) == {other: None, back: "back"}
    r = ctl(hosts, "delete", "netpol", "clients-to-back-only")
    assert r.returncode == 0 and 'networkpolicy.networking.k8s.io "clients-to-back-only" deleted' in r.stdout, \
        r.stdout + r.stderr
    assert reach(hosts, "client", other) == {other: "other"}


def test_kubectl_apply_and_delete_of_a_policy_reach_every_host(hosts: EmulatedHosts, lab: dict) -> None:
    back = f"{lab['ips']['back']}/hostname"
    r = kubectl(hosts, "apply", "-f", "-", input=ALLOW_OTHER)
    assert "networkpolicy.networking.k8s.io/allow-other created" in r.stdout, r.stdout + r.stderr
    got = kubectl(hosts, "get", "networkpolicy").stdout
    assert all(n in got for n in ("deny-back", "allow-client", "allow-other")), got
    assert reach(hosts, "other", back) == {back: "back"}
    r = kubectl(hosts, "apply", "-f", "-", input=ALLOW_OTHER.replace("app: other", "app: nobody"))  # a PATCH
    assert "networkpolicy.networking.k8s.io/allow-other configured" in r.stdout, r.stdout + r.stderr
    assert reach(hosts, "other", back) == {back: None}
    kubectl(hosts, "delete", "networkpolicy", "allow-other")
    assert "allow-other" not in kubectl(hosts, "get", "networkpolicy").stdout
    for h in hosts.names:
        assert stores(hosts, h)["networkpolicies"] == {"default/deny-back", "default/allow-client"}, h


def test_deleting_the_policies_restores_reachability(hosts: EmulatedHosts, lab: dict) -> None:
    back = f"{lab['ips']['back']}/hostname"
    r = ctl(hosts, "delete", "netpol", "deny-back", "allow-client")
    assert r.returncode == 0, r.stdout + r.stderr
    assert reach(hosts, "other", back) == {back: "back"}
    assert reach(hosts, "client", back) == {back: "back"}
    for h in hosts.names:
        assert stores(hosts, h)["networkpolicies"] == set(), h
