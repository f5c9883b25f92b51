"""Deployments across hosts: 3 emulated hosts (as in ``test_multihost``: own network, mount and pid namespaces, own
sshd; the CLI and kubectl in a controller namespace), one lab for the module.

Proven from what the hosts' own stores and namespaces hold, what the pods answer and what kubectl shows: the
topology's 3-replica Deployment has one pod on each host (named ``web-<pod-template-hash>-<5>``, owned by its
ReplicaSet); its Service answers from pods on every host and the server sees the client's pod IP; ``podlab scale``
to 5 and to 1 changes the pods on the hosts, with the hosts' stores, ``podlab get`` and ``kubectl get
deploy,rs,pods`` agreeing; a pod deleted with podlab, or on its host behind the controller's back, comes back under
a new name with a new IP; ``kubectl apply``/``scale``/``delete`` of a Deployment act across the hosts; ``podlab
delete deployment`` leaves no pod on any host, and ``down`` nothing at all.
"""
from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest

from emulator.hosts.emulated import EmulatedHosts
from tests.integration.conftest import KUBECTL, ROOT
from tests.integration.test_multihost import PY, ctl, module_lab

LAB = "mhd-dep"
STORE_PODS = f"/run/podlab/labs/{LAB}/store/pods/default"  # a host's own store (``state.store``)
NETEXEC = "containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]"
TOPOLOGY = f"""version: 1
name: {LAB}
routing: vxlan
nodes: [{{name: node-1}}, {{name: node-2}}, {{name: node-3}}, {{name: node-4}}, {{name: node-5}}, {{name: node-6}}]
pods:
  - {{name: client, node: node-1, labels: {{app: client}}, {NETEXEC}}}
deployments:
  - {{name: web, replicas: 3, labels: {{app: web}}, {NETEXEC}}}
services:
  - {{name: web, selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
"""
API_DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: pause}]
"""


@pytest.fixture(scope="module")
def hosts() -> Iterator[EmulatedHosts]:
    with EmulatedHosts(3, prefix="mhd") as hs:
        yield hs


@pytest.fixture(scope="module")
def lab(hosts: EmulatedHosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with module_lab(hosts, tmp_path_factory.mktemp("mhd"), TOPOLOGY, LAB) as made:
        yield made


def kubectl(hosts: EmulatedHosts, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(hosts.controller_argv([str(KUBECTL), "--context", f"podlab-{LAB}", *args]),
                       capture_output=True, text=True, input=input, timeout=90)
    assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def pods(hosts: EmulatedHosts, prefix: str = "web-") -> dict[str, dict]:
    """The lab's pods whose name starts with ``prefix``, as ``podlab get pods`` reports them (with their host)."""
    return {p["name"]: p for p in json.loads(ctl(hosts, "get", "pods", "-o", "json").stdout)["items"]
            if p["name"].startswith(prefix)}


def on_hosts(hosts: EmulatedHosts, prefix: str = "web-") -> dict[str, set[str]]:
    """{host: the pods named ``prefix``... its own store holds} (the manifests in its store's directory)."""
    with ThreadPoolExecutor(3) as ex:
        listed = dict(zip(hosts.names, ex.map(lambda h: hosts.host_run(h, ["ls", STORE_PODS]).stdout.split(),
                                              hosts.names)))
    return {h: {f[:-len(".json")] for f in files if f.startswith(prefix) and f.endswith(".json")}
            for h, files in listed.items()}


def deployment(hosts: EmulatedHosts, name: str = "web") -> dict:
    return json.loads(ctl(hosts, "get", "deployments", name, "-o", "json").stdout)


def kube_deployment(hosts: EmulatedHosts, name: str = "web", want: int | None = None, timeout: float = 10) -> dict:
    """``kubectl get deploy NAME -o json`` (once the mirror shows ``want`` ready replicas, if given)."""
    deadline = time.monotonic() + timeout
    while True:
        d = json.loads(kubectl(hosts, "get", "deploy", name, "-o", "json").stdout)
        if want is None or (d.get("status") or {}).get("readyReplicas", 0) == want or time.monotonic() > deadline:
            return d
        time.sleep(0.3)


def agree(hosts: EmulatedHosts, n: int, prefix: str = "web-") -> dict[str, dict]:
    """The Deployment's pods: ``n`` of them, the same in every host's store, ``podlab get pods`` and kubectl."""
    seen = pods(hosts, prefix)
    stores = on_hosts(hosts, prefix)
    assert sum(len(v) for v in stores.values()) == n and set().union(*stores.values()) == set(seen), (stores, seen)
    assert all(seen[p]["host"] == h for h, names in stores.items() for p in names)
    deadline = time.monotonic() + 10
    while True:  # the mirror follows the hosts within a pass
        items = json.loads(kubectl(hosts, "get", "pods", "-o", "json").stdout)["items"]
        kube = {p["metadata"]["name"] for p in items if p["metadata"]["name"].startswith(prefix)
                and not p["metadata"].get("deletionTimestamp")}
        if kube == set(seen) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert kube == set(seen), (kube, set(seen))
    assert all(seen[p]["phase"] == "Running" for p in seen), seen
    return seen


def test_up_spreads_the_deployment_over_the_hosts(hosts: EmulatedHosts, lab: dict) -> None:
    assert "deployments: 3 pods created, 0 deleted on hosts mhd1 (1), mhd2 (1), mhd3 (1)" in lab["up"].stderr, \
        lab["up"].stderr
    seen = agree(hosts, 3)
    assert sorted(p["host"] for p in seen.values()) == ["mhd1", "mhd2", "mhd3"]
    rs = {n.rsplit("-", 1)[0] for n in seen}
    assert len(rs) == 1 and len(rs.pop()) == len("web-") + 10, seen
    table = ctl(hosts, "get", "deployments").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:4] == ["web", "3/3", "3", "3"], table
    out = kubectl(hosts, "get", "deploy,rs", "-o", "wide").stdout
    assert "deployment.apps/web   3/3     3            3" in out, out
    rs_line = next(ln for ln in out.splitlines() if ln.startswith("replicaset.apps/web-"))
    assert rs_line.split()[1:4] == ["3", "3", "3"], out
    items = json.loads(kubectl(hosts, "get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in items} == {"ReplicaSet"}
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in items} == {rs_line.split()[0].rsplit("-", 1)[1]}
    r = ctl(hosts, "describe", "deploy", "web")
    assert r.returncode == 0 and "3 desired | 3 updated | 3 total | 3 available" in r.stdout, r.stdout + r.stderr
    assert all(f"(host {h})" in r.stdout for h in hosts.names), r.stdout


def test_service_answers_from_pods_on_every_host_with_the_client_ip(hosts: EmulatedHosts, lab: dict) -> None:
    ip = json.loads(ctl(hosts, "get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    want = set(pods(hosts))
    script = f"for i in $(seq 24); do curl -sS --max-time 3 {ip}/hostname; echo; done"
    r = ctl(hosts, "exec", "client", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {ln.strip() for ln in r.stdout.splitlines() if ln.strip()} == want
    client_ip = pods(hosts, "client")["client"]["ip"]
    r = ctl(hosts, "exec", "client", "--", "curl", "-sS", "--max-time", "3", f"{ip}/clientip")
    assert r.returncode == 0 and r.stdout.strip().split(":")[0] == client_ip, r.stdout + r.stderr


def test_scale_up_and_down_across_hosts(hosts: EmulatedHosts, lab: dict) -> None:
    r = ctl(hosts, "scale", "deployment", "web", "--replicas", "5")
    assert r.returncode == 0 and "deployment.apps/web scaled" in r.stdout, r.stdout + r.stderr
    seen = agree(hosts, 5)
    assert {p["host"] for p in seen.values()} == {"mhd1", "mhd2", "mhd3"}
    st = deployment(hosts)["status"]
    assert (st["readyReplicas"], st["updatedReplicas"], st["availableReplicas"]) == (5, 5, 5), st
    assert kube_deployment(hosts, want=5)["status"]["readyReplicas"] == 5
    ep = json.loads(ctl(hosts, "get", "ep", "web", "-o", "json").stdout)
    assert sorted(a["ip"] for s in ep["subsets"] for a in s["addresses"]) == sorted(p["ip"] for p in seen.values())
    r = ctl(hosts, "scale", "deployment", "web", "--replicas", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    seen = agree(hosts, 1)
    assert deployment(hosts)["status"]["readyReplicas"] == 1
    assert kube_deployment(hosts, want=1)["status"]["readyReplicas"] == 1
    r = ctl(hosts, "scale", "deployment", "web", "--replicas", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert {p["host"] for p in agree(hosts, 3).values()} == {"mhd1", "mhd2", "mhd3"}


def test_a_deleted_pod_comes_back_with_a_new_ip(hosts: EmulatedHosts, lab: dict) -> None:
    before = pods(hosts)
    victim = sorted(before)[0]
    r = ctl(hosts, "delete", "pod", victim)
    assert r.returncode == 0, r.stdout + r.stderr
    after = agree(hosts, 3)
    assert victim not in after and len(set(after) - set(before)) == 1
    new = after[(set(after) - set(before)).pop()]
    assert new["ip"] not in {p["ip"] for p in before.values()}
    ep = json.loads(ctl(hosts, "get", "ep", "web", "-o", "json").stdout)
    assert new["ip"] in {a["ip"] for s in ep["subsets"] for a in s["addresses"]}
    # deleted on its host behind the controller's back: the API server's mirror sees it go and reconciles
    victim, host = new["name"], new["host"]
    r = hosts.host_run(host, ["env", "PODLAB_LOCAL_PART=1", f"PYTHONPATH={ROOT}", PY, "-m", "emulator", "--lab",
                              LAB, "delete", "pod", victim])
    assert r.returncode == 0, r.stdout + r.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = pods(hosts)
        if victim not in now and len(now) == 3 and all(p["phase"] == "Running" for p in now.values()):
            break
        time.sleep(0.5)
    assert victim not in now and len(now) == 3, now
    assert agree(hosts, 3) == now or set(agree(hosts, 3)) == set(now)


def test_kubectl_applies_scales_and_deletes_a_deployment_across_hosts(hosts: EmulatedHosts, lab: dict) -> None:
    r = kubectl(hosts, "apply", "-f", "-", input=API_DEPLOYMENT)
    assert "deployment.apps/api created" in r.stdout, r.stdout + r.stderr
    seen = agree(hosts, 2, "api-")
    assert len({p["host"] for p in seen.values()}) == 2
    assert kube_deployment(hosts, "api", want=2)["status"]["readyReplicas"] == 2
    r = kubectl(hosts, "scale", "deployment", "api", "--replicas=3")
    assert "deployment.apps/api scaled" in r.stdout, r.stdout
    assert {p["host"] for p in agree(hosts, 3, "api-").values()} == {"mhd1", "mhd2", "mhd3"}
    r = kubectl(hosts, "apply", "-f", "-", input=API_DEPLOYMENT.replace("replicas: 2", "replicas: 1"))
    assert "deployment.apps/api configured" in r.stdout, r.stdout + r.stderr
    old = agree(hosts, 1, "api-")
    rolled = API_DEPLOYMENT.replace("replicas: 2", "replicas: 1").replace("labels: {app: api}}",
                                                                          "labels: {app: api, v: '2'}}")
    r = kubectl(hosts, "apply", "-f", "-", input=rolled)  # a changed template: a new ReplicaSet, the old pod goes
    assert "deployment.apps/api configured" in r.stdout, r.stdout + r.stderr
    new = agree(hosts, 1, "api-")
    assert set(new) != set(old) and {n.rsplit("-", 1)[0] for n in new} != {n.rsplit("-", 1)[0] for n in old}
    rs = kubectl(hosts, "get", "rs", "-o", "name").stdout.split()
    assert [n for n in rs if "/api-" in n] == [f"replicaset.apps/{next(iter(new)).rsplit('-', 1)[0]}"], rs
    kubectl(hosts, "delete", "deployment", "api")
    assert on_hosts(hosts, "api-") == {h: set() for h in hosts.names}
    assert "api" not in kubectl(hosts, "get", "deploy,rs", "-o", "name").stdout


def test_delete_leaves_no_pod_on_any_host(hosts: EmulatedHosts, lab: dict) -> None:
    r = ctl(hosts, "delete", "deployment", "web")
    assert r.returncode == 0 and 'deployment.apps "web" deleted' in r.stdout, r.stdout + r.stderr
    assert on_hosts(hosts) == {h: set() for h in hosts.names}
    for h in hosts.names:
        ns = hosts.host_run(h, ["ip", "netns", "list"]).stdout
        assert f"{LAB}-web-" not in ns, (h, ns)
    assert pods(hosts) == {}
    r = ctl(hosts, "get", "deployments", "-o", "json")
    assert json.loads(r.stdout)["items"] == [], r.stdout
    ep = json.loads(ctl(hosts, "get", "ep", "web", "-o", "json").stdout)
    assert not any(s.get("addresses") for s in ep.get("subsets") or []), ep
