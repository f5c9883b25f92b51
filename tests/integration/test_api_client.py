"""The official Python client (``kubernetes`` on PyPI) against a live lab: list, watch, create, patch and delete
pods and Services, typed models parsing every object (their required fields present), and what it creates
running on the nodes' agents like any pod."""
from __future__ import annotations

import ipaddress
import threading
import time

import pytest

from emulator.lab import teardown
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.topology.loader import loads
from tests.integration.conftest import KUBECONFIG, unique_name

kubernetes = pytest.importorskip("kubernetes", reason="the official client: pip install kubernetes (setup.sh)")
from kubernetes import client, config, watch  # noqa: E402

TOPOLOGY = """
version: 1
name: x
kubeProxy: {mode: nftables}
nodes: [{name: node-1}, {name: node-2}]
pods:
  - {name: web-1, labels: {app: web}, containers: [{name: c, image: netexec, ports: [{containerPort: 8080}]}]}
"""


@pytest.fixture(scope="module")
def lab():
    name = unique_name("apis")
    try:
        yield Lab.up(loads(TOPOLOGY, "<client>", name=name))
    finally:
        teardown.destroy(name)


@pytest.fixture(scope="module")
def v1(lab):
    api = config.new_client_from_config(config_file=KUBECONFIG, context=f"podlab-{lab.name}")
    return client.CoreV1Api(api)


def test_lists_parse_into_typed_models(lab: Lab, v1) -> None:
    pods = v1.list_namespaced_pod("default").items
    (web,) = pods
    assert web.status.pod_ip == lab.pod("web-1").ip and web.status.container_statuses[0].ready
    assert web.spec.restart_policy == "Always" and web.spec.dns_policy == "ClusterFirst"
    nodes = v1.list_node().items
    assert [n.metadata.name for n in nodes] == ["node-1", "node-2"]
    assert nodes[0].status.node_info.kubelet_version == "v1.37.0" and nodes[0].spec.pod_cidr == "10.244.1.0/24"
    assert {s.metadata.name for s in v1.list_service_for_all_namespaces().items} == {"kube-dns", "kubernetes"}
    assert {n.metadata.name for n in v1.list_namespace().items} >= {"default", "kube-system"}
    assert v1.list_namespaced_event("default").items[0].involved_object.name == "web-1"


def test_create_watch_patch_delete_a_pod(lab: Lab, v1) -> None:
    seen: list[tuple[str, str]] = []
    start = v1.list_namespaced_pod("default").metadata.resource_version

    def follow() -> None:
        w = watch.Watch()
        for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="app=py", resource_version=start,
                           timeout_seconds=20):
            seen.append((ev["type"], ev["object"].status.phase))
            if ev["type"] == "DELETED":
                w.stop()
    t = threading.Thread(target=follow)
    t.start()
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}), spec=client.V1PodSpec(
        containers=[client.V1Container(name="c", image="netexec",
                                       ports=[client.V1ContainerPort(container_port=8080)])]))
    made = v1.create_namespaced_pod("default", pod)
    assert made.metadata.uid and made.metadata.resource_version and made.spec.node_name in ("node-1", "node-2")
    st = lab.wait_pod("py")
    assert ipaddress.ip_address(st["podIP"]) in ipaddress.ip_network(lab.node(st["nodeName"]).pod_cidr)
    patched = v1.patch_namespaced_pod("py", "default", {"metadata": {"labels": {"extra": "1"}}})
    assert patched.metadata.labels == {"app": "py", "extra": "1"}
    assert int(patched.metadata.resource_version) > int(made.metadata.resource_version)
    with pytest.raises(client.ApiException) as e:  # a stale resourceVersion: 409
        v1.replace_namespaced_pod("py", "default", client.V1Pod(
            metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}, resource_version=made.metadata.resource_version),
            spec=patched.spec))
    assert e.value.status == 409
    v1.delete_namespaced_pod("py", "default")
    t.join(25)
    kinds = [k for k, _ in seen]
    assert kinds[0] == "ADDED" and kinds[-1] == "DELETED" and ("MODIFIED", "Running") in seen
    deadline = time.monotonic() + 10
    while netns.exists(f"{lab.name}-py"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_create_patch_delete_a_service(lab: Lab, v1) -> None:
    svc = client.V1Service(metadata=client.V1ObjectMeta(name="web"), spec=client.V1ServiceSpec(
        selector={"app": "web"}, type="NodePort", ports=[client.V1ServicePort(port=80, target_port=8080)]))
    made = v1.create_namespaced_service("default", svc)
    assert made.spec.cluster_ip and made.spec.ports[0].node_port and made.spec.ports[0].protocol == "TCP"
    assert made.spec.ip_families == ["IPv4"] and made.spec.session_affinity == "None"
    deadline = time.monotonic() + 20
    while True:
        out = lab.pod("web-1").exec(["curl", "-s", "-m", "2", f"http://{made.spec.cluster_ip}/hostname"]).stdout
        if out == "web-1":
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.1)
    p = v1.patch_namespaced_service("web", "default", {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}})
    assert p.spec.ports[0].target_port == 9090 and p.spec.cluster_ip == made.spec.cluster_ip  # merged by port
    with pytest.raises(client.ApiException) as e:
        v1.create_namespaced_service("default", client.V1Service(metadata=client.V1ObjectMeta(name="v6"),
                                     spec=client.V1ServiceSpec(ip_families=["IPv6"],
                                                               ports=[client.V1ServicePort(port=80)])))
    assert e.value.status == 422 and "IPv4 only" in e.value.body
    v1.delete_namespaced_service("web", "default")
    assert [s.metadata.name for s in v1.list_namespaced_service("default").items] == ["kubernetes"]
    assert lab.store.get("services", "web") is None
