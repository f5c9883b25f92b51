"""The deployment controller of a multi-host lab's controller (``emulator.hosts.deploy_across.work``): what each host
is to create and delete, from every host's pods, over a store of the controller's; and the pieces around it (the
mirror noticing a Deployment's pod go, kubectl's Deployment as the parser takes it, a pod keeping its owner, a
host's controller-manager leaving the controller's pods alone). No kernel, no hosts."""
from __future__ import annotations

import random

from emulator.hosts import api_across, deploy_across, mirror
from emulator.lab import podspec
from emulator.services import deployments
from emulator.services.controller import ControllerManager
from emulator.services.model import Deployment
from emulator.state.store import Store
from emulator.topology.model import Container

PLACEMENT = {"node-1": "h1", "node-2": "h2", "node-3": "h3", "node-4": "h1", "node-5": "h2", "node-6": "h3"}
DEP = Deployment("web", "default", 3, (("app", "web"),), (("app", "web"),),
                 (Container("web", "netexec"),)).manifest(uid="dep-uid")


def hosts_answer(pods: list[dict], phase: str = "Running", down: frozenset[str] = frozenset()) -> dict[str, dict]:
    """Every host's ``objects`` answer holding ``pods`` (each on its node's host), all Running."""
    out: dict[str, dict] = {h: {"pods": [], "statuses": [], "nodes": {}} for h in set(PLACEMENT.values())}
    for n, h in PLACEMENT.items():
        out[h]["nodes"][n] = "not-ready" if n in down else ""
    for p in pods:
        part = out[PLACEMENT[p["spec"]["nodeName"]]]
        part["pods"].append(p)
        part["statuses"].append({"name": p["metadata"]["name"], "namespace": "default", "phase": phase,
                                 "uid": p["metadata"]["uid"], "podIP": "10.244.0.9"})
    return out


def store_with(tmp_path, *deps: dict) -> Store:
    s = Store(tmp_path / "store")
    s.init()
    for d in deps:
        s.put("deployments", d["metadata"]["name"], d)
    return s


def test_a_deployment_spreads_over_every_hosts_nodes(tmp_path) -> None:
    store = store_with(tmp_path, DEP)
    todo, plans = deploy_across.work(store, hosts_answer([]), PLACEMENT, random.Random(1))
    assert sorted(todo) == ["h1", "h2", "h3"] and all(len(t["create"]) == 1 and not t["delete"]
                                                      for t in todo.values())
    made = [p for t in todo.values() for p in t["create"]]
    assert {p["spec"]["nodeName"] for p in made} == {"node-1", "node-2", "node-3"}
    assert all(deployments.owner(p) == deployments.replicaset_name(DEP) for p in made)
    deploy_across.write_status(store, plans)
    assert store.get_status("deployments", "web")["replicas"] == 3
    assert [rs["metadata"]["name"] for rs in store.list("replicasets")] == [deployments.replicaset_name(DEP)]
    # once they run: nothing to do, and the status says 3 ready
    todo, plans = deploy_across.work(store, hosts_answer(made), PLACEMENT, random.Random(1))
    assert todo == {}
    deploy_across.write_status(store, plans)
    st = store.get_status("deployments", "web")
    assert (st["readyReplicas"], st["updatedReplicas"], st["availableReplicas"]) == (3, 3, 3)


def test_nodes_that_take_no_pod_are_skipped_and_surplus_goes(tmp_path) -> None:
    store = store_with(tmp_path, DEP)
    todo, _ = deploy_across.work(store, hosts_answer([], down=frozenset({"node-1", "node-4"})), PLACEMENT,
                                 random.Random(2))
    assert "h1" not in todo and sum(len(t["create"]) for t in todo.values()) == 3
    pods = [p for t in todo.values() for p in t["create"]]
    store.put("deployments", "web", {**DEP, "spec": {**DEP["spec"], "replicas": 1}})
    todo, _ = deploy_across.work(store, hosts_answer(pods), PLACEMENT, random.Random(2))
    assert sum(len(t["delete"]) for t in todo.values()) == 2 and not any(t["create"] for t in todo.values())


def test_a_failed_pod_is_replaced_and_a_gone_deployments_pods_collected(tmp_path) -> None:
    store = store_with(tmp_path, DEP)
    made = [p for t in deploy_across.work(store, hosts_answer([]), PLACEMENT, random.Random(3))[0].values()
            for p in t["create"]]
    answer = hosts_answer(made)
    victim = answer["h2"]["statuses"][0]
    victim["phase"] = "Failed"
    todo, _ = deploy_across.work(store, answer, PLACEMENT, random.Random(3))
    assert todo["h2"]["delete"] == [["default", victim["name"]]]
    assert sum(len(t["create"]) for t in todo.values()) == 1
    store.delete("deployments", "web")
    todo, plans = deploy_across.work(store, hosts_answer(made), PLACEMENT, random.Random(3))
    assert sorted(n for t in todo.values() for _, n in t["delete"]) == sorted(p["metadata"]["name"] for p in made)
    store.put("replicasets", "web-x", {"metadata": {"name": "web-x", "namespace": "default", "ownerReferences": [
        {"kind": "Deployment", "uid": "dep-uid", "name": "web"}]}})
    deploy_across.write_status(store, plans)
    assert list(store.list("replicasets")) == []


def test_the_mirror_notices_a_deployments_pod_going_or_failing() -> None:
    owned = {"metadata": {"name": "web-abc-x", "namespace": "default", "ownerReferences": [
        {"kind": "ReplicaSet", "name": "web-abc", "controller": True}]}, "spec": {}}
    bare = {"metadata": {"name": "client", "namespace": "default"}, "spec": {}}
    k, b = ("pods", "default", "web-abc-x"), ("pods", "default", "client")
    assert mirror.owned_pod_changed({k: owned, b: bare}, {b: bare})
    assert not mirror.owned_pod_changed({k: owned, b: bare}, {k: owned})
    st = ("pods/status", "default", "web-abc-x")
    assert mirror.owned_pod_changed({k: owned, st: {"phase": "Running"}}, {k: owned, st: {"phase": "Failed"}})
    assert not mirror.owned_pod_changed({k: owned, st: {"phase": "Failed"}}, {k: owned, st: {"phase": "Failed"}})


def test_kubectls_deployment_is_what_the_parser_takes() -> None:
    sent = {"metadata": {"name": "d", "namespace": "default", "labels": {"app": "d"}, "uid": "x",
                         "annotations": {"a": "b"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}}, "strategy": {},
                     "template": {"metadata": {"creationTimestamp": None, "labels": {"app": "d"}},
                                  "spec": {"containers": [{"name": "c", "image": "pause", "resources": {}}],
                                           "tolerations": []}}},
            "status": {}}
    out = api_across.clean("deployments", sent)
    assert out["spec"] == {"replicas": 2, "selector": {"matchLabels": {"app": "d"}}, "template": {
        "metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "pause",
                                                                       "resources": {}}]}}}
    assert "uid" not in out["metadata"] and out["apiVersion"] == "apps/v1"


def test_a_pod_keeps_its_owner_as_an_api_server_keeps_it() -> None:
    pod = deployments.new_pod(DEP, "node-2", set(), random.Random(4))
    req = podspec.parse(pod, "<controller>", {"node-2": 100}, {})
    assert req.manifest["metadata"]["ownerReferences"] == pod["metadata"]["ownerReferences"]
    assert req.manifest["metadata"]["generateName"] == pod["metadata"]["generateName"]
    assert req.manifest["spec"]["nodeName"] == "node-2"


def test_a_hosts_controller_manager_leaves_the_controllers_pods_alone(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PODLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("emulator.state.resolv.ETC_NETNS", tmp_path / "netns")
    pod = deployments.new_pod(DEP, "node-1", set(), random.Random(5))
    for whole, kept in ((False, True), (True, False)):
        cm = ControllerManager("lab", "10.96.0.10", "cluster.local", seed=1, whole=whole)
        cm.store.init()
        cm.store.put("namespaces", "default", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
        cm.store.put("pods", pod["metadata"]["name"], pod)
        cm.reconcile()
        assert (cm.store.get("pods", pod["metadata"]["name"]) is not None) == kept, whole


def test_the_mirror_notices_a_pod_moving_on_its_own() -> None:
    pod = {"metadata": {"name": "back", "namespace": "default"}, "spec": {}}
    k, st = ("pods", "default", "back"), ("pods/status", "default", "back")
    running = {"phase": "Running", "podIP": "10.244.3.2"}
    remaking: set = set()
    assert not mirror.pod_moved({k: pod, st: {"phase": "Pending"}}, {k: pod, st: running}, remaking)  # its first IP
    assert mirror.pod_moved({k: pod, st: running}, {k: pod, st: {**running, "podIP": "10.244.3.3"}}, remaking)
    assert mirror.pod_moved({k: pod, st: running}, {k: pod, st: {**running, "phase": "Failed"}}, remaking)
    assert not mirror.pod_moved({k: pod, st: running}, {}, remaking)  # deleted: the controller pushed that itself
    # the agent makes the sandbox again: the status goes (a move), comes back Pending, then with its new IP (a move)
    assert mirror.pod_moved({k: pod, st: running}, {k: pod}, remaking) and remaking == {st}
    assert not mirror.pod_moved({k: pod}, {k: pod, st: {"phase": "Pending"}}, remaking)
    assert mirror.pod_moved({k: pod, st: {"phase": "Pending"}}, {k: pod, st: {**running, "podIP": "10.244.3.4"}},
                            remaking) and remaking == set()
