"""The file store, pod manifests given to apply, CNI shapes and image resolution (no root needed)."""
from __future__ import annotations

import json
import os

import pytest

from emulator.agent.images import resolve
from emulator.cli.output import age, pod_status_word
from emulator.cni.spec import CniRequest, Result, bridge_conflist
from emulator.errors import CniError, ManifestError
from emulator.state import events
from emulator.lab import podspec
from emulator.state.store import Store

NODES = {"node-1": 253, "node-2": 253}


def test_store_put_get_list_index_delete(tmp_path) -> None:
    s = Store(tmp_path)
    s.init()
    pod = {"metadata": {"name": "a"}, "spec": {"nodeName": "node-1"}}
    s.put("pods", "a", pod)
    s.put("pods", "b", {"metadata": {"name": "b"}, "spec": {"nodeName": "node-2"}})
    assert s.get("pods", "a") == pod and pod["metadata"]["namespace"] == "default" and s.names("pods") == ["a", "b"]
    assert [p["metadata"]["name"] for p in s.list_index("pods", "node-1")] == ["a"]
    assert os.stat(tmp_path / "pods/default/a.json").st_ino == os.stat(
        tmp_path / "pods-by-node/node-1/default.a.json").st_ino
    s.put_status("pods", "a", {"phase": "Running"})
    assert s.with_status("pods", "a")["status"] == {"phase": "Running", "resourceVersion": "3"}
    assert s.names("pods") == ["a", "b"]  # statuses live elsewhere
    v = s.version("pods")
    s.put("pods", "a", {"metadata": {"name": "a"}, "spec": {"nodeName": "node-2"}})  # moved: index follows
    assert list(s.list_index("pods", "node-1")) == []
    assert sorted(p["metadata"]["name"] for p in s.list_index("pods", "node-2")) == ["a", "b"]
    s.delete("pods", "a")
    assert s.get("pods", "a") is None and not (tmp_path / "pods-by-node/node-2/default.a.json").exists()
    assert s.version("pods") != v
    s.delete("pods", "a")  # idempotent
    assert not [f for f in os.listdir(tmp_path / "pods/default") if f.startswith(".")]  # no temporary files left


def test_store_namespaces_keep_same_names_apart(tmp_path) -> None:
    s = Store(tmp_path)
    s.init()
    for ns in ("x", "y", "z"):
        s.put("pods", "a", {"metadata": {"name": "a", "namespace": ns, "uid": ns}, "spec": {"nodeName": "node-1"}})
    s.put("nodes", "node-1", {"metadata": {"name": "node-1"}})
    assert s.keys("pods") == [("x", "a"), ("y", "a"), ("z", "a")] and s.names("pods") == []  # none in default
    assert s.get("pods", "a", "y")["metadata"]["uid"] == "y" and s.names("pods", ns="z") == ["a"]
    assert json.load(open(tmp_path / "pods/x/a.json"))["metadata"]["namespace"] == "x"  # readable with cat
    assert sorted(os.listdir(tmp_path / "pods-by-node/node-1")) == ["x.a.json", "y.a.json", "z.a.json"]
    assert [p["metadata"]["uid"] for p in s.list("pods", ns="z")] == ["z"] and s.keys("nodes") == [("", "node-1")]
    v = s.version("pods")
    s.put_status("pods", "a", {"phase": "Running"}, "x")
    assert s.version("pods") == v and s.get_status("pods", "a", "y") is None  # statuses apart, per namespace
    s.delete("pods", "a", "x")
    assert s.version("pods") != v  # a change inside a namespace directory is seen by version()
    assert s.keys("pods") == [("y", "a"), ("z", "a")] and len(list(s.list_index("pods", "node-1"))) == 2


def test_namespace_purge_deletes_what_it_holds(tmp_path) -> None:
    from emulator.state import namespaces
    s = Store(tmp_path)
    s.init()
    s.put("namespaces", "x", namespaces.manifest("x", {"team": "a"}))
    assert s.get("namespaces", "x")["metadata"]["labels"] == {"team": "a", "kubernetes.io/metadata.name": "x"}
    assert namespaces.active(s, "x") and not namespaces.active(s, "nope")
    for kind in ("pods", "services", "endpoints", "deployments", "networkpolicies"):
        s.put(kind, "a", {"metadata": {"name": "a", "namespace": "x"}, "spec": {"nodeName": "node-1"}})
    s.put("pods", "a", {"metadata": {"name": "a"}, "spec": {"nodeName": "node-1"}})  # default's a stays
    s.put_status("pods", "a", {"name": "a", "namespace": "x"}, "x")  # its agent has not stopped it yet
    events.emit(tmp_path, "pod", "a", "Scheduled", "m", "s", ns="x")
    namespaces.mark_terminating(s, "x")
    assert not namespaces.active(s, "x") and s.get("namespaces", "x")["status"]["phase"] == "Terminating"
    assert namespaces.purge(s, "x") == 1 and s.get("namespaces", "x") is not None
    assert all(not s.keys(k, ns="x") for k in ("pods", "services", "endpoints", "deployments", "networkpolicies"))
    s.delete("pods", "a", "x", status=True)  # the agent stopped it
    assert namespaces.purge(s, "x") == 0 and s.get("namespaces", "x") is None
    assert events.read(tmp_path, "pod", "a", "x") == [] and s.keys("pods") == [("default", "a")]
    assert not (tmp_path / "pods" / "x").exists()


def test_resource_versions_journal_and_conflicts(tmp_path) -> None:
    from emulator.errors import AlreadyExistsError, ConflictError
    from emulator.state import feed as feeds
    s = Store(tmp_path)
    s.init()
    assert s.resource_version() == 0
    a = s.put("pods", "a", {"metadata": {"name": "a"}, "spec": {"nodeName": "n1", "containers": []}})
    meta = a["metadata"]
    assert meta["resourceVersion"] == "1" and meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"]
    s.put_status("pods", "a", {"phase": "Running"})
    assert s.current_rv("pods", "a") == 2  # a pod's version: the newer of manifest and status
    with pytest.raises(ConflictError, match="has been modified"):
        s.put("pods", "a", {"metadata": {"name": "a"}, "spec": {"nodeName": "n1", "containers": []}}, expect_rv=1)
    b = s.put("pods", "a", {"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"nodeName": "n1",
                                                                                    "containers": []}}, expect_rv=2)
    assert b["metadata"]["generation"] == 1 and b["metadata"]["uid"] == meta["uid"]  # labels: same generation
    c = s.put("pods", "a", {"metadata": {"name": "a"}, "spec": {"nodeName": "n2", "containers": []}})
    assert c["metadata"]["generation"] == 2 and c["metadata"]["resourceVersion"] == "4"
    with pytest.raises(AlreadyExistsError):
        s.put("pods", "a", {"metadata": {"name": "a"}}, create=True)
    assert s.delete("pods", "a") and not s.delete("pods", "a")  # a second delete changes nothing
    events.emit(tmp_path, "pod", "a", "Killing", "m", "kubelet", ns="x")
    lines = [json.loads(line) for line in open(tmp_path / feeds.JOURNAL)]
    assert [(e["rv"], e["op"], e["kind"], e["status"]) for e in lines] == [
        (1, "put", "pods", False), (2, "put", "pods", True), (3, "put", "pods", False), (4, "put", "pods", False),
        (5, "delete", "pods", False), (6, "put", "events", False)]
    assert lines[0]["obj"]["metadata"]["resourceVersion"] == "1" and lines[5]["ns"] == "x"
    assert events.read(tmp_path, "pod", "a", "x")[0]["rv"] == 6 and s.resource_version() == 6


def test_a_store_made_again_in_one_process_gets_a_new_feed(tmp_path) -> None:
    """up/down/up of one lab name in one process: the second store's journal gets its lines (the first store's
    descriptors pointed at removed files; bench_up --runs 3 at 5,000 pods failed when that journal rotated)."""
    import shutil
    from emulator.state import feed as feeds
    root = tmp_path / "store"
    s = Store(root)
    s.init()
    s.put("services", "a", {"metadata": {"name": "a"}, "spec": {"ports": []}})
    shutil.rmtree(root)
    s = Store(root)
    s.init()
    s.put("services", "b", {"metadata": {"name": "b"}, "spec": {"ports": []}})
    lines = [json.loads(line) for line in open(root / feeds.JOURNAL)]
    assert [(e["rv"], e["name"]) for e in lines] == [(1, "b")] and s.resource_version() == 1


def test_feed_is_one_counter_across_processes_and_rotates(tmp_path, monkeypatch) -> None:
    import multiprocessing
    from emulator.state import feed as feeds
    monkeypatch.setattr(feeds, "MAX_JOURNAL", 4096)
    ctx = multiprocessing.get_context("fork")

    def writer(k: int) -> None:
        st = Store(tmp_path)
        for i in range(100):
            st.put("services", f"s{k}-{i}", {"metadata": {"name": f"s{k}-{i}"}, "spec": {"ports": []}})
    procs = [ctx.Process(target=writer, args=(k,)) for k in range(4)]
    for p in procs:
        p.start()
    writer(9)
    for p in procs:
        p.join()
    assert Store(tmp_path).resource_version() == 500
    rvs = [json.loads(line)["rv"] for f in (feeds.ROTATED, feeds.JOURNAL) for line in open(tmp_path / f)]
    assert rvs == sorted(rvs) and rvs[-1] == 500 and len(set(rvs)) == len(rvs)  # in order, none twice
    got = sorted(int(o["metadata"]["resourceVersion"]) for o in Store(tmp_path).list("services"))
    assert got == list(range(1, 501))


def test_events_round_trip(tmp_path) -> None:
    events.emit(tmp_path, "pod", "a", "Scheduled", "assigned to node-1", "default-scheduler")
    events.emit_many(tmp_path, "pod", "a", [("Started", "Started container c", "Normal")], "kubelet, node-1")
    assert [e["reason"] for e in events.read(tmp_path, "pod", "a")] == ["Scheduled", "Started"]
    events.delete(tmp_path, "pod", "a")
    assert events.read(tmp_path, "pod", "a") == []


def test_kubernetes_pod_manifest_is_accepted() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "np", "labels": {"app": "x"}},
           "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
                                    "args": ["netexec", "--http-port=8083"], "imagePullPolicy": "Always",
                                    "livenessProbe": {"httpGet": {"port": 8083}},
                                    "ports": [{"containerPort": 8083}]}]}}
    req = podspec.parse(obj, "f.yaml", NODES, {"node-1": 5, "node-2": 1})
    assert req.pod.node == "node-2" and req.manifest["spec"]["nodeName"] == "node-2"
    assert req.manifest["spec"]["containers"][0]["args"] == ["netexec", "--http-port=8083"]
    assert "imagePullPolicy" not in req.manifest["spec"]["containers"][0]
    assert "restartPolicy" not in req.manifest["spec"]  # the agent's default: Always
    never = podspec.parse({**obj, "spec": {**obj["spec"], "restartPolicy": "Never"}}, "f.yaml", NODES, {})
    assert never.manifest["spec"]["restartPolicy"] == "Never"  # kept for the agent's supervision


@pytest.mark.parametrize("obj, field, words", [
    ({"apiVersion": "v2", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": []}}, "apiVersion",
     "not supported"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
      "spec": {"hostNetwork": "yes", "containers": [{"name": "c"}]}}, "spec.hostNetwork", "not a boolean"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
      "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "c"}]}}, "spec.restartPolicy",
     "not a restart policy"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
      "spec": {"containers": [{"name": "c", "volumeMounts": []}]}}, "spec.containers[0].volumeMounts",
     "not supported"),
    ({"name": "a", "node": "node-7"}, "node", "unknown node 'node-7'"),
    ({"name": "Bad_Name"}, "name", "pod name 'Bad_Name'"),
    ({"name": "node-1"}, "name", "also a node name"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {}}, "spec.containers", "needs"),
])
def test_bad_pod_manifests(obj, field, words) -> None:
    with pytest.raises(ManifestError) as e:
        podspec.parse(obj, "pod.yaml", NODES, {})
    msg = str(e.value)
    assert msg.startswith(f"pod.yaml: {field}:") and words in msg and "fix:" in msg, msg


def test_an_attachable_container_stays_attachable() -> None:
    """``stdin``/``stdinOnce``/``tty`` of a real manifest are kept (the agent starts such a container under its
    holder: ``kubectl attach``, ``run -it``, also when the pod reaches a host through podlab's apply)."""
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"},
           "spec": {"containers": [{"name": "a", "image": "busybox", "stdin": True, "tty": True, "stdinOnce": False},
                                   {"name": "b", "image": "pause"}]}}
    cs = podspec.parse(obj, "f.yaml", NODES, {}).manifest["spec"]["containers"]
    assert {k: cs[0].get(k) for k in podspec.ATTACH_KEYS} == {"stdin": True, "stdinOnce": None, "tty": True}
    assert not any(k in cs[1] for k in podspec.ATTACH_KEYS)
    never = podspec.parse({**obj, "spec": {**obj["spec"], "restartPolicy": "Never"}}, "f.yaml", NODES, {})
    assert never.manifest["spec"]["restartPolicy"] == "Never"
    with pytest.raises(ManifestError, match="spec.restartPolicy"):
        podspec.parse({**obj, "spec": {**obj["spec"], "restartPolicy": "Sometimes"}}, "f.yaml", NODES, {})


def test_same_spec_ignores_generated_metadata() -> None:
    a = podspec.parse({"name": "a", "node": "node-1"}, "x", NODES, {}).manifest
    b = podspec.parse({"name": "a", "node": "node-1"}, "x", NODES, {}).manifest
    c = podspec.parse({"name": "a", "node": "node-2"}, "x", NODES, {}).manifest
    assert a["metadata"]["uid"] != b["metadata"]["uid"] and podspec.same_spec(a, b) and not podspec.same_spec(a, c)


def test_cni_request_from_env() -> None:
    req = CniRequest.from_env({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc", "CNI_NETNS": "/run/netns/x",
                               "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"})
    assert req.env()["CNI_NETNS"] == "/run/netns/x"
    with pytest.raises(CniError) as e:
        CniRequest.from_env({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc", "CNI_IFNAME": "eth0"})
    assert e.value.code == 4 and "CNI_NETNS" in str(e.value)
    r = Result(ips=[{"address": "10.244.1.2/24", "gateway": "10.244.1.1"}])
    assert Result.from_dict(json.loads(json.dumps(r.to_dict()))).pod_ip() == "10.244.1.2"


def test_bridge_conflist_is_flannels_delegate() -> None:
    c = bridge_conflist("cbr0", "cni0", "10.244.1.0/24", 1450, "/d")
    p = c["plugins"][0]
    assert c["name"] == "cbr0" and c["cniVersion"] == "1.0.0"
    assert (p["type"], p["bridge"], p["isGateway"], p["hairpinMode"], p["mtu"]) == ("bridge", "cni0", True, True,
                                                                                    1450)
    assert p["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/d"}


def test_image_resolution() -> None:
    assert resolve("pause", [], []) == ["pause"]
    assert resolve("netexec", [], [])[-3:] == ["emulator.images.netexec", "--http-port=8080", "--udp-port=8081"]
    agn = resolve("registry.k8s.io/e2e-test-images/agnhost:2.47", [], ["netexec", "--http-port=8083"])
    assert agn[-2:] == ["emulator.images.netexec", "--http-port=8083"]
    assert resolve("busybox", ["sleep", "5"], []) == ["sleep", "5"]
    assert resolve("nginx:1.27", [], [], [{"containerPort": 80, "protocol": "TCP"}])[-2:] == ["emulator.images.listen",
                                                                                         "80/TCP"]
    assert resolve("nginx", [], []) == ["pause"]


def test_status_words_and_age() -> None:
    assert pod_status_word({"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}) == "Running"
    assert pod_status_word({"phase": "Pending", "containerStatuses": [
        {"state": {"waiting": {"reason": "ContainerCreating"}}}]}) == "ContainerCreating"
    assert pod_status_word({"phase": "Running", "containerStatuses": [
        {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}) == "CrashLoopBackOff"
    assert age("2026-01-01T00:00:00Z", now=1767225600 + 65) == "65s"
    assert age("2026-01-01T00:00:00Z", now=1767225600 + 3 * 3600 + 5) == "3h"
