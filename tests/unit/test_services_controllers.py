"""The pure controllers: endpoints from pods (readiness, named ports, deletion), deployments (spread, replace,
scale, roll over), and the controller-manager's pass over a store (no kernel, no processes)."""
from __future__ import annotations

import random

from emulator.services import deployments, endpoints
from emulator.services.controller import ControllerManager
from emulator.services.model import Deployment, Service, ServicePort
from emulator.state.resolv import content
from emulator.state.store import Store
from emulator.topology.model import Container, Port


def pod(name: str, labels: dict, node: str = "node-1", ns: str = "default", ports: list | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels, "uid": f"u-{name}"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]}}


def status(name: str, ip: str | None, phase: str = "Running", uid: str | None = None, ns: str = "default") -> dict:
    return {"name": name, "namespace": ns, "phase": phase, "podIP": ip, "uid": uid or f"u-{name}"}


def keyed(sts: dict[str, dict]) -> dict[tuple[str, str], dict]:
    """Statuses keyed as the controllers key them: (namespace, name)."""
    return {(st["namespace"], st["name"]): st for st in sts.values()}


SVC = Service("web", selector=(("app", "web"),), cluster_ip="10.96.1.1",
              ports=(ServicePort(80, "http", "TCP", "http"), ServicePort(81, 9000, "UDP", "raw"))).manifest()


def test_endpoints_select_running_pods_and_resolve_named_ports() -> None:
    pods = [pod("a", {"app": "web"}, ports=[{"containerPort": 8080, "name": "http"}]),
            pod("b", {"app": "web"}, "node-2", ports=[{"containerPort": 8081, "name": "http"}]),
            pod("c", {"app": "web"}, ports=[{"containerPort": 8080, "name": "http"}]),
            pod("d", {"app": "other"}), pod("e", {"app": "web"}, ns="prod"),
            pod("f", {"app": "web"}, ports=[{"containerPort": 8080, "name": "http"}])]
    sts = keyed({"a": status("a", "10.244.1.2"), "b": status("b", "10.244.2.2"),
                 "c": status("c", "10.244.1.3", "Pending"), "d": status("d", "10.244.1.4"),
                 "e": status("e", "10.244.1.5", ns="prod"), "f": status("f", "10.244.1.6", uid="old")})
    ep = endpoints.compute(SVC, pods, sts)
    assert ep["kind"] == "Endpoints" and ep["metadata"]["name"] == "web"
    by_port = {tuple(p["port"] for p in s["ports"]): s for s in ep["subsets"]}
    assert set(by_port) == {(8080, 9000), (8081, 9000)}  # named port resolved per pod: two subsets
    s8080 = by_port[(8080, 9000)]
    assert [a["ip"] for a in s8080["addresses"]] == ["10.244.1.2"]
    assert [a["ip"] for a in s8080["notReadyAddresses"]] == ["10.244.1.3"]  # Pending: not ready
    assert s8080["addresses"][0]["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "a", "uid": "u-a"}
    assert by_port[(8081, 9000)]["addresses"][0]["nodeName"] == "node-2"
    assert ("10.244.1.6", 8080, "TCP", "http") not in endpoints.addresses(ep)  # status of another pod instance
    assert endpoints.compute(Service("x", ports=(ServicePort(1, 1),)).manifest(), pods, sts) is None  # no selector


def test_deleted_pod_leaves_endpoints_before_its_status_goes() -> None:
    pods = [pod("a", {"app": "web"}, ports=[{"containerPort": 8080, "name": "http"}])]
    sts = keyed({"a": status("a", "10.244.1.2"), "gone": status("gone", "10.244.1.9")})
    ips = {a[0] for a in endpoints.addresses(endpoints.compute(SVC, pods, sts))}
    assert ips == {"10.244.1.2"}
    assert endpoints.same(endpoints.compute(SVC, pods, sts), endpoints.compute(SVC, pods, sts))


DEP = Deployment("web", "default", 3, (("app", "web"),), (("app", "web"),),
                 (Container("c", "netexec", ports=(Port(8080),)),)).manifest(uid="dep-uid")


def test_deployment_creates_spread_pods_with_kubernetes_names() -> None:
    counts = {"node-1": 2, "node-2": 0, "node-3": 0}
    plan = deployments.plan(DEP, [], {}, ["node-1", "node-2", "node-3"], counts, random.Random(1))
    assert [p["spec"]["nodeName"] for p in plan.create] == ["node-2", "node-3", "node-2"]
    rs = deployments.replicaset_name(DEP)
    for p in plan.create:
        name = p["metadata"]["name"]
        assert name.startswith(rs + "-") and len(name) == len(rs) + 6 and len(rs) == len("web-") + 10
        assert p["metadata"]["labels"] == {"app": "web", "pod-template-hash": rs[4:]}
        assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" and deployments.owned_by(DEP, p)
        assert p["spec"]["containers"][0]["image"] == "netexec"
    assert plan.status["replicas"] == 3 and plan.status["readyReplicas"] == 0


def _run(pods: list[dict]) -> dict:
    return {("default", p["metadata"]["name"]): status(p["metadata"]["name"], "10.0.0.1", uid=p["metadata"]["uid"])
            for p in pods}


def test_deployment_replaces_deleted_pods_and_scales_down() -> None:
    rng = random.Random(2)
    nodes = ["node-1", "node-2"]
    pods = deployments.plan(DEP, [], {}, nodes, {}, rng).create
    survivors = pods[1:]  # one pod deleted by hand
    plan = deployments.plan(DEP, survivors, _run(survivors), nodes, {}, rng)
    assert len(plan.create) == 1 and plan.create[0]["metadata"]["name"] not in {p["metadata"]["name"] for p in pods}
    down = {**DEP, "spec": {**DEP["spec"], "replicas": 1}}
    plan = deployments.plan(down, pods, _run(pods[:1]), nodes, {}, rng)
    assert len(plan.delete) == 2 and pods[0]["metadata"]["name"] not in plan.delete  # not-Running go first
    assert deployments.plan(DEP, pods + [pod("bare", {"app": "web"})], _run(pods), nodes, {}, rng).delete == []


def test_template_change_rolls_over_after_new_pods_run() -> None:
    rng = random.Random(3)
    nodes = ["node-1"]
    old = deployments.plan(DEP, [], {}, nodes, {}, rng).create
    tmpl = DEP["spec"]["template"]
    new_dep = {**DEP, "spec": {**DEP["spec"], "template": {**tmpl, "metadata": {"labels": {"app": "web", "v": "2"}}}}}
    plan = deployments.plan(new_dep, old, _run(old), nodes, {}, rng)
    assert len(plan.create) == 3 and plan.delete == []  # old pods stay until the new ones run
    plan2 = deployments.plan(new_dep, old + plan.create, _run(old + plan.create), nodes, {}, rng)
    assert sorted(plan2.delete) == sorted(p["metadata"]["name"] for p in old) and not plan2.create


def controller_over_a_store(tmp_path, monkeypatch, seed: int) -> ControllerManager:
    """A controller-manager of lab ``lab`` over a fresh store under ``tmp_path`` holding namespace ``default``."""
    monkeypatch.setenv("PODLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("emulator.state.resolv.ETC_NETNS", tmp_path / "netns")
    cm = ControllerManager("lab", "10.96.0.10", "cluster.local", seed=seed)
    cm.store.init()
    cm.store.put("namespaces", "default", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
    return cm


def test_controller_pass_over_a_store(tmp_path, monkeypatch) -> None:
    cm = controller_over_a_store(tmp_path, monkeypatch, seed=7)
    store: Store = cm.store
    store.put("nodes", "node-1", {"metadata": {"name": "node-1"}})
    install_cni(cm, "node-1")
    store.put("deployments", "web", DEP)
    store.put("services", "web", Service("web", selector=(("app", "web"),), cluster_ip="10.96.1.1",
                                         ports=(ServicePort(80, 8080),)).manifest())
    cm.reconcile()
    pods = list(store.list("pods"))
    assert len(pods) == 3 and {p["spec"]["nodeName"] for p in pods} == {"node-1"}
    resolv = tmp_path / "netns" / f"lab-{pods[0]['metadata']['name']}" / "resolv.conf"
    assert resolv.read_text() == content("default", "10.96.0.10")
    assert "ndots:5" in resolv.read_text() and "search default.svc.cluster.local svc.cluster.local" in resolv.read_text()
    assert endpoints.addresses(store.get("endpoints", "web")) == []
    for p in pods:  # the agents report the pods Running
        n = p["metadata"]["name"]
        store.put_status("pods", n, {**status(n, f"10.244.1.{pods.index(p) + 2}"), "uid": p["metadata"]["uid"]})
    cm.reconcile()
    assert len(endpoints.addresses(store.get("endpoints", "web"))) == 3
    assert store.get_status("deployments", "web")["readyReplicas"] == 3
    store.delete("services", "web")
    store.delete("deployments", "web")
    cm.reconcile()
    assert store.get("endpoints", "web") is None and store.get_status("deployments", "web") is None
    cm.resolv.remove()
    assert not any((tmp_path / "netns").iterdir())


def install_cni(cm: ControllerManager, node: str) -> None:
    """What ``podlab cni install`` (or the lab's build) leaves on a node: a CNI configuration, so it is Ready."""
    d = cm.paths.cni_conf_dir(node)
    d.mkdir(parents=True, exist_ok=True)
    (d / "10-flannel.conflist").write_text("{}")


def test_deployment_pods_go_to_ready_nodes_only_and_wait_unbound_for_one(tmp_path, monkeypatch) -> None:
    """As the scheduler places them: never on a node without CNI configuration (NotReady, tainted not-ready)
    nor on a Docker host; with no node left the pods are created unbound, Pending with the scheduler's
    FailedScheduling message and event, and bound once a node turns Ready."""
    from emulator.state import events
    cm = controller_over_a_store(tmp_path, monkeypatch, seed=3)
    store: Store = cm.store
    store.put("nodes", "node-1", {"metadata": {"name": "node-1"}})
    store.put("nodes", "d", {"metadata": {"name": "d", "annotations": {"podlab.io/runtime": "docker"}}})
    store.put("deployments", "web", DEP)
    cm.reconcile()
    pods = list(store.list("pods"))
    assert len(pods) == 3 and all(p["spec"]["nodeName"] == "" for p in pods)
    msg = ("0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. "
           "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    for p in pods:
        st = store.get_status("pods", p["metadata"]["name"])
        assert (st["phase"], st["reason"], st["message"], st["uid"]) == ("Pending", "Unschedulable", msg,
                                                                          p["metadata"]["uid"])
        assert [(e["reason"], e["message"]) for e in events.read(store.root, "pod", p["metadata"]["name"])] == \
            [("FailedScheduling", msg)]
    cm.reconcile()  # nothing changes while no node is Ready: no second pod, no second event
    assert len(list(store.list("pods"))) == 3
    assert len(events.read(store.root, "pod", pods[0]["metadata"]["name"])) == 1
    install_cni(cm, "node-1")
    cm.reconcile()
    bound = {p["metadata"]["name"]: p for p in store.list("pods")}
    assert set(bound) == {p["metadata"]["name"] for p in pods}  # the same pods, bound: none replaced
    assert {p["spec"]["nodeName"] for p in bound.values()} == {"node-1"}
    for name in bound:
        assert store.get_status("pods", name) is None  # the agent of node-1 writes the next one
        assert events.read(store.root, "pod", name)[-1]["message"] == f"Successfully assigned default/{name} to node-1"
    assert [p["metadata"]["name"] for p in store.list_index("pods", "node-1")] != []


def test_no_ready_node_message() -> None:
    from emulator.topology import hostports
    assert hostports.no_ready_node_message(0, 0, 0) == "no nodes available to schedule pods"
    assert hostports.no_ready_node_message(3, 2, 1) == (
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint "
        "{node.kubernetes.io/not-ready: }. preemption: 0/3 nodes are available: 3 Preemption is not helpful for "
        "scheduling.")


def test_daemon_spawn_reports_the_daemons_pid(tmp_path) -> None:
    import os
    import time

    from emulator.proc import journal
    from emulator.proc.lifecycle import alive, start_time, stop
    from emulator.proc.daemon import spawn
    from emulator.state.store import wait_file
    out = tmp_path / "out.json"
    jpath = tmp_path / "procs.journal"
    journal.create(jpath)

    def target() -> None:
        from emulator.state.store import write_json
        write_json(out, {"pid": os.getpid(), "ppid": os.getppid()})
        time.sleep(30)
    pid = spawn(target, tmp_path / "d.log", title="podlab-test", journal=jpath, what="test daemon")
    try:
        info = wait_file(out, lambda d: True, 10, "the test daemon", "t")
        assert info["pid"] == pid and info["ppid"] != os.getpid()  # detached: not our child
        assert open(f"/proc/{pid}/comm").read().strip() == "podlab-test"
        # recorded by itself before it reported its PID
        assert journal.entries(jpath) == [journal.Entry(pid, start_time(pid), "daemon", "test daemon")]
    finally:
        stop(pid, start_time(pid), grace=1.0)
    assert not alive(pid, None)


def test_prepare_pod_writes_only_in_labs_with_cluster_dns(tmp_path, monkeypatch) -> None:
    from emulator.state.paths import LabPaths
    from emulator.state.resolv import preparing_pod
    monkeypatch.setenv("PODLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("emulator.state.resolv.ETC_NETNS", tmp_path / "netns")
    store = Store(LabPaths("lab").store)
    store.init()
    p = pod("new", {"app": "x"}, ns="prod")
    with preparing_pod("lab", p):
        pass
    assert not (tmp_path / "netns").exists()  # no kube-dns: nothing to point at
    store.put("services", "kube-dns", Service("kube-dns", "kube-system", cluster_ip="10.96.0.10",
                                              ports=(ServicePort(53, 53, "UDP", "dns"),)).manifest())
    with preparing_pod("lab", p):
        pass
    assert (tmp_path / "netns" / "lab-new.prod" / "resolv.conf").read_text().startswith("search prod.svc.cluster.local ")


def test_deployment_owns_a_replicaset_owning_its_pods_and_garbage_is_collected(tmp_path, monkeypatch) -> None:
    cm = controller_over_a_store(tmp_path, monkeypatch, seed=3)
    store: Store = cm.store
    store.put("nodes", "node-1", {"metadata": {"name": "node-1"}})
    install_cni(cm, "node-1")
    store.put("deployments", "web", DEP)
    cm.reconcile()
    (rs,) = list(store.list("replicasets"))
    dep = store.get("deployments", "web")
    assert rs["metadata"]["name"] == deployments.replicaset_name(dep)
    assert rs["metadata"]["ownerReferences"][0] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                    "uid": dep["metadata"]["uid"], "controller": True,
                                                    "blockOwnerDeletion": True}
    pods = list(store.list("pods"))
    assert len(pods) == 3 and all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in pods)
    assert rs["spec"]["replicas"] == 3 and rs["status"]["replicas"] == 3
    assert store.get_status("deployments", "web")["observedGeneration"] == dep["metadata"]["generation"]
    store.delete("deployments", "web")  # as the API deletes it (Background propagation): the collector's job
    cm.reconcile()
    assert list(store.list("replicasets")) == [] and list(store.list("pods")) == []
    cm.resolv.remove()


def test_resolv_files_are_remembered_between_passes(tmp_path, monkeypatch) -> None:
    """The controller's pass touches no resolv.conf it wrote while nothing changed; another writer (the API
    server preparing a pod) and a pod that went are noticed; ``verify`` rewrites a file changed by hand."""
    from emulator.state.resolv import ResolvFiles
    monkeypatch.setenv("PODLAB_STATE_DIR", str(tmp_path / "state"))
    netns_dir = tmp_path / "netns"
    monkeypatch.setattr("emulator.state.resolv.ETC_NETNS", netns_dir)
    rf = ResolvFiles("lab", "10.96.0.10")
    pods = [pod(f"p{i}", {}) for i in range(3)] + [pod("q", {}, ns="prod")]
    rf.ensure(pods)
    assert (netns_dir / "lab-q.prod" / "resolv.conf").read_text() == content("prod", "10.96.0.10")
    stamp = rf._stamp()
    (netns_dir / "lab-p0" / "resolv.conf").write_text("by hand\n")
    rf.ensure(pods)  # nothing changed that the pass follows: no read, no write, no lock
    assert rf._stamp() == stamp and (netns_dir / "lab-p0" / "resolv.conf").read_text() == "by hand\n"
    ResolvFiles("lab", "10.96.0.10").ensure([pod("new", {})], prune=False)  # another process adds a pod's file
    assert rf._stamp() != stamp
    rf.ensure(pods + [pod("new", {})])
    assert (netns_dir / "lab-new" / "resolv.conf").exists() and rf.owned() == {
        "lab-p0", "lab-p1", "lab-p2", "lab-q.prod", "lab-new"}
    rf.ensure(pods[1:] + [pod("new", {})])  # p0 went: its directory goes
    assert not (netns_dir / "lab-p0").exists() and "lab-p0" not in rf.owned()
    (netns_dir / "lab-p1" / "resolv.conf").write_text("by hand\n")
    rf.ensure(pods[1:] + [pod("new", {})], verify=True)
    assert (netns_dir / "lab-p1" / "resolv.conf").read_text() == content("default", "10.96.0.10")
    rf.remove()
    assert not any(netns_dir.iterdir()) and rf.owned() == set()


def test_a_pass_reads_only_the_statuses_it_needs(tmp_path, monkeypatch) -> None:
    """The Deployment's pods' statuses are read (and cached), not the 40 other pods' (at 5,000 pods listing them
    all kept ~30 MB parsed in the controller-manager for the 2 coredns pods it needed)."""
    cm = controller_over_a_store(tmp_path, monkeypatch, seed=5)
    store: Store = cm.store
    store.put("nodes", "node-1", {"metadata": {"name": "node-1"}})
    install_cni(cm, "node-1")
    for i in range(40):
        store.put("pods", f"plain-{i}", {"metadata": {"name": f"plain-{i}"}, "spec": {"nodeName": "node-1"}})
        store.put_status("pods", f"plain-{i}", status(f"plain-{i}", f"10.244.1.{i + 10}"))
    store.put("deployments", "web", DEP)
    cm.reconcile()
    mine = [p["metadata"]["name"] for p in store.list("pods") if p["metadata"]["name"].startswith("web-")]
    for n in mine:
        store.put_status("pods", n, {**status(n, "10.244.1.2"), "uid": store.get("pods", n)["metadata"]["uid"]})
    cm.reconcile()
    assert store.get_status("deployments", "web")["readyReplicas"] == 3
    read = {p.rsplit("/", 1)[1][:-5] for p in cm.store._cache if "/status/pods/" in p}
    assert read == set(mine)
