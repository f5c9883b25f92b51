"""DNAT, masquerade and drops resolved from recorded rulesets (no root): what a node's kube-proxy and flannel rules
do to one new packet, in iptables and nftables mode, and the rules kube-proxy would write read back the same way.

The recordings (``tests/unit/data``) are ``iptables-save`` and ``nft -j list ruleset`` of the two nodes of a lab
with Services (``default/web`` NodePort 30080 → web-a 10.244.2.2, web-b 10.244.2.3, both on node-2; ``sticky``
with ClientIP affinity, the client 10.244.1.2 pinned to web-a in the nftables recording; ``local`` NodePort 30081
with externalTrafficPolicy Local; ``empty`` without endpoints; kube-dns at 192.168.56.2).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.services.proxy import iptables as kp_iptables
from emulator.services.proxy import state as kp_state
from emulator.tools import trace, trace_nat, trace_model, trace_netpol
from emulator.tools.netfilter import iptables, model, nft, ruleset

DATA = Path(__file__).parent / "data"
CLIENT, WEB_A, WEB_B = "10.244.1.2", "10.244.2.2:8080", "10.244.2.3:8080"
NODE1 = frozenset({"192.168.56.11", "10.244.1.1", "10.244.1.0"})
NODE2 = frozenset({"192.168.56.12", "10.244.2.1", "10.244.2.0"})


def tables(mode: str, node: int) -> list[model.Table]:
    if mode == "iptables":
        rs = ruleset.from_dumps("n", None, (DATA / f"iptables-save-node-{node}.txt").read_text())
    else:
        rs = ruleset.from_dumps("n", json.loads((DATA / f"nft-ruleset-node-{node}.json").read_text()),
                                (DATA / f"nft-mode-iptables-save-node-{node}.txt").read_text())
    return rs.tables


def run(tabs, hook: str, src: str, dst: str, port: int | None, proto: str = "tcp", local=NODE1, mark: int = 0,
        prefer: str | None = None, **env) -> model.HookResult:
    return model.evaluate(tabs, hook, model.Flow(src, dst, proto, port, mark), model.Env(hook, local, **env), prefer)


MODES = ["iptables", "nftables"]


@pytest.mark.parametrize("mode", MODES)
def test_clusterip_dnat_lists_every_endpoint_with_its_odds(mode: str) -> None:
    res = run(tables(mode, 1), "prerouting", CLIENT, "10.96.100.100", 80, in_dev="cni0")
    assert res.verdict == "accept" and res.flow.dst_text() == WEB_A and res.flow.src == CLIENT
    d = res.dnat
    assert d is not None and d.chosen.probability == pytest.approx(0.5)
    assert [(a.flow.dst_text(), a.probability) for a in d.alternatives] == [(WEB_B, pytest.approx(0.5))]
    assert res.flow.mark == 0  # from a pod (inside the cluster CIDR): no masquerade mark
    chains = d.chosen.chains
    if mode == "iptables":
        assert chains == ("PREROUTING", "KUBE-SERVICES", "KUBE-SVC-CDGGSHYLG3RE2FKL", "KUBE-SEP-4EX2N4PG4ASNZOBF")
        assert d.chosen.rule.endswith("-j DNAT --to-destination 10.244.2.2:8080") and d.source == "iptables nat"
    else:
        assert chains[:3] == ("nat-prerouting", "services", "service-SUSTUHLJ-default/web/tcp/http")
        assert d.chosen.rule.endswith("meta l4proto tcp dnat to 10.244.2.2:8080")
        assert d.source == "nft table ip kube-proxy"


@pytest.mark.parametrize("mode", MODES)
def test_the_endpoint_asked_for_is_followed(mode: str) -> None:
    res = run(tables(mode, 1), "prerouting", CLIENT, "10.96.100.100", 80, in_dev="cni0", prefer="10.244.2.3")
    assert res.flow.dst_text() == WEB_B
    assert [a.flow.dst_text() for a in res.dnat.alternatives] == [WEB_A]


@pytest.mark.parametrize("mode", MODES)
def test_nodeport_from_outside_is_marked_dnated_then_masqueraded(mode: str) -> None:
    tabs = tables(mode, 1)
    pre = run(tabs, "prerouting", "203.0.113.2", "192.168.56.11", 30080, in_dev="eth0")
    assert pre.flow.dst_text() == WEB_A and pre.flow.mark == 0x4000
    assert "KUBE-NODEPORTS" in pre.dnat.chosen.chains if mode == "iptables" else \
        pre.dnat.chosen.chains[2] == "external-SUSTUHLJ-default/web/tcp/http"
    assert pre.dnat.chosen.marked_by[0].endswith("KUBE-MARK-MASQ" if mode == "iptables" else "mark-for-masquerade")
    post = run(tabs, "postrouting", pre.flow.src, pre.flow.dst, pre.flow.dport, mark=pre.flow.mark,
               out_dev="flannel.1", masq_source="10.244.1.0")
    assert (post.flow.src, post.flow.dst_text(), post.flow.mark) == ("10.244.1.0", WEB_A, 0)
    (d,) = post.decisions
    assert d.chosen.nat == "masquerade"  # kube-proxy's, not flannel's: flannel returns early for marked packets
    assert d.chosen.chains[-1] == ("KUBE-POSTROUTING" if mode == "iptables" else "masquerading")


@pytest.mark.parametrize("mode", MODES)
def test_pod_to_pod_is_never_translated(mode: str) -> None:
    tabs = tables(mode, 1)
    for hook, env in (("prerouting", {"in_dev": "cni0"}), ("forward", {"in_dev": "cni0", "out_dev": "flannel.1"}),
                      ("postrouting", {"out_dev": "flannel.1", "masq_source": "10.244.1.0"})):
        res = run(tabs, hook, CLIENT, "10.244.2.2", 8080, **env)
        assert (res.verdict, res.flow.src, res.flow.dst, res.decisions) == ("accept", CLIENT, "10.244.2.2", ()), hook


@pytest.mark.parametrize("mode", MODES)
def test_pod_to_the_internet_is_masqueraded_by_flannel(mode: str) -> None:
    res = run(tables(mode, 1), "postrouting", CLIENT, "203.0.113.2", 80, out_dev="eth0", masq_source="192.168.56.11")
    assert res.flow.src == "192.168.56.11"
    (d,) = res.decisions
    assert d.chosen.chains == ("POSTROUTING", "FLANNEL-POSTRTG") and d.chosen.comment == "flanneld masq"


@pytest.mark.parametrize("mode", MODES)
def test_service_without_endpoints_is_rejected_where_the_filter_rules_say(mode: str) -> None:
    tabs = tables(mode, 1)
    assert run(tabs, "prerouting", CLIENT, "10.96.100.103", 80, in_dev="cni0").decisions == ()
    res = run(tabs, "forward", CLIENT, "10.96.100.103", 80, in_dev="cni0", out_dev="eth0")
    assert res.verdict == "reject"
    rule = res.decisions[-1].chosen
    if mode == "iptables":
        assert rule.comment == "default/empty has no endpoints" and rule.chains == ("FORWARD", "KUBE-SERVICES")
    else:
        assert rule.chains == ("filter-forward", "endpoints-check", "reject-chain")
        assert "vmap @no-endpoint-services" in trace_nat._deciding(rule)


@pytest.mark.parametrize("mode", MODES)
def test_external_traffic_policy_local(mode: str) -> None:
    """node-1 has no endpoint of ``local``: no DNAT, the filter drops it; node-2 DNATs to its own, no SNAT mark."""
    n1 = tables(mode, 1)
    assert run(n1, "prerouting", "203.0.113.2", "192.168.56.11", 30081, in_dev="eth0").dnat is None
    res = run(n1, "input", "203.0.113.2", "192.168.56.11", 30081, in_dev="eth0")
    assert res.verdict == "drop"
    res = run(tables(mode, 2), "prerouting", "203.0.113.2", "192.168.56.12", 30081, local=NODE2, in_dev="eth0")
    assert res.flow.dst_text() in (WEB_A, WEB_B) and res.flow.mark == 0
    assert len(res.dnat.alternatives) == 1


def test_clientip_affinity_follows_the_kernels_lists() -> None:
    """nftables: the affinity set holds the client (recorded after one connection); iptables: the xt_recent list."""
    res = run(tables("nftables", 1), "prerouting", CLIENT, "10.96.100.101", 8080, in_dev="cni0")
    assert res.flow.dst_text() == WEB_A and res.dnat.alternatives == () and res.dnat.chosen.probability == 1
    other = run(tables("nftables", 1), "prerouting", "10.244.1.7", "10.96.100.101", 8080, in_dev="cni0")
    assert len(other.dnat.alternatives) == 1  # a new client is balanced
    ipt = tables("iptables", 1)
    fresh = run(ipt, "prerouting", CLIENT, "10.96.100.101", 8080, in_dev="cni0")
    assert len(fresh.dnat.alternatives) == 1
    recent = {"KUBE-SEP-JFWKHOX5RLVOK7M7": ruleset.parse_recent(
        f"src={CLIENT} ttl: 64 last_seen: 4297552496 oldest_pkt: 1 4297552496\n")}
    pinned = run(ipt, "prerouting", CLIENT, "10.96.100.101", 8080, in_dev="cni0", recent=recent)
    assert pinned.flow.dst_text() == WEB_B and pinned.dnat.alternatives == ()


@pytest.mark.parametrize("mode", MODES)
def test_node_to_kube_dns_is_dnated_in_output_and_masqueraded(mode: str) -> None:
    tabs = tables(mode, 1)
    out = run(tabs, "output", "192.168.56.11", "10.96.0.10", 53, proto="udp")
    assert out.flow.dst_text() == "192.168.56.2:53" and out.flow.mark == 0x4000  # from outside the cluster CIDR
    assert run(tabs, "output", "192.168.56.11", "10.96.0.10", 53, proto="tcp").flow.dst_text() == "192.168.56.2:53"
    assert run(tabs, "output", "192.168.56.11", "10.96.0.10", 53, proto="icmp").decisions == ()


def test_a_hand_written_masquerade_rule_is_seen() -> None:
    save = ("*nat\n:POSTROUTING ACCEPT [0:0]\n"
            "-A POSTROUTING -s 10.244.1.0/24 ! -o cni0 -m comment --comment \"by hand\" -j MASQUERADE\nCOMMIT\n")
    tabs = ruleset.from_dumps("n", None, save).tables
    res = run(tabs, "postrouting", CLIENT, "10.244.2.2", 8080, out_dev="flannel.1", masq_source="10.244.1.0")
    assert res.flow.src == "10.244.1.0" and res.decisions[0].chosen.comment == "by hand"
    same_node = run(tabs, "postrouting", CLIENT, "10.244.1.3", 8080, out_dev="cni0", masq_source="10.244.1.1")
    assert same_node.decisions == ()


def test_unknown_matches_are_noted_not_guessed() -> None:
    save = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m owner --uid-owner 0 -j DROP\nCOMMIT\n"
    res = run(ruleset.from_dumps("n", None, save).tables, "forward", CLIENT, "10.244.2.2", 80)
    assert res.verdict == "accept"


def svc(name: str, ip: str, ports: list[dict], **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"clusterIP": ip, "ports": ports, **spec}}


def eps(name: str, ips: list[tuple[str, str]], ports: list[dict]) -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": ip, "nodeName": n} for ip, n in ips], "ports": ports}]}


def test_the_rules_kube_proxy_renders_resolve_to_the_models_endpoints() -> None:
    """Model and rules agree: render the iptables restore text for a state, read it back, walk it."""
    four = [(f"10.244.{n}.{i}", f"node-{n}") for n, i in ((1, 5), (2, 5), (2, 6), (3, 5))]
    services = [svc("api", "10.96.0.50", [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30500}],
                    type="NodePort"),
                svc("dns", "10.96.0.53", [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}])]
    endpoints = [eps("api", four, [{"name": "http", "port": 8080}]),
                 eps("dns", four[:1], [{"name": "dns", "port": 53, "protocol": "UDP"}])]
    st = kp_state.build(services, endpoints, "node-1", "10.244.0.0/16")
    tabs = ruleset.from_dumps("n", None, kp_iptables.render(st)).tables
    for p in st.ports:
        res = run(tabs, "prerouting", CLIENT, p.cluster_ip, p.port, proto=p.protocol, in_dev="cni0")
        got = {res.flow.dst_text(): res.dnat.chosen.probability,
               **{a.flow.dst_text(): a.probability for a in res.dnat.alternatives}}
        assert got == {e.addr: pytest.approx(1 / len(p.endpoints)) for e in p.endpoints}, p.spn
    res = run(tabs, "prerouting", "203.0.113.2", "192.168.56.11", 30500, in_dev="eth0")
    assert res.flow.mark == 0x4000 and len(res.dnat.alternatives) == 3


def test_nft_rules_read_as_nft_prints_them() -> None:
    (t,) = nft.parse_json(json.loads((DATA / "nft-ruleset-node-1.json").read_text()))
    texts = [nft.render(r) for c in t.chains.values() for r in c.rules]
    assert "meta mark & 0x4000 == 0x0 return" in texts
    assert "ip daddr 10.96.100.100 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade" in texts
    assert 'ip saddr 10.244.0.0/16 goto service-O7JKBUXF-default/local/tcp/ comment "short-circuit pod traffic"' \
        in texts
    assert {c.name for c in t.chains.values() if c.hook} == {"filter-prerouting", "filter-input", "filter-forward",
                                                             "filter-output", "nat-prerouting", "nat-output",
                                                             "nat-postrouting"}


def test_iptables_nft_tables_are_left_to_iptables_save() -> None:
    doc = json.loads((DATA / "nft-ruleset-node-1.json").read_text())
    assert ruleset.has_iptables_tables(doc)
    assert [t.source for t in tables("nftables", 1)] == ["iptables nat", "iptables filter", "nft table ip kube-proxy"]


def test_restore_input_inserts_and_deletes() -> None:
    t = iptables.parse_save("*nat\n:A - [0:0]\n:B - [0:0]\n-A A -j RETURN\n-I A 1 -s 10.0.0.0/8 -j B\n-X B\nCOMMIT\n")
    assert [r.target for r in t["nat"].chains["A"].rules] == ["B", "RETURN"] and "B" not in t["nat"].chains


def test_trace_hooks_are_an_explicit_list() -> None:
    assert trace.trace.__kwdefaults__["nat_hooks"] is trace_nat.NAT_HOOKS
    assert trace_nat.NAT_HOOKS == (trace_netpol.netpol, trace_nat.netfilter, trace_nat.untranslated_service)
    assert not hasattr(trace_model, "register_nat_hook") and not hasattr(trace_model, "nat_hooks")


def test_describe_a_dnat_decision() -> None:
    res = run(tables("iptables", 1), "prerouting", "203.0.113.2", "192.168.56.11", 30080, in_dev="eth0")
    text = trace_nat.describe(res.dnat, trace_model.NatAt("node", "node-1", "lab-node-1", "prerouting", "eth0"))
    assert text.startswith("DNAT 192.168.56.11:30080 → 10.244.2.2:8080 by iptables nat PREROUTING → KUBE-SERVICES "
                           "→ KUBE-NODEPORTS → KUBE-EXT-")
    assert "chosen at random: 50% (others: 10.244.2.3:8080 50%)" in text and "marked 0x4000 for masquerade" in text
    d = res.dnat.as_dict()
    assert (d["from"]["dst"], d["to"]["dst"], d["alternatives"][0]["dst"]) == ("192.168.56.11:30080", WEB_A, WEB_B)
