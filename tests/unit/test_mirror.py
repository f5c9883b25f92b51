"""The pure part of the controller's mirror of a multi-host lab (``emulator.hosts.mirror``): what a host owns of
its answer, and what makes the mirror store equal to it without rewriting what did not change."""
from __future__ import annotations

from emulator.hosts import mirror


def pod(name: str, rv: str = "7", node: str = "node-1") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": "u-" + name,
                                                            "resourceVersion": rv, "generation": 1},
            "spec": {"nodeName": node}}


def test_a_host_owns_its_nodes_pods_and_statuses_only() -> None:
    part = {"nodes": [{"metadata": {"name": "node-1"}}, {"metadata": {"name": "node-2"}}],
            "pods": [pod("a")], "statuses": [{"name": "a", "namespace": "default", "phase": "Running"}, {}]}
    assert sorted(mirror.desired(part, {"node-1"}, "h1")) == [("nodes", "", "node-1"), ("pods", "default", "a"),
                                                        ("pods/status", "default", "a")]


def test_unchanged_objects_are_not_written_again_whatever_their_host_stamped() -> None:
    have = {("pods", "default", "a"): mirror.stripped(pod("a", rv="7"))}
    put, gone = mirror.changes(have, {("pods", "default", "a"): pod("a", rv="9")})
    assert (put, gone) == ([], [])
    changed = pod("a")
    changed["metadata"]["labels"] = {"app": "x"}
    assert mirror.changes(have, {("pods", "default", "a"): changed}) == ([("pods", "default", "a")], [])


def test_a_pods_manifest_goes_before_its_status() -> None:
    have = {("pods/status", "default", "a"): {"name": "a"}, ("pods", "default", "a"): mirror.stripped(pod("a")),
            ("nodes", "", "node-1"): {"metadata": {"name": "node-1"}}}
    _, gone = mirror.changes(have, {("nodes", "", "node-1"): {"metadata": {"name": "node-1"}}})
    assert gone == [("pods", "default", "a"), ("pods/status", "default", "a")]


def test_a_node_carries_its_host_and_readiness() -> None:
    part = {"nodes": [{"metadata": {"name": "node-1", "labels": {"a": "b"}}}], "ready": {"node-1": "Ready"}}
    node = mirror.desired(part, {"node-1"}, "vm2")[("nodes", "", "node-1")]
    assert node["metadata"]["labels"] == {"a": "b", "podlab.io/host": "vm2"}
    assert node["metadata"]["annotations"] == {"podlab.io/kubelet": "Ready"}
    gone = mirror.with_host(node, "vm2", "Unknown")
    assert mirror.changes({("nodes", "", "node-1"): mirror.stripped(node)}, {("nodes", "", "node-1"): gone})[0]
