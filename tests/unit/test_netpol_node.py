"""The node side's pure parts: the store read incrementally (as inotify names files), the chain listing and its
comparison, the kernel's JSON read back, ``describe netpol``, port specs."""
from __future__ import annotations

import json
import os
import uuid

import pytest

from emulator.netpol import cluster, describe, engine, enforcer, explain, kernel, names, nodestate, upstream
from emulator.netpol.matrix import PortSpec
from emulator.netpol.parse import parse_manifest
from emulator.netpol.reader import ClusterReader
from emulator.state.store import Store
from emulator.state.watch import Watcher


def _pod(store: Store, name: str, ns: str, labels: dict, node: str, ip: str | None, ports=()) -> str:
    uid = str(uuid.uuid4())
    store.put("pods", name, {"metadata": {"name": name, "namespace": ns, "labels": labels, "uid": uid},
                             "spec": {"nodeName": node, "containers": [{"name": "c", "ports": list(ports)}]}})
    if ip:
        store.put_status("pods", name, {"name": name, "uid": uid, "podIP": ip, "phase": "Running"}, ns)
    return uid


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "store")
    s.init()
    return s


def test_reader_follows_named_changes_like_a_full_read(store: Store) -> None:
    _pod(store, "a", "x", {"pod": "a"}, "node-1", "10.244.1.2", [{"containerPort": 80, "name": "http"}])
    _pod(store, "b", "x", {"pod": "b"}, "node-2", None)
    r = ClusterReader(store)
    w = Watcher(r.watch_dirs())
    r.refresh(None)
    assert r.changed_pods is None
    assert {p.ref: p.ip for p in r.pods().values()} == {"x/a": "10.244.1.2", "x/b": None}
    assert r.pods()["x/a"].ports == (("http", 80, "TCP"),)
    cluster.put_policy(store, parse_manifest(upstream.policy("deny", ingress=[])))
    store.put("namespaces", "y", {"metadata": {"name": "y", "labels": {"kubernetes.io/metadata.name": "y"}}})
    cluster.set_pod_labels(store, "x/b", {"pod2": "updated"})
    uid = store.get("pods", "b", "x")["metadata"]["uid"]
    store.put_status("pods", "b", {"name": "b", "uid": uid, "podIP": "10.244.2.2"}, "x")
    store.put_status("pods", "a", {"name": "a", "uid": "an-older-pod", "podIP": "10.244.1.9"}, "x")
    cluster.set_namespace_labels(store, "y", {"team": "blue"})
    changes = w.wait_changes(0.1)
    assert changes
    assert r.refresh(changes)
    assert r.changed_pods == {"x/a", "x/b"}
    pods = r.pods()
    assert pods["x/b"].ip == "10.244.2.2" and dict(pods["x/b"].labels)["pod2"] == "updated"
    assert pods["x/a"].ip is None  # a status whose uid is another pod's is not this pod's
    assert list(r.policies()) == [("x", "deny")]
    assert dict(r.namespaces()["y"]) == {"kubernetes.io/metadata.name": "y", "team": "blue"}
    fresh = ClusterReader(store)
    assert fresh.pods() == pods and fresh.policies() == r.policies() and fresh.namespaces() == r.namespaces()
    store.delete("pods", "a", "x")
    r.refresh(w.wait_changes(0.1))
    assert "x/a" not in r.pods() and r.changed_pods == {"x/a"}


def test_reader_handles_namespace_directories(store: Store) -> None:
    """The layout with one directory per Kubernetes namespace (pods/x/a.json) reads the same."""
    d = store.root / "pods" / "x"
    d.mkdir(parents=True)
    (d / "a.json").write_text(json.dumps({"metadata": {"name": "a", "namespace": "x", "uid": "u1"},
                                          "spec": {"nodeName": "n1"}}))
    r = ClusterReader(store)
    w = Watcher(r.watch_dirs())
    assert list(r.pods()) == ["x/a"]
    assert d in r.watch_dirs()
    w.dirs = r.watch_dirs()
    w.rearm()
    os.makedirs(store.root / "pods" / "y")
    (store.root / "pods" / "y" / "a.json").write_text(json.dumps({"metadata": {"name": "a", "namespace": "y",
                                                                               "uid": "u2"}}))
    r.refresh(w.wait_changes(0.1))
    assert sorted(r.pods()) == ["x/a", "y/a"]


def test_policy_store_words_and_keys(store: Store) -> None:
    p = parse_manifest(upstream.policy("same-name", ingress=[]))
    q = parse_manifest(upstream.policy("same-name", ingress=[], ns="y"))
    assert cluster.put_policy(store, p) == "created" and cluster.put_policy(store, q) == "created"
    assert cluster.put_policy(store, p) == "unchanged"
    uid = store.get(cluster.POLICIES, "same-name", "x")["metadata"]["uid"]
    assert cluster.put_policy(store, parse_manifest(upstream.policy("same-name", ingress=[{}]))) == "configured"
    assert store.get(cluster.POLICIES, "same-name", "x")["metadata"]["uid"] == uid
    assert (store.root / "networkpolicies" / "y" / "same-name.json").exists()  # one directory per namespace
    assert [x.namespace for x in cluster.find_policies(store, "same-name")] == ["x", "y"]
    assert cluster.delete_all_policies(store, "y") == 1 and not cluster.delete_policy(store, "y", "same-name")


LISTING = """table inet kube-network-policies {
	comment "NetworkPolicy of node node-1 (podlab, after kube-network-policies)"
	set podips-v4 {
		type ipv4_addr
		comment "this node's pods selected by a NetworkPolicy"
	}

	chain postrouting {
		type filter hook postrouting priority srcnat - 5; policy accept;
		ct state established,related accept
		fib saddr type local accept comment "from this node (kube-network-policies: meta skuid 0 accept)"
		ip saddr @podips-v4 goto egress
		ip daddr @podips-v4 goto ingress
	}

	chain ingress {
		ip daddr != @ingress-isolated-v4 accept
		counter packets 3 bytes 180 drop comment "no NetworkPolicy allows this ingress"
	}
}
"""


class FakeNft:
    def run(self, text: str) -> str:
        assert text == f"list table {names.T}\n"
        return LISTING


def test_chain_listing_and_differences() -> None:
    have = enforcer.list_rules(FakeNft())  # type: ignore[arg-type]
    assert have == {"postrouting": ["", "from this node (kube-network-policies: meta skuid 0 accept)", "", ""],
                    "ingress": ["", "no NetworkPolicy allows this ingress"]}
    want = {"postrouting": have["postrouting"], "ingress": ["", "x/p", "no NetworkPolicy allows this ingress"],
            "egress": [""]}
    d = enforcer.differences(have, want)
    assert "chain ingress: rule 'x/p' is missing" in d and "chain egress is missing" in d
    assert enforcer.differences(have, {"postrouting": have["postrouting"], "ingress": ["", "", "no NetworkPolicy "
                                                                                      "allows this ingress"]}) == [
        "chain ingress: holds 2 rules in another order or number than the 3 applied"]
    assert enforcer.differences(have, {"postrouting": have["postrouting"]}) == [
        "chain ingress was not put there by the enforcer"]


def test_kernel_json_read_back_and_compared() -> None:
    c, ips = upstream.model_cluster()
    upstream.apply_step(c, upstream.case(17).steps[0], ips)  # a named port: a concatenated set
    want = nodestate.build(c, "node-1")
    items = [{"metainfo": {}}, {"table": {"family": "inet", "name": names.TABLE}}]
    for s, els in want.elements.items():
        elem = [({"concat": [e.split(" . ")[0], e.split(" . ")[1], int(e.split(" . ")[2])]} if " . " in e else e)
                for e in sorted(els)]
        items.append({"set": {"name": s, **({"elem": elem} if elem else {})}})
    for chain, comments in enforcer.expected_rules(want).items():
        items.append({"chain": {"name": chain}})
        items += [{"rule": {"chain": chain, **({"comment": cm} if cm else {}), "expr": [{"counter": {"packets": 7}}]}}
                  for cm in comments]
    kt = kernel.parse("node-1", json.dumps({"nftables": items}))
    assert kernel.differences(kt, want) == []
    ports = names.ports_set("Ingress", "x", "allow-all", 0)
    assert kt.sets[ports] == {f"{ips['x/a']} . tcp . 81"}
    kt.sets[ports] = set()
    kt.rules[names.INGRESS_CHAIN].pop(1)
    d = kernel.differences(kt, want)
    assert f"node-1: set {ports} lacks {ips['x/a']} . tcp . 81" in d
    assert any("chain ingress: rule 'x/allow-all' is missing" in x for x in d)
    assert kernel.differences(kernel.KernelTable("node-2", present=False), want) == [
        f"node-2: table {names.T} is missing"]


def test_describe_reads_like_kubectl_then_says_what_it_selects() -> None:
    c, ips = upstream.model_cluster()
    upstream.apply_step(c, upstream.case(18).steps[0], ips)
    p = c.policies[0]
    text = "\n".join(describe.kubectl_lines(p) + describe.now_lines(p, c))
    assert "  PodSelector:     pod=a" in text and "  Allowing ingress traffic:" in text
    assert "    To Port: serve-80-tcp/TCP" in text and "      NamespaceSelector: kubernetes.io/metadata.name=y" in text
    assert "  Not affecting egress traffic" in text and "  Policy Types: Ingress" in text
    assert f"  x/a ({ips['x/a']} on node-1)" in text and "ingress[0] admits: y/a, y/b, y/c" in text
    assert "Enforced on:  node-1" in text
    deny = parse_manifest(upstream.policy("d", ingress=[], egress=[]))
    text = "\n".join(describe.kubectl_lines(deny))
    assert "<none> (Selected pods are isolated for ingress connectivity)" in text
    assert "(Allowing the specific traffic to all pods in this namespace)" in text


def test_port_specs() -> None:
    assert PortSpec.parse("80") == PortSpec(80, "TCP") and str(PortSpec.parse("81/udp")) == "81/UDP"
    for bad in ("0/TCP", "http", "80/ICMP"):
        with pytest.raises(ValueError):
            PortSpec.parse(bad)


def test_explain_names_policy_rule_chain_and_counter() -> None:
    c, ips = upstream.model_cluster()
    upstream.apply_step(c, upstream.case(28).steps[0], ips)
    kt = kernel.KernelTable("node-1")
    kt.packets[("egress", "no NetworkPolicy allows this egress")] = 4
    chain = names.policy_chain("Egress", "x", "allow-to-ns-y-pod-a")
    kt.packets[(chain, "x/allow-to-ns-y-pod-a egress[0]")] = 2
    text = "\n".join(explain.lines(engine.evaluate(c, c.pod("x/a"), c.pod("y/b"), 80), c.pod("x/a"), c.pod("y/b"), 80,
                                   "TCP", {"node-1": kt}))
    assert text.startswith("x/a → y/b 80/TCP: dropped")
    assert 'dropped by node-1 chain egress, rule "no NetworkPolicy allows this egress" [4 packets so far]' in text
    assert "allowed by y/allow-from-xa-on-yb ingress[0]: node-2 chain " in text
    text = "\n".join(explain.lines(engine.evaluate(c, c.pod("x/a"), c.pod("y/a"), 80), c.pod("x/a"), c.pod("y/a"), 80,
                                   "TCP", {"node-1": kt}))
    assert f'allowed by x/allow-to-ns-y-pod-a egress[0]: node-1 chain {chain}, rule "x/allow-to-ns-y-pod-a egress[0]"' \
        f" [2 packets so far]" in text
