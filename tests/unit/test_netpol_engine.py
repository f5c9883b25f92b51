"""The engine on the corner cases cyclonus found bugs in across CNIs (named ports, endPort, empty port entries,
ipBlocks over pod IPs, egress vs ingress conflicts, empty selectors), and its explanations."""
from __future__ import annotations

from dataclasses import replace

from emulator.netpol import engine, upstream
from emulator.netpol.engine import Host
from emulator.netpol.parse import parse_manifest
from emulator.netpol.upstream import policy, sel


def cluster(*manifests: dict):
    c, ips = upstream.model_cluster()
    c.policies = [parse_manifest(upstream.resolve(m, ips)) for m in manifests]
    return c, ips


def ok(c, src: str, dst: str, port: int = 80, proto: str = "TCP") -> bool:
    s = c.pod(src) if "/" in src else Host(src)
    return engine.evaluate(c, s, c.pod(dst) if "/" in dst else Host(dst), port, proto).allowed


def test_port_entry_without_protocol_is_tcp_and_empty_entry_is_all_tcp() -> None:
    c, _ = cluster(policy("p", ingress=[{"ports": [{}]}]))  # calico#4373, cilium#14678
    assert ok(c, "y/a", "x/b", 81) and ok(c, "y/a", "x/b", 5000)
    assert not ok(c, "y/a", "x/b", 80, "UDP")


def test_specific_port_does_not_overwrite_all_ports_of_protocol() -> None:
    c, _ = cluster(policy("p", ingress=[{"ports": [{"protocol": "TCP"}, {"port": 80, "protocol": "TCP"}]}]))
    assert ok(c, "y/a", "x/b", 81)


def test_end_port_is_inclusive() -> None:
    c, _ = cluster(policy("p", ingress=[{"ports": [{"port": 53, "endPort": 80}]}]))
    assert ok(c, "y/a", "x/b", 53) and ok(c, "y/a", "x/b", 80)
    assert not ok(c, "y/a", "x/b", 81) and not ok(c, "y/a", "x/b", 52)


def test_named_port_needs_matching_protocol_and_a_serving_pod() -> None:
    c, _ = cluster(policy("p", ingress=[{"ports": [{"protocol": "TCP", "port": "serve-81-udp"}]}]))
    assert not ok(c, "y/a", "x/b", 81) and not ok(c, "y/a", "x/b", 81, "UDP")
    c, _ = cluster(policy("p", ingress=[{"ports": [{"protocol": "UDP", "port": "serve-81-udp"}]}]))
    assert ok(c, "y/a", "x/b", 81, "UDP") and not ok(c, "y/a", "x/b", 81)
    c, _ = cluster(policy("p", ingress=[{"ports": [{"protocol": "UDP", "port": "serve-7981-udp"}]}]))
    assert not ok(c, "y/a", "x/b", 81, "UDP")
    # egress to a named port: resolved on the destination; a non-pod destination never matches
    c, _ = cluster(policy("p", egress=[{"ports": [{"port": "serve-80-tcp"}]}]))
    assert ok(c, "x/a", "y/b", 80) and not ok(c, "x/a", "192.168.56.2", 80)


def test_ipblock_matches_pod_ips_and_except() -> None:
    c, ips = cluster(policy("p", ingress=[{"from": [{"ipBlock": {"cidr": "10.244.0.0/16",
                                                                   "except": ["<y/a>/32"]}}]}]))
    assert ok(c, "y/b", "x/a") and not ok(c, "y/a", "x/a")
    assert not ok(c, "192.168.56.100", "x/a") and ok(c, "10.244.9.9", "x/a")


def test_allow_all_by_ip_and_deny_by_impossible_label() -> None:
    c, _ = cluster(policy("p", ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]))
    assert ok(c, "y/a", "x/a") and ok(c, "192.168.56.100", "x/a")
    c, _ = cluster(policy("p", ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/31"}}]}]))
    assert not ok(c, "y/a", "x/a")
    c, _ = cluster(policy("p", ingress=[{"from": [{"namespaceSelector": sel(ns="never")}]}]))
    assert not ok(c, "x/b", "x/a")


def test_egress_deny_beats_ingress_allow_and_the_reverse() -> None:
    c, _ = cluster(policy("deny-egress", sel(pod="b"), egress=[]),
                   policy("allow-ingress", sel(pod="c"), ns="y", ingress=[{}]))
    assert not ok(c, "x/b", "y/c")
    c, _ = cluster(policy("allow-egress", sel(pod="b"), egress=[{}]),
                   policy("deny-ingress", sel(pod="c"), ns="y", ingress=[]))
    assert not ok(c, "x/b", "y/c")
    v = engine.evaluate(c, c.pod("x/b"), c.pod("y/c"), 80)
    assert v.egress.allowed and v.egress.allowed_by == ("x/allow-egress egress[0]",)
    assert not v.ingress.allowed and v.ingress.isolating == ("y/deny-ingress",)
    assert "isolated by y/deny-ingress" in v.text()


def test_empty_selectors() -> None:
    # peer podSelector {} without namespaceSelector: the policy's own namespace only
    c, _ = cluster(policy("p", ingress=[{"from": [{"podSelector": {}}]}]))
    assert ok(c, "x/b", "x/a") and not ok(c, "y/b", "x/a")
    # namespaceSelector {}: every namespace; both empty: every pod
    c, _ = cluster(policy("p", ingress=[{"from": [{"namespaceSelector": {}, "podSelector": {}}]}]))
    assert ok(c, "z/c", "x/a")


def test_policy_types_only_ingress_ignores_egress_rules() -> None:
    m = policy("p", sel(pod="a"), egress=[])
    m["spec"]["policyTypes"] = ["Ingress"]
    m["spec"]["ingress"] = [{}]
    c, _ = cluster(m)
    assert ok(c, "x/a", "y/b")  # egress rules are there but Egress is not a type (amazon-network-policy#229)


def test_only_egress_rules_without_types_also_isolates_ingress() -> None:
    m = policy("p", sel(pod="a"), egress=[{}])
    m["spec"].pop("policyTypes")
    c, _ = cluster(m)
    assert not ok(c, "y/b", "x/a") and ok(c, "x/a", "y/b")


def test_own_node_always_allowed_other_nodes_are_ips() -> None:
    c, ips = cluster(policy("deny", ingress=[], egress=[]))
    xa = c.pod("x/a")
    assert engine.evaluate(c, Host("10.244.1.1", xa.node), xa, 80).allowed
    assert not engine.evaluate(c, Host("192.168.56.12", "node-2"), xa, 80).allowed


def test_label_change_and_new_namespace_apply() -> None:
    c, _ = cluster(policy("p", sel(pod="a"), ingress=[{"from": [{"namespaceSelector": sel(team="blue")}]}]))
    assert not ok(c, "y/b", "x/a")
    c.namespaces = {**c.namespaces, "y": (("team", "blue"),)}
    assert ok(c, "y/b", "x/a") and not ok(c, "z/b", "x/a")
    c.pods = [replace(p, labels=(("pod", "z"),)) if p.ref == "x/a" else p for p in c.pods]
    assert ok(c, "z/b", "x/a")  # x/a no longer selected: open


def test_table_counts() -> None:
    c, _ = cluster(policy("deny", ingress=[]))
    t = engine.table(c, 80)
    assert t.counts() == (54, 27)
