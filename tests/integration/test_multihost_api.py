"""kubectl from the controller of a lab over 3 emulated hosts (as in ``test_multihost``: own network, mount and pid
namespaces, own sshd; the CLI, kubectl and the Python client run in the controller's namespaces, where the lab's
API server listens on 127.0.0.1).

Proven with the real kubectl and the official Python client: ``get nodes`` and ``get pods -A -o wide`` show
every host's nodes and pods, with the IPs and nodes the hosts themselves report; ``apply -f`` of a pod puts it on
its node's host, Running with an IP of its node's slice (seen in the pod's namespace there); ``get -w`` sees it
come and go; ``delete`` removes it from its host; a Service and a Namespace created with kubectl reach every
host; pod updates and DaemonSets answer with a Status saying they are not available across hosts (exec,
attach, logs and port-forward work: ``test_multihost_streams``); ``down``
ends the API server (by PID) and leaves nothing on any host nor in the kubeconfig.
"""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from typing import Iterator

import pytest

from emulator.hosts.emulated import EmulatedHosts
from tests.integration.conftest import KUBECONFIG, KUBECTL
from tests.integration.test_multihost import COMMAND, PY, controller_records, ctl, lab_store_view, module_lab

LAB = "mha-api"
#: pause containers: the pods need no program of this tree (whose package a container on an emulated host finds only
#: through an installed podlab)
PAUSE = "containers: [{name: web, image: pause}]"
TOPOLOGY = f"""version: 1
name: {LAB}
routing: vxlan
kubeProxy: {{mode: iptables}}
nodes: [{{name: node-1}}, {{name: node-2}}, {{name: node-3}}, {{name: node-4}}, {{name: node-5}}, {{name: node-6}}]
pods:
  - {{name: web-1, node: node-1, labels: {{app: web}}, {PAUSE}}}
  - {{name: web-2, node: node-2, labels: {{app: web}}, {PAUSE}}}
  - {{name: web-3, node: node-3, labels: {{app: web}}, {PAUSE}}}
services:
  - {{name: web, selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
"""
POD = """apiVersion: v1
kind: Pod
metadata:
  name: extra
  labels: {app: web}
spec:
  nodeName: node-6
  containers:
  - name: web
    image: pause
"""


@pytest.fixture(scope="module")
def hosts() -> Iterator[EmulatedHosts]:
    with EmulatedHosts(3, prefix="mha") as hs:
        yield hs


@pytest.fixture(scope="module")
def lab(hosts: EmulatedHosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with module_lab(hosts, tmp_path_factory.mktemp("mha"), TOPOLOGY, LAB) as made:
        yield made


def kubectl(hosts: EmulatedHosts, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 90) -> subprocess.CompletedProcess:
    """The real kubectl on the lab's context, inside the controller's namespaces."""
    r = subprocess.run(hosts.controller_argv([str(KUBECTL), "--context", f"podlab-{LAB}", *args]),
                       capture_output=True, text=True, input=input, timeout=timeout)
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def store_view(hosts: EmulatedHosts, host: str, kind: str) -> dict[str, object]:
    return lab_store_view(hosts, host, LAB, kind)


def lab_leftovers(hosts: EmulatedHosts, lab: str) -> dict[str, list[str]]:
    """What of lab ``lab`` is on each host (namespaces, state) while the module's lab is still up there."""
    out = {}
    for h in hosts.names:
        found = [w for w in hosts.host_run(h, ["sh", "-c", "ip netns list; ls /run/podlab/labs"]).stdout.split()
                 if w.startswith(lab)]
        if found:
            out[h] = found
    return out


def podlab_pods(hosts: EmulatedHosts) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(ctl(hosts, "get", "pods", "-o", "json").stdout)["items"]}


def columns(head: str, line: str) -> dict[str, str]:
    """A row of kubectl's table by its header's column positions (a header may hold spaces: NOMINATED NODE)."""
    starts = [i for i in range(len(head)) if head[i] != " " and (i == 0 or head[i - 1] == " ")]
    names = [head[a:b].strip() for a, b in zip(starts, starts[1:] + [len(head)])]
    out: dict[str, str] = {}
    for n, a, b in zip(names, starts, starts[1:] + [None]):
        if n not in out:
            out[n] = line[a:b].strip()
    return out


def node_slices(hosts: EmulatedHosts) -> dict[str, ipaddress.IPv4Network]:
    items = json.loads(kubectl(hosts, "get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: ipaddress.IPv4Network(n["spec"]["podCIDR"]) for n in items}


def eventually(fn, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.3)


def test_up_says_where_kubectl_finds_the_lab(lab: dict) -> None:
    assert f"kubectl context podlab-{LAB}" in lab["up"].stderr, lab["up"].stderr


def test_get_nodes_shows_every_hosts_nodes(hosts: EmulatedHosts, lab: dict) -> None:
    out = kubectl(hosts, "get", "nodes", "-o", "wide").stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert sorted(rows) == [f"node-{i}" for i in range(1, 7)], out
    assert all(r[1] == "Ready" for r in rows.values()), out
    mine = {n["name"]: n for n in json.loads(ctl(hosts, "get", "nodes", "-o", "json").stdout)["items"]}
    assert {n["host"] for n in mine.values()} == set(hosts.names)
    items = json.loads(kubectl(hosts, "get", "nodes", "-o", "json").stdout)["items"]
    ips = {n["metadata"]["name"]: [a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"]
           for n in items}
    record = json.loads(subprocess.run(hosts.controller_argv(["cat", f"/run/podlab/multihost/{LAB}.json"]),
                                       capture_output=True, text=True).stdout)
    assert ips == {n: [ip] for n, ip in record["nodeIPs"].items()}


def test_get_pods_wide_shows_every_hosts_pods_with_their_ips_and_nodes(hosts: EmulatedHosts, lab: dict) -> None:
    out = kubectl(hosts, "get", "pods", "-A", "-o", "wide").stdout.splitlines()
    assert out[0].split()[:8] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"], out
    rows = {line.split()[1]: columns(out[0], line) for line in out[1:]}
    truth = podlab_pods(hosts)  # what every host's agents report, through podlab's own verb
    for name in ("web-1", "web-2", "web-3"):
        assert rows[name]["STATUS"] == "Running", out
        assert rows[name]["IP"] == truth[name]["ip"] and rows[name]["NODE"] == truth[name]["node"], (rows, truth)
    slices = node_slices(hosts)
    assert all(ipaddress.IPv4Address(rows[n]["IP"]) in slices[rows[n]["NODE"]] for n in ("web-1", "web-2", "web-3"))
    assert len({truth[n]["host"] for n in ("web-1", "web-2", "web-3")}) == 3  # one pod on each host


def test_services_endpoints_and_events_are_the_whole_labs(hosts: EmulatedHosts, lab: dict) -> None:
    ep = json.loads(kubectl(hosts, "get", "ep", "web", "-o", "json").stdout)
    ips = sorted(a["ip"] for s in ep["subsets"] for a in s["addresses"])
    truth = podlab_pods(hosts)
    assert ips == sorted(truth[n]["ip"] for n in ("web-1", "web-2", "web-3"))
    svc = json.loads(kubectl(hosts, "get", "svc", "web", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == json.loads(ctl(hosts, "get", "svc", "web", "-o", "json").stdout)["spec"][
        "clusterIP"]
    ev = json.loads(kubectl(hosts, "get", "events", "-A", "-o", "json").stdout)["items"]
    assert {e["involvedObject"]["name"] for e in ev} >= {"web-1", "web-2", "web-3"}


def test_apply_lands_on_the_right_host_and_watch_sees_it(hosts: EmulatedHosts, lab: dict) -> None:
    watch = subprocess.Popen(hosts.controller_argv([str(KUBECTL), "--context", f"podlab-{LAB}", "get", "pods",
                                                    "-w", "--no-headers", "--output-watch-events"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # its LIST is done
        r = kubectl(hosts, "apply", "-f", "-", input=POD)
        assert r.stdout.strip() == "pod/extra created", r.stdout + r.stderr
        p = json.loads(kubectl(hosts, "get", "pod", "extra", "-o", "json").stdout)
        assert p["status"]["phase"] == "Running" and p["spec"]["nodeName"] == "node-6"
        assert ipaddress.IPv4Address(p["status"]["podIP"]) in node_slices(hosts)["node-6"]
        host = podlab_pods(hosts)["extra"]["host"]
        assert host == "mha3"  # node-6 of 6, round-robin over 3 hosts
        seen = hosts.host_run(host, ["ip", "netns", "exec", f"{LAB}-extra", "ip", "-4", "-o", "addr", "show",
                                     "eth0"]).stdout
        assert f"inet {p['status']['podIP']}/" in seen, seen
        for h in hosts.names:  # its Endpoints pushed to every host
            assert p["status"]["podIP"] in json.dumps(store_view(hosts, h, "endpoints")["default/web"]), h
        r = kubectl(hosts, "apply", "-f", "-", input=POD)
        assert r.stdout.strip() == "pod/extra unchanged", r.stdout + r.stderr
        r = kubectl(hosts, "delete", "pod", "extra", timeout=120)
        assert r.stdout.startswith('pod "extra" deleted'), r.stdout + r.stderr
        assert kubectl(hosts, "get", "pod", "extra", check=False).returncode == 1
        assert "extra" not in podlab_pods(hosts)
        assert f"{LAB}-extra" not in hosts.host_run(host, ["ip", "netns", "list"]).stdout
        time.sleep(1.5)
    finally:
        watch.terminate()
        out, err = watch.communicate(timeout=10)
    lines = [line.split() for line in out.splitlines()]
    mine = [w[0] for w in lines if w[1] == "extra"]
    assert mine[0] == "ADDED" and "DELETED" in mine, out + err
    assert any(w[1] == "extra" and "Running" in w for w in lines), out


def test_the_python_client_lists_every_hosts_pods(hosts: EmulatedHosts, lab: dict) -> None:
    code = ("import json; from kubernetes import client, config; "
            f"config.load_kube_config(context='podlab-{LAB}'); "
            "pods = client.CoreV1Api().list_pod_for_all_namespaces().items; "
            "print(json.dumps({p.metadata.name: [p.spec.node_name, p.status.pod_ip] for p in pods}))")
    r = subprocess.run(hosts.controller_argv([PY, "-c", code]), capture_output=True, text=True, timeout=60,
                       env={**os.environ, "KUBECONFIG": KUBECONFIG})
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    truth = podlab_pods(hosts)
    for name in ("web-1", "web-2", "web-3"):
        assert seen[name] == [truth[name]["node"], truth[name]["ip"]], (seen, truth)


def test_namespace_and_service_created_with_kubectl_reach_every_host(hosts: EmulatedHosts, lab: dict) -> None:
    kubectl(hosts, "create", "namespace", "shop")
    for h in hosts.names:
        r = hosts.host_run(h, ["sh", "-c", f"ls /run/podlab/labs/{LAB}/store/namespaces"])
        assert "shop.json" in r.stdout, (h, r.stdout, r.stderr)
    assert "shop" in kubectl(hosts, "get", "ns").stdout
    r = kubectl(hosts, "create", "service", "clusterip", "cart", "-n", "shop", "--tcp=80:8080")
    assert r.stdout.strip() == "service/cart created", r.stdout
    ip = json.loads(kubectl(hosts, "get", "svc", "cart", "-n", "shop", "-o", "json").stdout)["spec"]["clusterIP"]
    for h in hosts.names:
        assert "shop/cart" in store_view(hosts, h, "services"), h
    assert json.loads(ctl(hosts, "get", "svc", "cart", "-n", "shop", "-o", "json").stdout)["spec"]["clusterIP"] == ip
    svc = ("apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {app: cart}\n"
           "  ports: [{port: 80, targetPort: 8080}]\n")
    r = kubectl(hosts, "apply", "-f", "-", input=svc)  # an update: the selector added, the ClusterIP kept
    assert r.stdout.strip() == "service/cart configured", r.stdout + r.stderr
    for h in hosts.names:
        assert store_view(hosts, h, "services")["shop/cart"]["selector"] == {"app": "cart"}, h
    assert json.loads(kubectl(hosts, "get", "svc", "cart", "-n", "shop", "-o", "json").stdout)["spec"][
        "clusterIP"] == ip
    kubectl(hosts, "delete", "svc", "cart", "-n", "shop")
    for h in hosts.names:
        assert "shop/cart" not in store_view(hosts, h, "services"), h


def test_what_is_not_available_across_hosts_says_so_at_once(hosts: EmulatedHosts, lab: dict) -> None:
    r = kubectl(hosts, "create", "-f", "-", input="apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: d}\n"
                "spec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: "
                "[{name: c, image: pause}]}}}\n", check=False, timeout=30)
    assert r.returncode != 0 and "creating daemonsets.apps is not available across hosts yet" in r.stderr, r.stderr
    r = kubectl(hosts, "label", "pod", "web-3", "x=y", check=False, timeout=30)
    assert r.returncode != 0 and "updating pods (\"web-3\") is not available across hosts yet" in r.stderr, r.stderr


def test_down_ends_the_api_server_and_its_context(hosts: EmulatedHosts, tmp_path) -> None:
    """A lab of its own, after the module's: ``down`` ends the server by its PID and removes its context."""
    topo = tmp_path / "t.yaml"
    topo.write_text(TOPOLOGY.replace(f"name: {LAB}", "name: mha-down").split("services:")[0])
    r = ctl(hosts, "up", str(topo), "--hosts", str(hosts.inventory(COMMAND)))
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        rec = json.loads(subprocess.run(hosts.controller_argv(["cat", "/run/podlab/multihost/mha-down.json"]),
                                        capture_output=True, text=True).stdout)
        pid = rec["apiserver"]["pid"]
        assert os.path.exists(f"/proc/{pid}")
        r = subprocess.run(hosts.controller_argv([str(KUBECTL), "--context", "podlab-mha-down", "get", "pods"]),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "web-3" in r.stdout, r.stderr
    finally:
        d = ctl(hosts, "down", "mha-down")
    assert d.returncode == 0, d.stdout + d.stderr
    assert not os.path.exists(f"/proc/{pid}") or "kube-apiserver" not in open(f"/proc/{pid}/comm").read()
    assert "podlab-mha-down" not in open(KUBECONFIG).read()
    assert lab_leftovers(hosts, "mha-down") == {} and "mha-down.json" not in controller_records(hosts)


def test_a_killed_host_makes_its_nodes_not_ready_in_a_watch(tmp_path) -> None:
    """Hosts of its own (one is killed): the mirror finds the host gone, its nodes go NotReady — a watch of the
    nodes sees it — and its pods stay listed as last seen; ``down`` still ends the API server."""
    with EmulatedHosts(2, prefix="mhk") as hs:
        topo = tmp_path / "t.yaml"
        topo.write_text(f"version: 1\nname: mha-kill\nnodes: [{{name: node-1}}, {{name: node-2}}, {{name: node-3}}, "
                        f"{{name: node-4}}]\npods:\n  - {{name: p-2, node: node-2, {PAUSE}}}\n")
        r = ctl(hs, "up", str(topo), "--hosts", str(hs.inventory(COMMAND)))
        assert r.returncode == 0, r.stdout + r.stderr
        base = [str(KUBECTL), "--context", "podlab-mha-kill"]
        rec = json.loads(subprocess.run(hs.controller_argv(["cat", "/run/podlab/multihost/mha-kill.json"]),
                                        capture_output=True, text=True).stdout)
        pid = rec["apiserver"]["pid"]
        try:
            labels = subprocess.run(hs.controller_argv([*base, "get", "nodes", "-L", "podlab.io/host", "--no-headers"]),
                                    capture_output=True, text=True, timeout=60).stdout.splitlines()
            assert {line.split()[0]: line.split()[-1] for line in labels} == {
                "node-1": "mhk1", "node-2": "mhk2", "node-3": "mhk1", "node-4": "mhk2"}, labels
            watch = subprocess.Popen(hs.controller_argv([*base, "get", "nodes", "-w", "--no-headers"]),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(1.0)
                hs.kill_host("mhk2")

                def status() -> dict[str, str]:
                    out = subprocess.run(hs.controller_argv([*base, "get", "nodes", "--no-headers"]),
                                         capture_output=True, text=True, timeout=60).stdout.splitlines()
                    return {line.split()[0]: line.split()[1] for line in out}
                seen = eventually(lambda: s if (s := status()).get("node-2") == "NotReady" else None, timeout=60)
                assert seen == {"node-1": "Ready", "node-2": "NotReady", "node-3": "Ready", "node-4": "NotReady"}
                pods = subprocess.run(hs.controller_argv([*base, "get", "pods", "--no-headers"]), capture_output=True,
                                      text=True, timeout=60).stdout
                assert pods.split()[0] == "p-2", pods  # as last seen
            finally:
                watch.terminate()
                out, err = watch.communicate(timeout=10)
            assert any(line.split()[:2] == ["node-2", "NotReady"] for line in out.splitlines()), out + err
        finally:
            d = ctl(hs, "down", "mha-kill")
        assert d.returncode == 1 and "mhk2" in d.stderr, d.stdout + d.stderr
        assert not os.path.exists(f"/proc/{pid}") or "kube-apiserver" not in open(f"/proc/{pid}/comm").read()
