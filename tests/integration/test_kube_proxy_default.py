"""kube-proxy runs in every lab, as on a real cluster: a Service applied with the real ``kubectl apply -f`` to a lab
made from topologies/demo.yaml (which declares no Services) answers at its ClusterIP and by its DNS name from a
pod; the pods' containers see their own resolv.conf through one mount namespace per distinct content (not one per
container), and nothing of it reaches the machine's /etc; ``kubeProxy: none`` runs no kube-proxy, no service
controllers and no cluster DNS, and a Service section beside it is refused before anything exists."""
from __future__ import annotations

import ipaddress
import json
import os
import time
from pathlib import Path

import pytest

from emulator.lab.api import Lab, run_in
from emulator.netlink import netns
from emulator.state import record
from emulator.state.resolv import content
from emulator.topology.loader import load
from tests.integration.conftest import TOPOLOGIES, kubectl_runner, lab_fixture, podlab, unique_name

DEMO = TOPOLOGIES / "demo.yaml"
SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: web-kp
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""
BLUE = """apiVersion: v1
kind: Namespace
metadata: {name: blue}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: blue}
spec:
  nodeName: node-1
  containers: [{name: c, image: netexec, ports: [{containerPort: 8080}]}]
"""
WEBS = {"web-1", "web-2", "web-3"}


def _resolv_mounts() -> int:
    """Mounts on /etc/resolv.conf in this (the machine's) mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return sum(1 for line in f if line.split()[4] == "/etc/resolv.conf")


MACHINE_RESOLV = (Path("/etc/resolv.conf").read_bytes(), _resolv_mounts())  # before any lab of this module

lab = lab_fixture(DEMO)


@pytest.fixture(scope="module")
def kubectl(lab: Lab, tmp_path_factory):
    return kubectl_runner(lab.name, tmp_path_factory.mktemp("kubectl-cache"))


def _curl(lab: Lab, pod: str, url: str, timeout: float = 10) -> str:
    """What ``curl url`` from ``pod`` answers, retried until it answers (kube-proxy syncs within milliseconds;
    the bound is for a loaded machine); '' if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        r = lab.pod(pod).exec(["curl", "-s", "-m", "2", url])
        if r.returncode == 0 and r.stdout or time.monotonic() > deadline:
            return r.stdout.strip() if r.returncode == 0 else ""
        time.sleep(0.2)


def _mount_points(pid: int) -> set[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return {line.split()[4] for line in f}


def _container_pid(lab: Lab, pod: str, namespace: str = "default") -> int:
    return lab.pod(pod, namespace).status["containerStatuses"][0]["pid"]


def test_a_service_applied_with_kubectl_to_the_demo_lab_answers(lab: Lab, kubectl, tmp_path: Path) -> None:
    extra = dict(load(DEMO).extra)
    assert not {"services", "deployments", "kubeProxy"} & set(extra)  # nothing asks for kube-proxy: the default
    f = tmp_path / "svc.yaml"
    f.write_text(SERVICE)
    assert kubectl("apply", "-f", str(f)).stdout.strip() == "service/web-kp created"
    ip = kubectl("get", "svc", "web-kp", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")  # from the demo's serviceCIDR
    assert _curl(lab, "client-1", f"http://{ip}/hostname") in WEBS  # the ClusterIP, DNATed by the node
    assert _curl(lab, "client-1", "http://web-kp/hostname") in WEBS  # the short name, through the cluster DNS
    nat = lab.node("node-2").exec(["iptables-save", "-t", "nat"]).stdout
    assert f"-d {ip}/32" in nat and "default/web-kp cluster IP" in nat
    kubectl("delete", "-f", str(f))
    deadline = time.monotonic() + 10
    while f"-d {ip}/32" in lab.node("node-2").exec(["iptables-save", "-t", "nat"]).stdout:
        assert time.monotonic() < deadline, "kube-proxy kept the deleted Service's rules"
        time.sleep(0.1)
    assert lab.pod("client-1").exec(["curl", "-s", "-m", "2", f"http://{ip}/hostname"]).returncode != 0


def test_containers_see_their_resolv_conf_through_a_shared_mount_namespace(lab: Lab, kubectl,
                                                                          tmp_path: Path) -> None:
    own = os.readlink("/proc/self/ns/mnt")
    web1, web2 = _container_pid(lab, "web-1"), _container_pid(lab, "web-2")  # both on node-1, namespace default
    mnt1 = os.readlink(f"/proc/{web1}/ns/mnt")
    assert mnt1 == os.readlink(f"/proc/{web2}/ns/mnt") != own
    want = content("default", "10.96.0.10")
    for pod, pid in (("web-1", web1), ("web-2", web2)):
        assert Path(f"/proc/{pid}/root/etc/resolv.conf").read_text() == want
        assert Path(f"/etc/netns/{lab.pod(pod).netns}/resolv.conf").read_text() == want  # on disk, as before
    assert run_in(lab.pod("web-1").netns, ["cat", "/etc/resolv.conf"]).stdout == want  # ip netns exec shows it
    f = tmp_path / "blue.yaml"
    f.write_text(BLUE)
    kubectl("apply", "-f", str(f))
    try:
        lab.wait_pod("b", namespace="blue")
        blue = _container_pid(lab, "b", "blue")
        assert os.readlink(f"/proc/{blue}/ns/mnt") not in (mnt1, own)  # another content, another namespace
        text = Path(f"/proc/{blue}/root/etc/resolv.conf").read_text()
        assert text == content("blue", "10.96.0.10") and text.startswith("search blue.svc.cluster.local ")
        b_mount = f"/run/netns/{lab.pod('b', 'blue').netns}"
        assert b_mount in _mount_points(os.getpid())
        # ... but not into web-1's mount namespace: it has an empty /run/netns of its own (with the machine's
        # copy, every namespace of a lab was mounted once more in every agent's mount namespace)
        assert b_mount not in _mount_points(web1) and not os.listdir(f"/proc/{web1}/root/run/netns")
    finally:
        kubectl("delete", "pod", "b", "-n", "blue", "--ignore-not-found")  # returns once its netns is gone
        kubectl("delete", "namespace", "blue")
    # ... and its removal too: a shared mount namespace never pins a deleted pod's network namespace
    assert b_mount not in _mount_points(web1) and b_mount not in _mount_points(os.getpid())
    assert (Path("/etc/resolv.conf").read_bytes(), _resolv_mounts()) == MACHINE_RESOLV  # the machine's untouched


NONE = """
version: 1
name: x
kubeProxy: none
nodes: [{name: node-1}]
pods:
  - {name: p, node: node-1, containers: [{name: c, image: netexec, ports: [{containerPort: 8080}]}]}
"""


def test_kube_proxy_none_runs_no_kube_proxy_controllers_or_dns(make_lab, tmp_path: Path) -> None:
    lab = make_lab(NONE)
    whats = {e.what for e in record.processes(lab.name)}
    assert not {w for w in whats if w.startswith("kube-proxy")} and not {"controller-manager", "cluster DNS"} & whats
    assert "API server" in whats and any(w.startswith("agent") for w in whats)  # the rest of the lab runs
    assert not netns.exists(f"{lab.name}-dns") and not os.path.exists(f"/etc/netns/{lab.pod('p').netns}")
    assert "KUBE-SERVICES" not in lab.node("node-1").exec(["iptables-save"]).stdout
    assert lab.store.get("services", "kube-dns", "kube-system") is None
    pid = _container_pid(lab, "p")
    assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")  # no /etc files: no mount ns
    f = tmp_path / "svc.yaml"
    f.write_text(SERVICE)
    r = podlab("apply", "-f", str(f), lab=lab.name)
    assert r.returncode == 1 and "kubeProxy: none" in r.stderr and lab.store.get("services", "web-kp") is None


def test_services_beside_kube_proxy_none_are_refused_before_anything_exists(tmp_path: Path) -> None:
    name = unique_name("kpn")
    f = tmp_path / "lab.yaml"
    f.write_text(NONE.replace("name: x", f"name: {name}") + "services:\n  - {name: web, ports: [{port: 80}]}\n")
    r = podlab("up", str(f))
    assert r.returncode == 2, r.stderr
    assert str(f) in r.stderr and "services" in r.stderr and "kubeProxy: none" in r.stderr
    assert not [n for n in netns.list_names() if n.startswith(f"{name}-")] and record.load(name) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text(NONE.replace("name: x", f"name: {name}").replace("kubeProxy: none", "kubeProxy: off"))
    r = podlab("up", str(bad))
    assert r.returncode == 2 and "kubeProxy" in r.stderr and "is not a kube-proxy setting" in r.stderr
    assert json.dumps(record.load(name)) == "null"
