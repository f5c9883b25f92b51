"""A node's rendered ruleset does what the engine says: every upstream case is replayed through the structured
rules of the source's and the destination's node (a packet walk over the chains and sets, as netfilter would
take it), and the incremental builder always equals a build from scratch."""
from __future__ import annotations

import ipaddress

import pytest

from emulator.netpol import engine, names, nodestate, render, upstream
from emulator.netpol.nodestate import NodeBuilder, NodeState

model = upstream.model_cluster
NODES = ("node-1", "node-2", "node-3")


def _addr_in(value: str, ip: str, state: NodeState) -> bool:
    if value.startswith("@"):
        return ip in state.elements[value[1:]]
    return ipaddress.ip_address(ip) in ipaddress.ip_network(value)


def _matches(m: tuple, pkt: dict, state: NodeState) -> bool:
    kind = m[0]
    if kind == "ct":
        return False  # every probe opens a new connection
    if kind == "fiblocal":
        return pkt["src"] in pkt["local"]
    if kind == "addr":
        _, side, neg, value = m
        return _addr_in(value, pkt[side], state) != neg
    if kind == "except":
        return not any(_addr_in(c, pkt[m[1]], state) for c in m[2])
    if kind == "protos":
        return pkt["proto"] in m[1]
    if kind == "ports":
        return any(pkt["proto"] == p and lo <= pkt["port"] <= hi for p, lo, hi in m[1])
    if kind == "named":
        return f"{pkt['daddr']} . {pkt['proto']} . {pkt['port']}" in state.elements[m[1]]
    raise AssertionError(m)


def walk(state: NodeState, pkt: dict) -> bool:
    """The verdict of the postrouting hook (True = accept), following jump/goto/return as netfilter does."""
    def run(rules, stack: list) -> str | None:
        for r in rules:
            if all(_matches(m, pkt, state) for m in r.matches):
                verb, _, target = r.verdict.partition(" ")
                if verb in ("accept", "drop"):
                    return verb
                if verb == "jump":
                    v = run(state.chains[target], stack)
                    if v:
                        return v
                elif verb == "goto":
                    return run(state.chains[target], stack)
                elif verb == "return":
                    return None
        return None
    return (run(nodestate.BASE_RULES, []) or "accept") == "accept"


def allowed(states: dict[str, NodeState], src, dst, port: int, proto: str) -> bool:
    pkt = {"saddr": src.ip, "daddr": dst.ip, "src": src.ip, "proto": proto.lower(), "port": port, "local": set()}
    nodes = [src.node] + ([dst.node] if dst.node != src.node else [])
    return all(walk(states[n], pkt) for n in nodes)


@pytest.mark.parametrize("case", upstream.CASES, ids=lambda c: f"{c.number:02d}")
def test_rendered_rules_give_the_upstream_tables(case: upstream.Case) -> None:
    cluster, ips = model()
    builders = {n: NodeBuilder(n) for n in NODES}
    for step in case.steps:
        upstream.apply_step(cluster, step, ips)
        states = {n: b.update({p.ref: p for p in cluster.pods}, cluster.namespaces,
                              {p.key: p for p in cluster.policies}) for n, b in builders.items()}
        for n in NODES:  # incremental == from scratch
            fresh = nodestate.build(cluster, n)
            assert (states[n].sets, states[n].elements, states[n].chains) == (fresh.sets, fresh.elements, fresh.chains)
        for probe in step.probes:
            want = probe.table()
            for s in cluster.pods:
                for d in cluster.pods:
                    if s.ref != d.ref:
                        assert allowed(states, s, d, probe.port, probe.protocol) == want.get(s.ref, d.ref), \
                            f"{s.ref} → {d.ref} {probe.port}/{probe.protocol}"


def test_from_own_node_is_accepted_before_any_policy() -> None:
    cluster, ips = model()
    upstream.apply_step(cluster, upstream.case(2).steps[0], ips)  # deny all, both ways, in x
    st = nodestate.build(cluster, "node-1")
    xa = cluster.pod("x/a")
    pkt = {"saddr": "10.244.1.1", "daddr": xa.ip, "src": "10.244.1.1", "proto": "tcp", "port": 80,
           "local": {"10.244.1.1"}}
    assert walk(st, pkt)
    assert not walk(st, {**pkt, "local": set()})  # a remote node's address is just an IP: denied


def test_a_node_holds_only_what_its_pods_need() -> None:
    cluster, ips = model()
    upstream.apply_step(cluster, upstream.case(3).steps[0], ips)  # selects x/a only, which runs on node-1
    on1, on2 = nodestate.build(cluster, "node-1"), nodestate.build(cluster, "node-2")
    chain = names.policy_chain("Ingress", "x", "x-a-allows-x-b")
    assert chain in on1.chains and chain not in on2.chains
    assert on2.elements[names.PODIPS] == frozenset()
    assert on1.elements[names.PODIPS] == {ips["x/a"]}
    assert on1.elements[names.peers_set("Ingress", "x", "x-a-allows-x-b", 0)] == {ips["x/b"]}


def test_named_ports_resolve_per_serving_pod() -> None:
    cluster, ips = model()
    from dataclasses import replace
    cluster.pods = [replace(p, ports=(("http", 8080 if p.name == "a" else 80, "TCP"),)) for p in cluster.pods]
    pol = upstream.policy("named", ingress=[{"ports": [{"port": "http"}]}])
    upstream.apply_step(cluster, upstream.Step(put=(pol,)), ips)
    st = nodestate.build(cluster, "node-1")  # x/a (8080) and y/a (not selected: namespace y) live here
    assert st.elements[names.ports_set("Ingress", "x", "named", 0)] == {f"{ips['x/a']} . tcp . 8080"}
    assert engine.evaluate(cluster, cluster.pod("y/b"), cluster.pod("x/a"), 8080).allowed
    assert not engine.evaluate(cluster, cluster.pod("y/b"), cluster.pod("x/a"), 80).allowed
    assert engine.evaluate(cluster, cluster.pod("y/b"), cluster.pod("x/b"), 80).allowed


def test_partial_sync_text_touches_only_the_change() -> None:
    cluster, ips = model()
    upstream.apply_step(cluster, upstream.case(3).steps[0], ips)
    b = NodeBuilder("node-1")
    before = b.update({p.ref: p for p in cluster.pods}, cluster.namespaces, {p.key: p for p in cluster.policies})
    from dataclasses import replace
    before = NodeState(before.node, dict(before.sets), dict(before.elements), dict(before.chains))
    cluster.pods = [replace(p, labels=(("pod", "b"),)) if p.ref == "x/c" else p for p in cluster.pods]
    after = b.update({p.ref: p for p in cluster.pods}, cluster.namespaces, {p.key: p for p in cluster.policies})
    text = render.diff(after, before)
    s = names.peers_set("Ingress", "x", "x-a-allows-x-b", 0)
    assert text == f"add element {names.T} {s} {{ {ips['x/c']} }}\n"
    assert render.diff(after, after) == ""
    full = render.full(after)
    assert full.startswith(f"add table {names.T}\ndelete table {names.T}\n")
    assert "add chain inet kube-network-policies postrouting { type filter hook postrouting priority srcnat - 5 ;" \
        in full
