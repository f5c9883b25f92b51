"""Services across hosts, the pure part: Endpoints from the pods of every host, the store diff a host applies, and
the pod pinned to the node the controller chose."""
from __future__ import annotations

from emulator.hosts import changes, svcsync


def svc(name: str, selector: dict | None, ns: str = "default", port: int = 8080) -> dict:
    spec: dict = {"ports": [{"port": 80, "targetPort": port, "protocol": "TCP"}], "clusterIP": "10.96.0.20"}
    if selector is not None:
        spec["selector"] = selector
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns, "resourceVersion": "7"}, "spec": spec}


def pod(name: str, node: str, labels: dict, uid: str) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "labels": labels, "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}


def status(name: str, ip: str, uid: str, phase: str = "Running") -> dict:
    return {"name": name, "namespace": "default", "podIP": ip, "uid": uid, "phase": phase}


PER_HOST = {
    "h1": {"pods": [pod("client", "node-1", {"app": "client"}, "u0")],
           "statuses": [status("client", "10.244.1.2", "u0")]},
    "h2": {"pods": [pod("back-2", "node-2", {"app": "back"}, "u2")],
           "statuses": [status("back-2", "10.244.2.2", "u2")]},
    "h3": {"pods": [pod("back-3", "node-3", {"app": "back"}, "u3"), pod("back-4", "node-3", {"app": "back"}, "u4")],
           "statuses": [status("back-3", "10.244.3.2", "u3"), status("back-4", "10.244.3.3", "u4", "Pending")]},
}


def test_endpoints_name_pods_on_every_host_with_their_nodes() -> None:
    [ep] = svcsync.endpoints_for([svc("back", {"app": "back"})], [], PER_HOST)
    [subset] = ep["subsets"]
    assert [(a["ip"], a["nodeName"]) for a in subset["addresses"]] == [("10.244.2.2", "node-2"),
                                                                      ("10.244.3.2", "node-3")]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.3.3"]  # not Running yet
    assert subset["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_a_service_without_selector_keeps_its_stored_endpoints_and_orphans_go() -> None:
    kube_dns = {"metadata": {"name": "kube-dns", "namespace": "kube-system"}, "subsets": [{"addresses": [
        {"ip": "192.168.56.2"}], "ports": [{"port": 53, "protocol": "UDP"}]}]}
    orphan = {"metadata": {"name": "gone", "namespace": "default"}, "subsets": []}
    out = svcsync.endpoints_for([svc("kube-dns", None, "kube-system"), svc("none", None)], [kube_dns, orphan],
                                PER_HOST)
    assert out == [kube_dns]


def test_a_pod_whose_status_is_of_another_uid_is_no_endpoint() -> None:
    stale = {"h2": {"pods": [pod("back-2", "node-2", {"app": "back"}, "new")],
                    "statuses": [status("back-2", "10.244.2.2", "old")]}}
    [ep] = svcsync.endpoints_for([svc("back", {"app": "back"})], [], stale)
    assert ep["subsets"] == []


def test_unchanged_endpoints_keep_their_creation_time() -> None:
    [first] = svcsync.endpoints_for([svc("back", {"app": "back"})], [], PER_HOST)
    first["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    [again] = svcsync.endpoints_for([svc("back", {"app": "back"})], [first], PER_HOST)
    assert again["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z"


def test_diff_writes_only_what_changed_and_deletes_what_is_gone() -> None:
    a, b, c = svc("a", {"x": "1"}), svc("b", {"x": "2"}), svc("c", {"x": "3"})
    have = [a, b, {**c, "metadata": {**c["metadata"], "resourceVersion": "99", "creationTimestamp": "then"}}]
    b2 = {**b, "spec": {**b["spec"], "clusterIP": "10.96.0.30"}}
    new = svc("d", {"x": "4"})
    put, gone = svcsync.diff(have, [b2, c, new])
    assert [o["metadata"]["name"] for o in put] == ["b", "d"]  # c differs only by what the store stamps
    assert gone == [("default", "a")]


def test_push_drops_the_controllers_resource_versions() -> None:
    body = svcsync.push([svc("a", {"x": "1"})], [])
    assert "resourceVersion" not in body["services"][0]["metadata"] and body["endpoints"] == []


def test_a_pod_is_pinned_to_the_chosen_node_in_either_form() -> None:
    short = {"name": "web", "containers": [{"name": "c", "image": "netexec"}]}
    assert changes._pin(short, "node-3")["node"] == "node-3" and "node" not in short
    k8s = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": []}}
    assert changes._pin(k8s, "node-2")["spec"] == {"containers": [], "nodeName": "node-2"}
    assert changes.kind_of(short) == "Pod" and changes.kind_of({"kind": "Service"}) == "Service"
