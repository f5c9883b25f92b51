"""The API server's pure parts: strategic merge / merge / JSON patch, selectors, Table cells, the compacted schema,
discovery, kubeconfig merging, the certificates, and the watch cache following a store's journal (no root, no
kernel objects)."""
from __future__ import annotations

import os
import ssl
import time

import pytest
import yaml

from emulator.apiserver import discovery, kubeconfig, patch, selectors, tables, views
from emulator.apiserver.schema import Schema
from emulator.apiserver.status import ApiError
from emulator.proc import lifecycle

SCHEMA = Schema.load()
POD = SCHEMA.root("", "v1", "Pod")


def test_strategic_merge_patch_as_kubectl_apply_sends_it() -> None:
    live = {"metadata": {"labels": {"tier": "web", "keep": "1"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx", "env": [{"name": "A", "value": "1"}],
                                     "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                                    {"name": "sidecar", "image": "busybox"}]}}
    body = {"metadata": {"labels": {"tier": None}},
            "spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                     "containers": [{"env": None, "image": "nginx:1.27", "name": "nginx",
                                     "ports": [{"containerPort": 81}]}, {"$patch": "delete", "name": "sidecar"}]}}
    out = patch.strategic(live, body, SCHEMA, POD)
    assert out["metadata"]["labels"] == {"keep": "1"}
    (c,) = out["spec"]["containers"]
    assert c["image"] == "nginx:1.27" and "env" not in c
    assert [p["containerPort"] for p in c["ports"]] == [80, 81]  # ports merge by containerPort
    assert live["spec"]["containers"][1]["name"] == "sidecar"  # the input is not modified
    order = patch.strategic(live, {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                                            "containers": [{"name": "sidecar", "image": "b2"}]}}, SCHEMA, POD)
    assert [c["name"] for c in order["spec"]["containers"]] == ["sidecar", "nginx"]
    tol = patch.strategic({"spec": {"tolerations": [{"key": "a"}]}}, {"spec": {"tolerations": [{"key": "b"}]}},
                          SCHEMA, POD)
    assert tol["spec"]["tolerations"] == [{"key": "b"}]  # no merge strategy: replaced
    fin = patch.strategic({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": ["b", "a"]}}, SCHEMA, POD)
    assert fin["metadata"]["finalizers"] == ["a", "b"]  # a merge list of scalars: a union
    rep = patch.strategic(live, {"metadata": {"labels": {"$patch": "replace", "only": "x"}}}, SCHEMA, POD)
    assert rep["metadata"]["labels"] == {"only": "x"}
    with pytest.raises(patch.PatchError, match="merge key"):
        patch.strategic(live, {"spec": {"containers": [{"image": "x"}]}}, SCHEMA, POD)


def test_merge_and_json_patch() -> None:
    doc = {"spec": {"replicas": 1, "selector": {"a": "b"}}, "list": [1, 2]}
    assert patch.merge_patch(doc, {"spec": {"replicas": 5, "selector": None}}) == {"spec": {"replicas": 5},
                                                                                  "list": [1, 2]}
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 3}, {"op": "add", "path": "/list/-", "value": 3},
           {"op": "remove", "path": "/spec/selector"}, {"op": "test", "path": "/list/0", "value": 1},
           {"op": "copy", "from": "/list/0", "path": "/first"}]
    assert patch.json_patch(doc, ops) == {"spec": {"replicas": 3}, "list": [1, 2, 3], "first": 1}
    with pytest.raises(patch.PatchError, match="failed"):
        patch.json_patch(doc, [{"op": "test", "path": "/list/0", "value": 9}])
    with pytest.raises(patch.PatchError):
        patch.json_patch(doc, [{"op": "remove", "path": "/nope"}])


def test_label_and_field_selectors() -> None:
    pod = {"metadata": {"name": "web-1", "namespace": "x", "labels": {"app": "web", "tier": "a"}},
           "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}}
    for text, want in [("app=web", True), ("app==web,tier!=b", True), ("tier in (a, b)", True),
                       ("tier notin (a)", False), ("app", True), ("!app", False), ("!gone,app=web", True), ("", True)]:
        assert selectors.labels(text)(pod) is want, text
    f = selectors.fields("spec.nodeName=node-1,status.phase!=Succeeded,metadata.namespace=x", "pods")
    assert f(pod) and not selectors.fields("metadata.name=other", "pods")(pod)
    with pytest.raises(ApiError) as e:
        selectors.fields("spec.bogus=1", "pods")
    assert e.value.code == 400 and "field label not supported: spec.bogus" in e.value.message
    with pytest.raises(ApiError):
        selectors.labels("app in web")


def test_tables_use_the_real_columns_and_cells() -> None:
    assert [c["name"] for c in tables.columns("pods")] == ["Name", "Ready", "Status", "Restarts", "Age", "IP",
                                                           "Node", "Nominated Node", "Readiness Gates"]
    assert [c["priority"] for c in tables.columns("pods")][4:] == [0, 1, 1, 1, 1]
    pod = views.pod({"metadata": {"name": "w", "uid": "u", "creationTimestamp": "2026-01-01T00:00:00Z"},
                     "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "pause"}]}},
                    {"uid": "u", "phase": "Running", "podIP": "10.244.1.2", "hostIP": "192.168.56.11",
                     "containerStatuses": [{"name": "c", "image": "pause", "ready": True, "restartCount": 0,
                                            "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}}],
                     "sandbox": {"id": "s"}})
    cells = tables.cells("pods", pod)
    assert cells[:4] == ["w", "1/1", "Running", 0] and cells[5:7] == ["10.244.1.2", "node-1"]
    gone = views.pod({"metadata": {"name": "w", "uid": "u"}, "spec": {"containers": [{"name": "c"}]}}, None,
                     deleting="2026-01-01T00:00:00Z")
    assert tables.pod_status(gone) == "Terminating"
    assert [c["name"] for c in tables.columns("services")][:6] == ["Name", "Type", "Cluster-IP", "External-IP",
                                                                  "Port(s)", "Age"]
    svc = {"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.1.1",
                                                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}
    assert tables.cells("services", svc)[:5] == ["web", "NodePort", "10.96.1.1", "<none>", "80:30080/TCP"]
    assert [tables.human_duration(s) for s in (5, 125, 700, 3 * 3600 + 60, 30 * 3600, 3 * 86400 + 3600)] == \
        ["5s", "2m5s", "11m", "3h1m", "30h", "3d1h"]


def test_schema_cache_round_trip(tmp_path) -> None:
    cached = Schema.load(str(tmp_path))  # made by a child process, then read back
    assert cached.defs == SCHEMA.defs and cached.version == SCHEMA.version
    assert list(tmp_path.glob("apiserver-schema-*.json"))


def test_schema_knows_fields_and_merge_keys() -> None:
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"any": "key"}},
           "spec": {"containers": [{"name": "c", "imagee": "x"}], "hostNetwork": True}, "status": {}}
    assert SCHEMA.unknown_fields(bad, POD) == ["spec.containers[0].imagee"]
    assert "imagee" not in SCHEMA.drop_unknown(bad, POD)["spec"]["containers"][0]
    svc = SCHEMA.root("", "v1", "Service")
    assert SCHEMA.list_info(SCHEMA.child(SCHEMA.child(svc, "spec"), "ports")) == ("port", "merge")


def test_discovery_documents() -> None:
    agg = discovery.aggregated(core=True)
    core = {r["resource"]: r for r in agg["items"][0]["versions"][0]["resources"]}
    assert core["pods"]["shortNames"] == ["po"] and core["pods"]["categories"] == ["all"]
    assert core["namespaces"]["scope"] == "Cluster"
    subs = {x["subresource"]: x for x in core["pods"]["subresources"]}  # the streaming ones are served (issue 17)
    assert subs["exec"]["verbs"] == ["create", "get"] and subs["exec"]["responseKind"]["kind"] == "PodExecOptions"
    assert set(subs) == {"attach", "exec", "log", "portforward", "status"}
    groups = {g["metadata"]["name"] for g in discovery.aggregated(core=False)["items"]}
    assert groups == {"apps", "discovery.k8s.io", "networking.k8s.io"}
    assert discovery.version()["minor"] == "37"
    doc = discovery.openapi_group("apps/v1")
    op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert op["parameters"][0]["name"] == "fieldValidation"
    assert "/openapi/v3/api/v1?hash=" in discovery.openapi_root()["paths"]["api/v1"]["serverRelativeURL"]


def test_kubeconfig_merge_and_remove_keep_other_entries(tmp_path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "kind-x",
                                    "clusters": [{"name": "kind-x", "cluster": {"server": "https://1.2.3.4"}}],
                                    "users": [], "contexts": [{"name": "kind-x", "context": {"cluster": "kind-x"}}]}))
    kubeconfig.merge(path, "demo", "https://127.0.0.1:16443", b"PEM", "tok")
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "podlab-demo" and os.stat(path).st_mode & 0o777 == 0o600
    assert [c["name"] for c in doc["clusters"]] == ["kind-x", "podlab-demo"]
    assert doc["users"][0]["user"]["token"] == "tok" and not (tmp_path / "config.lock").exists()
    kubeconfig.merge(path, "demo", "https://127.0.0.1:16444", b"PEM", "tok2")  # again: replaced, not doubled
    assert len(yaml.safe_load(path.read_text())["clusters"]) == 2
    assert kubeconfig.remove(path, "demo") and not kubeconfig.remove(path, "demo")
    doc = yaml.safe_load(path.read_text())
    assert [c["name"] for c in doc["clusters"]] == ["kind-x"] and doc["users"] == [] and doc["current-context"] == ""
    rendered = yaml.safe_load(kubeconfig.render("demo", "https://127.0.0.1:1", b"PEM", "t"))
    assert rendered["current-context"] == "podlab-demo" and rendered["contexts"][0]["context"]["user"] == "podlab-demo"


def test_kubeconfig_path_follows_kubectl_rules(tmp_path, monkeypatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")
    assert kubeconfig.default_path() == b  # none exists: the last one
    a.write_text("")
    assert kubeconfig.default_path() == a  # the first that exists


def test_certificates_name_127_0_0_1_and_keys_are_private(tmp_path) -> None:
    from emulator.apiserver import certs
    from cryptography import x509
    m = certs.make(tmp_path / "api", "demo")
    cert = x509.load_pem_x509_certificate(m.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    for f in (m.key, m.token_file):
        assert os.stat(f).st_mode & 0o777 == 0o600
    assert len(m.token) >= 40 and not (tmp_path / "api" / "ca.key").exists()
    ctx = ssl.create_default_context(cafile=str(m.ca))
    ctx.load_verify_locations(str(m.ca))  # the CA verifies the server certificate (loaded without error)
    assert cert.issuer == x509.load_pem_x509_certificate(m.ca.read_bytes()).subject


def test_cache_follows_the_journal_and_serves_watches(tmp_path) -> None:
    import threading
    from emulator.apiserver.cache import Cache
    from emulator.state.store import Store
    s = Store(tmp_path)
    s.init()
    s.put("pods", "a", {"metadata": {"name": "a"}, "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}})
    cache = Cache(s)
    cache.load()
    start = cache.rv
    t = threading.Thread(target=cache.follow, daemon=True)
    t.start()
    try:
        assert [e.obj["metadata"]["name"] for e in cache.entries("pods")] == ["a"]
        uid = s.get("pods", "a")["metadata"]["uid"]
        s.put_status("pods", "a", {"name": "a", "uid": uid, "phase": "Running", "podIP": "10.0.0.2"})
        s.delete("pods", "a")  # its agent still reports it: Terminating
        t0 = time.monotonic()
        cache.wait_for(start + 2)
        assert time.monotonic() - t0 < 0.5
        events, ok = cache.events_after(start, 1)
        assert ok and [(k, e.obj["status"]["phase"], bool(e.obj["metadata"].get("deletionTimestamp")))
                       for _, k, _, e in events] == [("MODIFIED", "Running", False), ("MODIFIED", "Running", True)]
        s.delete("pods", "a", status=True)
        cache.wait_for(start + 3)
        events, _ = cache.events_after(start + 2, 1)
        assert [k for _, k, _, _ in events] == ["DELETED"] and cache.entries("pods") == []
        assert cache.events_after(start - 5, 0)[1] is False  # older than the history: 410 Gone
    finally:
        cache.stop()


def test_cache_loads_while_the_store_is_written(tmp_path, monkeypatch) -> None:
    """The start-up snapshot is read without the store's lock (the agents go on writing): writes made after the
    journal's end was noted and before or while the files are read are replayed, so the cache ends as a load of
    the quiet store does; an event both in its file and in the replayed journal is kept once."""
    from emulator.apiserver.cache import Cache
    from emulator.state import events
    from emulator.state.store import Store
    s = Store(tmp_path)
    s.init()
    pod = lambda n: {"metadata": {"name": n}, "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}}  # noqa
    for n in ("a", "b", "gone"):
        s.put("pods", n, pod(n))
    real_scan, writes = Store.scan, []

    def scan_while_writing(self, kind, status=False):
        if not writes:  # the first directory read: the agents write meanwhile
            writes.append(1)
            uid = s.get("pods", "a")["metadata"]["uid"]
            s.put_status("pods", "a", {"name": "a", "uid": uid, "phase": "Running", "podIP": "10.0.0.2"})
            s.put("pods", "c", pod("c"))
            s.delete("pods", "gone")
            events.emit(s.root, "pod", "a", "Started", "Started container c", "kubelet, n1")
        yield from real_scan(self, kind, status)
    monkeypatch.setattr(Store, "scan", scan_while_writing)
    cache = Cache(s)
    cache.load()
    monkeypatch.setattr(Store, "scan", real_scan)
    quiet = Cache(s)
    quiet.load()
    seen = lambda c: sorted((e.obj["metadata"]["name"], e.obj["status"].get("phase"), e.obj["metadata"][  # noqa
        "resourceVersion"]) for e in c.entries("pods"))
    assert seen(cache) == seen(quiet) and cache.rv == quiet.rv == s.resource_version()
    assert [n for n, _, _ in seen(cache)] == ["a", "b", "c"] and seen(cache)[0][1] == "Running"
    assert len(cache.entries("events")) == len(quiet.entries("events")) == 1


def _pb_field(num: int, value) -> bytes:
    """Minimal protobuf encoder for the test: strings/bytes (wire 2) and ints (wire 0)."""
    def varint(n: int) -> bytes:
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(data)) + data


def test_protobuf_bodies_of_kubectl_generators() -> None:
    from emulator.apiserver import protobuf
    label = _pb_field(1, "app") + _pb_field(2, "web")
    meta = _pb_field(1, "web") + _pb_field(4, "") + _pb_field(11, label)
    port = _pb_field(3, 8080)
    container = _pb_field(1, "c") + _pb_field(2, "netexec") + _pb_field(6, port) + _pb_field(16, 0)
    template = _pb_field(1, _pb_field(11, label)) + _pb_field(2, _pb_field(2, container))
    spec = _pb_field(1, 0) + _pb_field(2, _pb_field(1, label)) + _pb_field(3, template)
    obj = _pb_field(1, meta) + _pb_field(2, spec)
    body = protobuf.MAGIC + _pb_field(1, _pb_field(1, "apps/v1") + _pb_field(2, "Deployment")) + _pb_field(2, obj)
    out = protobuf.decode(body)
    assert out == {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                                {"name": "c", "image": "netexec", "ports": [{"containerPort": 8080}]}]}}}}
    with pytest.raises(protobuf.ProtobufError, match="field 11 of PodSpec"):  # hostNetwork: refused, not dropped
        protobuf.decode(protobuf.MAGIC + _pb_field(1, _pb_field(1, "v1") + _pb_field(2, "Pod")) + _pb_field(
            2, _pb_field(2, _pb_field(11, 1))))
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(b"not protobuf")


def _dead_pid() -> int:
    """A PID that names no running process (a child that has exited and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_lock_left_by_a_killed_writer_is_broken_a_live_one_is_not(tmp_path) -> None:
    path = tmp_path / "config"
    lock = tmp_path / "config.lock"
    lock.write_text(f"{_dead_pid()} 12345\n")  # a podlab killed while holding it
    kubeconfig.merge(path, "demo", "https://127.0.0.1:16443", b"PEM", "tok")
    assert not lock.exists() and "podlab-demo" in path.read_text()
    lock.write_text("")  # kubectl's lock (empty), long ago
    old = time.time() - kubeconfig.STALE_EMPTY_LOCK - 5
    os.utime(lock, (old, old))
    assert kubeconfig.remove(path, "demo") and not lock.exists()
    lock.write_text(f"{os.getpid()} {lifecycle.start_time(os.getpid())}\n")
    with pytest.raises(TimeoutError, match="config.lock is held"):
        with kubeconfig._locked(path, timeout=0.2):
            pass
    assert lock.exists()  # a live holder's lock is left alone
    lock.unlink()
    lock.write_text("")  # a fresh empty lock: kubectl is writing now
    with pytest.raises(TimeoutError):
        with kubeconfig._locked(path, timeout=0.2):
            pass


def test_a_node_without_cni_is_not_ready_and_tainted_and_an_unbound_pod_is_unscheduled() -> None:
    """The kubelet's KubeletNotReady (network plugin not ready) with the lifecycle controller's not-ready taint;
    an unbound pod shows the scheduler's PodScheduled=False condition, no nodeName, no container statuses, and
    ``kubectl get pods`` says Pending."""
    manifest = {"metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.244.1.0/24"}, "status": {}}
    n = views.node(manifest, "NetworkNotReady", 5)
    ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady")
    assert "NetworkPluginNotReady" in ready["message"] and "cni plugin not initialized" in ready["message"]
    assert [(t["key"], t["effect"]) for t in n["spec"]["taints"]] == [("node.kubernetes.io/not-ready", "NoSchedule")]
    assert tables.PRINTERS["nodes"][1](n)[1] == "NotReady"
    ok = views.node(manifest, "Ready", 5)
    assert "taints" not in ok["spec"] and ok["status"]["conditions"][-1]["status"] == "True"
    assert views.node(manifest, "Unknown", 5)["status"]["conditions"][-1]["status"] == "Unknown"
    pod = {"metadata": {"name": "coredns-x", "namespace": "kube-system", "uid": "u"},
           "spec": {"nodeName": "", "containers": [{"name": "coredns", "image": "i"}]}}
    st = {"name": "coredns-x", "namespace": "kube-system", "uid": "u", "phase": "Pending", "reason": "Unschedulable",
          "message": "0/1 nodes are available", "conditions": [{"type": "PodScheduled", "status": "False",
                                                                 "reason": "Unschedulable",
                                                                 "message": "0/1 nodes are available"}]}
    v = views.pod(pod, st)
    assert "nodeName" not in v["spec"] and "containerStatuses" not in v["status"]
    assert [(c["type"], c["status"], c["reason"]) for c in v["status"]["conditions"]] == [
        ("PodScheduled", "False", "Unschedulable")]
    assert tables.pod_status(v) == "Pending"
