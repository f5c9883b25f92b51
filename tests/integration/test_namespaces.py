"""Kubernetes namespaces, first-class: pods ``a``, ``b``, ``c`` in namespaces ``x``, ``y``, ``z`` (the upstream
NetworkPolicy tests' layout) with one lab for the module: every pod reaches every other one with its own source
IP, kernel names stay unique (``<lab>-<pod>.<namespace>``), DNS answers ``<svc>.<ns>.svc.cluster.local`` from
every namespace and each pod's resolv.conf searches its own namespace first, and deleting a namespace removes
what it holds (pods stopped, IPs released, network namespaces gone) while the others keep running."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from emulator.lab import teardown
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.topology.loader import loads
from tests.integration.conftest import podlab, unique_name

SPACES, PODS = ("x", "y", "z"), ("a", "b", "c")
NETEXEC = "[{name: c, image: netexec, ports: [{containerPort: 8080, name: http}]}]"
TOPOLOGY = "\n".join(
    ["version: 1", "name: x", "kubeProxy: {mode: iptables}",
     "namespaces: [{name: x, labels: {team: red}}, {name: y}, {name: z}]",
     "nodes: [{name: node-1}, {name: node-2}]", "pods:"]
    + [f"  - {{name: {p}, namespace: {ns}, labels: {{pod: {p}}}, containers: {NETEXEC}}}"
       for ns in SPACES for p in PODS]
    + ["  - {name: a, labels: {pod: a}, containers: " + NETEXEC + "}", "services:"]
    + [f"  - {{name: s-{p}, namespace: {ns}, selector: {{pod: {p}}}, ports: [{{port: 80, targetPort: http}}]}}"
       for ns in SPACES for p in PODS]) + "\n"


@pytest.fixture(scope="module")
def lab():
    name = unique_name("apis")
    try:
        yield Lab.up(loads(TOPOLOGY, "<namespaces>", name=name))
    finally:
        teardown.destroy(name)


def test_same_pod_name_in_three_namespaces_has_unique_kernel_names(lab: Lab) -> None:
    refs = sorted(p.ref for p in lab.pods if p.namespace != "kube-system")  # not the coredns pods
    assert refs == sorted(["a"] + [f"{ns}/{p}" for ns in SPACES for p in PODS])
    spaces = set(netns.list_names())
    for ns in SPACES:
        for p in PODS:
            view = lab.pod(p, ns)
            assert view.netns == f"{lab.name}-{p}.{ns}" and view.netns in spaces
            assert view.status["phase"] == "Running"
    assert lab.pod("a").netns == f"{lab.name}-a" and f"{lab.name}-a" in spaces
    ips = [p.ip for p in lab.pods if p.namespace != "kube-system"]  # the topology's (not the coredns pods)
    assert len(set(ips)) == len(ips) == 10  # one address each, from the nodes' slices
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{lab.name}-a.x" in listing  # readable as <pod>.<namespace>
    m = json.load(open(lab.store.root / "pods" / "y" / "b.json"))  # the store, readable with cat
    assert m["metadata"]["namespace"] == "y" and m["metadata"]["name"] == "b"


def test_every_pod_reaches_every_other_with_its_own_ip(lab: Lab) -> None:
    pods = [p for p in lab.pods if p.namespace != "kube-system"]  # the netexec ones (coredns serves DNS only)
    procs = []
    for src in pods:
        urls = " ".join(f"http://{dst.ip}:8080/clientip" for dst in pods if dst.ref != src.ref)
        procs.append((src, subprocess.Popen(
            ["nsenter", f"--net={netns.path(src.netns)}", "--", "sh", "-c",
             f"for u in {urls}; do curl -s -m 5 $u; echo; done"], stdout=subprocess.PIPE, text=True)))
    for src, proc in procs:
        out, _ = proc.communicate(timeout=120)
        seen = [line.rsplit(":", 1)[0] for line in out.splitlines() if line.strip()]
        assert seen == [src.ip] * (len(pods) - 1), (src.ref, out)  # every answer saw the sender's pod IP: no NAT


def test_dns_across_namespaces_and_resolv_conf_search(lab: Lab) -> None:
    ips = {(s["metadata"]["namespace"], s["metadata"]["name"]): s["spec"]["clusterIP"]
           for s in lab.store.list("services")}
    src = lab.pod("a", "x")
    resolv = src.exec(["cat", "/etc/resolv.conf"]).stdout
    assert resolv.startswith("search x.svc.cluster.local svc.cluster.local cluster.local\n"), resolv
    for ns in SPACES:
        for p in PODS:
            out = src.exec(["getent", "hosts", f"s-{p}.{ns}.svc.cluster.local"], timeout=15).stdout.split()
            assert out and out[0] == ips[(ns, f"s-{p}")], (ns, p, out)
    # a short name is the pod's own namespace's Service; <svc>.<ns> reaches another namespace's
    assert src.exec(["getent", "hosts", "s-b"]).stdout.split()[0] == ips[("x", "s-b")]
    assert lab.pod("b", "z").exec(["getent", "hosts", "s-b"]).stdout.split()[0] == ips[("z", "s-b")]
    assert src.exec(["getent", "hosts", "s-c.y"]).stdout.split()[0] == ips[("y", "s-c")]
    out = src.exec(["curl", "-s", "-m", "5", "http://s-c.z/hostname"]).stdout
    assert out.strip() == "c", out  # through the Service (kube-proxy) to pod c of namespace z


def test_cli_scopes_listings_as_kubectl(lab: Lab) -> None:
    default = podlab("get", "pods", lab=lab).stdout.splitlines()
    assert default[0].split()[:2] == ["NAME", "READY"] and [r.split()[0] for r in default[1:]] == ["a"]
    y = podlab("get", "pods", "-n", "y", "-o", "wide", lab=lab).stdout.splitlines()
    assert [r.split()[0] for r in y[1:]] == ["a", "b", "c"] and "IP" in y[0]
    every = [r for r in podlab("get", "pods", "-A", lab=lab).stdout.splitlines()  # without the cluster's own pods
             if not r.split()[1].startswith(("kube-proxy-", "kube-flannel-ds-", "calico-node-", "coredns-"))]
    assert every[0].split()[:2] == ["NAMESPACE", "NAME"] and len(every) == 11
    assert ["x", "a"] == every[1 + [r.split()[0] for r in every[1:]].index("x")].split()[:2]
    spaces = podlab("get", "ns", "-o", "json", lab=lab)
    by_name = {o["metadata"]["name"]: o for o in json.loads(spaces.stdout)["items"]}
    assert set(by_name) >= {"default", "kube-system", "kube-public", "kube-node-lease", "x", "y", "z"}
    assert by_name["x"]["metadata"]["labels"] == {"team": "red", "kubernetes.io/metadata.name": "x"}
    svc = podlab("get", "svc", "-n", "z", lab=lab).stdout.splitlines()
    assert svc[0].split()[0] == "NAME" and sorted(r.split()[0] for r in svc[1:]) == ["s-a", "s-b", "s-c"]
    assert podlab("get", "svc", "-A", lab=lab).stdout.count("kube-dns") == 1
    assert podlab("get", "pods", "nope", "-n", "x", lab=lab).returncode != 0


def test_apply_honours_metadata_namespace_and_refuses_a_missing_one(lab: Lab, tmp_path) -> None:
    f = tmp_path / "pod.yaml"
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: y, labels: {pod: extra}}\n"
                 "spec: {containers: [{name: c, image: pause}]}\n")
    assert "already exists" in podlab("apply", "-f", str(f), lab=lab).stderr  # y/a is taken, by another spec
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: nope}\n"
                 "spec: {containers: [{name: c, image: pause}]}\n")
    r = podlab("apply", "-f", str(f), lab=lab)
    assert r.returncode == 2 and "metadata.namespace" in r.stderr and "'nope' does not exist" in r.stderr
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: d}\nspec: {containers: [{name: c, image: pause}]}\n")
    r = podlab("apply", "-n", "z", "-f", str(f), lab=lab)
    assert r.returncode == 0 and r.stdout.strip() == "pod/d created", r.stderr
    st = lab.wait_pod("d", namespace="z")
    assert netns.exists(f"{lab.name}-d.z") and st["podIP"]
    assert podlab("delete", "pod", "d", "-n", "z", lab=lab).stdout.strip() == 'pod "d" deleted'
    assert not netns.exists(f"{lab.name}-d.z")


def test_deleting_a_namespace_deletes_what_it_holds(lab: Lab) -> None:
    r = podlab("create", "namespace", "w", lab=lab)
    assert r.returncode == 0 and r.stdout.strip() == "namespace/w created", r.stderr
    for p in ("a", "b"):
        assert lab.apply_pod({"name": p, "namespace": "w", "containers": [{"name": "c", "image": "netexec"}]}) \
            == f"pod/{p} created"
    ips = [lab.wait_pod(p, namespace="w")["podIP"] for p in ("a", "b")]
    keep = {p.ref: p.ip for p in lab.pods if p.namespace != "w"}
    t = time.monotonic()
    r = podlab("delete", "ns", "w", lab=lab)
    assert r.returncode == 0 and r.stdout.strip() == 'namespace "w" deleted', r.stderr
    assert time.monotonic() - t < 20
    assert lab.store.get("namespaces", "w") is None and lab.store.keys("pods", ns="w") == []
    assert not netns.exists(f"{lab.name}-a.w") and not netns.exists(f"{lab.name}-b.w")
    ipam = {f.name for n in lab.nodes for f in (lab.paths.ipam_dir(n.name) / "cbr0").iterdir()}
    assert not set(ips) & ipam  # their addresses were released
    assert {p.ref: p.ip for p in lab.pods} == keep  # the other namespaces' pods were not touched
    assert podlab("delete", "ns", "w", lab=lab).returncode == 4
