"""The deciding NetworkPolicy rule read from recorded node rulesets (no root): what ``trace`` says at a node's
postrouting, and what ``capture``/``trace --verify`` read from the rules' counters.

The recordings (``tests/unit/data/netpol-ruleset-node-*.json``) are ``nft -j list ruleset`` of the two nodes of a
host-gw lab (kube-proxy in nftables mode) with pods other 10.244.1.2 and server 10.244.1.3 on node-1, client
10.244.2.2 on node-2, and two policies in ``default``: ``allow-client`` (server admits client on its named port
http = 80/TCP, and 203.0.113.0/24) and ``other-egress`` (other may reach client on 80/TCP only).
"""
from __future__ import annotations

import json
from pathlib import Path

from emulator.tools import trace_netpol
from emulator.tools.netfilter import model, policy, ruleset
from emulator.tools.trace_model import Hop, Packet, TraceResult

DATA = Path(__file__).parent / "data"
OTHER, SERVER, CLIENT = "10.244.1.2", "10.244.1.3", "10.244.2.2"
NODE1 = frozenset({"192.168.56.11", "10.244.1.1"})


def table(node: int):
    rs = ruleset.from_dumps("n", json.loads((DATA / f"netpol-ruleset-node-{node}.json").read_text()), None)
    t = policy.find(rs.tables)
    assert t is not None
    return t


def walk(src: str, dst: str, port: int | None = 80, proto: str = "tcp", node: int = 1, local=NODE1):
    pv = policy.walk(table(node), "postrouting", model.Flow(src, dst, proto, port),
                     model.Env("postrouting", local, None, "cni0"))
    assert pv is not None
    return pv


def test_ingress_admitted_by_the_policy_rule_with_its_counter() -> None:
    pv = walk(CLIENT, SERVER)
    assert pv.verdict == "accept"
    (side,) = pv.sides
    assert (side.direction, side.subject, side.isolated, side.allowed) == ("Ingress", SERVER, True, True)
    assert side.isolated_by == ["default/allow-client"]
    r = side.decided_by
    assert r is not None and r.comment == "default/allow-client ingress[0]" and r.handle == 20
    assert r.chain.startswith("ingress-") and r.chain.endswith("-default/allow-client") and r.packets == 1
    assert pv.decided_by == r


def test_ingress_no_rule_admits_dropped_at_the_dispatch_chains_last_rule() -> None:
    pv = walk(CLIENT, SERVER, port=81)  # the named port http is 80 only
    assert pv.verdict == "drop"
    (side,) = pv.sides
    assert not side.allowed and side.isolated_by == ["default/allow-client"]
    assert side.decided_by.chain == "ingress" and side.decided_by.comment == "no NetworkPolicy allows this ingress"
    assert side.decided_by.packets == 2  # the SYNs dropped so far when the ruleset was recorded
    line = trace_netpol.words(pv, "node-1", str)
    assert "ingress of 10.244.1.3: isolated by default/allow-client; no rule of theirs admits it: DROP by chain " \
           'ingress rule "no NetworkPolicy allows this ingress" (handle 19, counter 2 packets so far)' in line


def test_ipblock_rule_admits_the_external_range() -> None:
    pv = walk("203.0.113.2", SERVER, port=9999)
    assert pv.verdict == "accept" and pv.sides[0].decided_by.comment == "default/allow-client ingress[1]"


def test_egress_decided_on_the_sources_node_then_ingress_of_the_destination() -> None:
    pv = walk(OTHER, CLIENT)
    assert pv.verdict == "accept" and [s.direction for s in pv.sides] == ["Egress", "Ingress"]
    eg, ing = pv.sides
    assert eg.isolated_by == ["default/other-egress"] and eg.decided_by.comment == "default/other-egress egress[0]"
    assert not ing.isolated and ing.subject == CLIENT  # client is selected by no ingress policy
    pv = walk(OTHER, CLIENT, port=81)
    assert pv.verdict == "drop" and pv.sides[0].decided_by.comment == "no NetworkPolicy allows this egress"


def test_same_node_both_sides_in_one_pass_egress_drops_first() -> None:
    pv = walk(OTHER, SERVER)  # other may not send to server; server would not admit other either
    assert pv.verdict == "drop" and [s.direction for s in pv.sides] == ["Egress"]


def test_from_the_node_itself_is_exempt_and_unselected_pods_are_not_checked() -> None:
    pv = walk("10.244.1.1", SERVER)
    assert pv.verdict == "accept" and not pv.sides and pv.exempt is not None
    assert "accepted before any policy by chain postrouting rule \"from this node" in \
        trace_netpol.words(pv, "node-1", str)
    pv = walk(CLIENT, "10.244.1.9", node=2, local=frozenset({"192.168.56.12", "10.244.2.1"}))
    assert pv.verdict == "accept" and not pv.selected
    assert trace_netpol.words(pv, "node-2", str).endswith("no policy selects either end on this node: not "
                                                           "checked, accepted")


def test_counters_and_their_growth() -> None:
    before = policy.counters(table(1))
    assert {r.comment for r in before.values()} >= {"no NetworkPolicy allows this ingress",
                                                     "default/allow-client ingress[0]"}
    key = next(k for k, r in before.items() if r.comment == "no NetworkPolicy allows this ingress")
    after = dict(before)
    after[key] = policy.RuleRef(*key, before[key].comment, before[key].text, before[key].packets + 3, 0)
    assert [(r.comment, d) for r, d in policy.grown(before, after)] == [("no NetworkPolicy allows this ingress", 3)]


def test_a_lab_without_the_table_has_no_policy_decision() -> None:
    rs = ruleset.from_dumps("n", json.loads((DATA / "nft-ruleset-node-1.json").read_text()), None)
    assert policy.find(rs.tables) is None


def test_deciding_rules_come_from_the_hops_detail() -> None:
    pv = walk(CLIENT, SERVER, port=81)
    res = TraceResult("l", "host-gw", "client", "server", Packet(CLIENT, SERVER, "tcp", 81))
    res.hops.append(Hop("node-1", "node", "l-node-1", "cni0", "nat", "…",
                        detail={"netpol": pv.as_dict(), "verdict": pv.verdict}))
    assert trace_netpol.dropped_by_policy(res)
    ((node, ns, rule),) = trace_netpol.deciding_rules(res)
    assert (node, ns, rule.chain, rule.handle) == ("node-1", "l-node-1", "ingress", 19)
    after = {ns: {(rule.chain, rule.handle): policy.RuleRef("ingress", 19, rule.comment, rule.text, 5, 0)}}
    (line,) = trace_netpol.verify_words(res, {ns: {(rule.chain, rule.handle): rule}}, after)
    assert line == 'node-1 chain ingress rule "no NetworkPolicy allows this ingress" (handle 19): counter 5 ' \
                   "packets, +3 with the probe"
