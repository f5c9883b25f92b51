"""NetworkPolicy across hosts, the pure parts: the other hosts' pods as each host gets them, and a host's enforcer
reading them (``remotepods/``) as peers it never selects."""
from __future__ import annotations

import pytest

from emulator.hosts import netpols, svcsync
from emulator.netpol import cluster, names, nodestate
from emulator.netpol.parse import parse_manifest
from emulator.netpol.reader import ClusterReader
from emulator.state.store import Store


def pod(name: str, node: str, labels: dict, uid: str, ports: list | None = None, host_network: bool = False) -> dict:
    spec: dict = {"nodeName": node, "containers": [{"name": "c", "image": "netexec", "ports": ports or []}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"metadata": {"name": name, "namespace": "default", "labels": labels, "uid": uid,
                         "annotations": {"a": "b"}, "resourceVersion": "9"}, "spec": spec}


def status(name: str, ip: str | None, uid: str) -> dict:
    return {"name": name, "namespace": "default", "podIP": ip, "uid": uid, "phase": "Running"}


PER_HOST = {
    "h1": {"pods": [pod("back", "node-1", {"app": "back"}, "u1")], "statuses": [status("back", "10.244.1.2", "u1")]},
    "h2": {"pods": [pod("client", "node-3", {"app": "client"}, "u2", [{"containerPort": 8080, "name": "http"}]),
                    pod("pending", "node-3", {"app": "client"}, "u3"),
                    pod("hostnet", "node-4", {"app": "client"}, "u4", host_network=True)],
           "statuses": [status("client", "10.244.3.2", "u2"), status("pending", None, "u3"),
                        status("hostnet", "192.168.56.14", "u4")]},
    "h3": {"pods": [pod("other", "node-5", {"app": "other"}, "u5")],
           "statuses": [status("other", "10.244.5.2", "old-uid")]},  # the status of an earlier pod of that name
}


def test_each_host_gets_the_other_hosts_pods_with_an_ip_trimmed() -> None:
    r = netpols.remote(PER_HOST)
    assert [p["metadata"]["name"] for p in r["h1"]] == ["client"]
    assert [p["metadata"]["name"] for p in r["h2"]] == ["back"]
    assert [p["metadata"]["name"] for p in r["h3"]] == ["back", "client"]
    [client] = r["h1"]
    assert client == {"metadata": {"name": "client", "namespace": "default", "labels": {"app": "client"},
                                   "uid": "u2"},
                      "spec": {"nodeName": "node-3", "containers": [
                          {"name": "c", "ports": [{"containerPort": 8080, "name": "http"}]}]},
                      "status": {"podIP": "10.244.3.2"}}
    assert r["h1"][0]["spec"]["containers"] and r["h2"][0]["spec"]["containers"] == []  # only named ports kept


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "store")
    s.init()
    return s


ALLOW_CLIENT = parse_manifest({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                               "metadata": {"name": "allow-client", "namespace": "default"},
                               "spec": {"podSelector": {"matchLabels": {"app": "back"}}, "policyTypes": ["Ingress"],
                                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}})


def test_a_host_enforcer_admits_remote_peers_and_selects_only_its_own_pods(store: Store) -> None:
    h1 = PER_HOST["h1"]
    store.put("pods", "back", dict(h1["pods"][0]))
    store.put_status("pods", "back", h1["statuses"][0])
    cluster.put_policy(store, ALLOW_CLIENT)
    before = ClusterReader(store).versions()
    for o in netpols.remote(PER_HOST)["h1"]:
        store.put(cluster.REMOTE, o["metadata"]["name"], o)
    assert ClusterReader(store).versions() != before  # the remote pods count in what the enforcers report
    r = ClusterReader(store)
    assert sorted(r.pods()) == ["default/back", "default/client"]
    st = nodestate.NodeBuilder("node-1").update(r.pods(), r.namespaces(), r.policies())
    assert st.elements[names.peers_set("Ingress", "default", "allow-client", 0)] == {"10.244.3.2"}
    assert st.elements[names.selected_set("default", "allow-client")] == {"10.244.1.2"}
    # the remote client's host: it holds the policy too, but selects nothing of its own
    other = nodestate.NodeBuilder("node-3").update(r.pods(), r.namespaces(), r.policies())
    assert other.elements[names.PODIPS] == frozenset()


def test_a_local_pod_wins_over_a_remote_one_of_the_same_name(store: Store) -> None:
    store.put(cluster.REMOTE, "back", {"metadata": {"name": "back", "namespace": "default", "uid": "old"},
                                       "spec": {"nodeName": "node-5"}, "status": {"podIP": "10.244.5.9"}})
    store.put("pods", "back", dict(PER_HOST["h1"]["pods"][0]))
    store.put_status("pods", "back", PER_HOST["h1"]["statuses"][0])
    assert ClusterReader(store).pods()["default/back"].ip == "10.244.1.2"


def test_a_second_push_of_the_same_pods_writes_nothing(store: Store) -> None:
    want = netpols.remote(PER_HOST)["h3"]
    for o in want:
        store.put(cluster.REMOTE, o["metadata"]["name"], dict(o))
    assert svcsync.diff(store.list(cluster.REMOTE), want) == ([], [])


def test_hosts_rows_join_into_the_labs_table() -> None:
    from emulator.cli import netpol_cmds
    from emulator.netpol.truthtable import TruthTable
    tos = ["default/a", "default/b"]

    def part(row: str, values: dict, differ: list) -> list[dict]:
        want = TruthTable([row], tos, {(row, t): v for t, v in values.items()})
        got = TruthTable([row], tos, {(row, t): v for t, v in values.items()})
        for f, t in differ:
            got.set(f, t, not want.get(f, t))
        item = {"port": "80/TCP", "expected": want, "observed": got, "differ": differ,
                "why": {f"{f} -> {t}": "because" for f, t in differ}, "seen": {f"{f} -> {t}": "x" for f, t in differ}}
        return netpol_cmds.from_json(netpol_cmds.as_json([item]))  # as a host prints it, read back
    [m] = netpol_cmds.merge_rows([part("default/a", {"default/a": None, "default/b": True}, []),
                                  part("default/b", {"default/a": False, "default/b": None},
                                       [("default/b", "default/a")])])
    assert m["expected"].froms == tos and m["expected"].get("default/b", "default/a") is False
    assert m["observed"].get("default/b", "default/a") is True and m["observed"].get("default/a", "default/b")
    assert m["differ"] == [("default/b", "default/a")] and m["why"] == {"default/b -> default/a": "because"}
