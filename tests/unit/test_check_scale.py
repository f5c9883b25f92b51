"""Checks at any size, pure parts: the pair plan's coverage, the neighbour working set, the table's counters."""
from __future__ import annotations

import random
import struct
from collections import defaultdict

import pytest

from emulator.check import icmp, neighbours, plan
from emulator.netlink import neightable


def lab(counts: list[int]) -> list[tuple[str, str]]:
    return [(f"p{n}-{i:03d}", f"n{n}") for n, k in enumerate(counts) for i in range(k)]


def coverage(p: plan.Plan, pods: list[tuple[str, str]]):
    node_of = dict(pods)
    sends, reached = defaultdict(set), defaultdict(set)
    node_pairs = set()
    for s, t in p.probes:
        if s.startswith("node/"):
            continue
        sends[s].add(node_of[t])
        reached[t].add(node_of[s])
        node_pairs.add((node_of[s], node_of[t]))
    return sends, reached, node_pairs


def test_small_lab_gets_the_full_matrix() -> None:
    pods = lab([3, 3, 4])
    p = plan.make(pods)
    assert p.mode == "full" and p.pod_pairs == p.all_pairs == 10 * 9
    pairs = [x for x in p.probes if not x[0].startswith("node/")]
    assert len(set(pairs)) == len(pairs) and all(s != t for s, t in pairs)
    assert sorted(t for s, t in p.probes if s.startswith("node/")) == sorted(n for n, _ in pods)
    assert "full matrix: 90 of 90" in p.describe()


@pytest.mark.parametrize("counts", [[100] * 10, [1, 7, 150, 2, 40], [3] * 60, [101], [51, 50]])
def test_spanning_set_covers_every_pod_node_and_node_pair(counts: list[int]) -> None:
    pods = lab(counts)
    p = plan.make(pods, seed=7)
    assert p.mode == "spanning" and p.seed == 7
    sends, reached, node_pairs = coverage(p, pods)
    nodes = {n for _, n in pods}
    k = {n: c for n, c in zip(sorted(nodes, key=lambda x: int(x[1:])), counts)}
    for name, node in pods:
        others = {m for m in nodes if m != node}
        own = {node} if k[node] > 1 else set()
        assert others | own <= sends[name], f"{name} does not send to every node"
        assert others | own <= reached[name], f"{name} is not reached from every node"
    assert {(a, b) for a in nodes for b in nodes if a != b} <= node_pairs
    pairs = [x for x in p.probes if not x[0].startswith("node/")]
    assert len(set(pairs)) == len(pairs) == p.pod_pairs and all(s != t for s, t in pairs)
    assert sorted(t for s, t in p.probes if s.startswith("node/")) == sorted(n for n, _ in pods)
    assert all(dict(pods)[t] == s[5:] for s, t in p.probes if s.startswith("node/"))
    assert p.pod_pairs < p.all_pairs


def test_spanning_set_size_sample_and_report() -> None:
    pods = lab([100] * 10)
    p = plan.make(pods, seed=3)
    # 10 × 9 node pairs × 100 + 100 same-node per node + the sample (a tenth of the pods)
    assert p.sampled == plan.default_sample(1000) == 100
    assert p.pod_pairs == 9000 + 1000 + 100
    assert p.as_dict() == {"mode": "spanning", "pods": 1000, "pairs": 10100, "of": 999000, "seed": 3, "sampled": 100}
    assert "10100 of 999000 pod pairs" in p.describe() and "seed 3" in p.describe() and "--full" in p.describe()
    assert plan.make(pods, seed=3) == p
    other = plan.make(pods, seed=4)
    assert set(other.probes[-100:]) != set(p.probes[-100:]) and other.probes[:-100] == p.probes[:-100]
    assert plan.make(pods).seed is not None
    assert plan.make(pods, seed=3, sample=0).sampled == 0


def test_full_on_request_and_spanning_on_request() -> None:
    pods = lab([60, 61])
    assert plan.make(pods, full=True).pod_pairs == 121 * 120
    assert plan.make(lab([5, 5]), full=False, seed=1).mode == "spanning"


def test_probes_come_in_waves_of_few_pods() -> None:
    """Early probes touch only a few pods: the neighbour entries of a wave are made close together in time."""
    pods = lab([100] * 10)
    p = plan.make(pods, seed=1)
    first = p.probes[: len(p.probes) // 10]
    touched = {x for pair in first for x in pair if not x.startswith("node/")}
    assert len(touched) <= 0.15 * len(pods)


def ep(ns: str, ip: str, node: str, node_ip: str, gw: str = "") -> neighbours.Endpoint:
    return neighbours.Endpoint(ns, ip, node, f"ns-{node}", node_ip, gw)


A1 = ep("a1", "10.244.1.2", "n1", "192.168.56.11", "10.244.1.1")
A2 = ep("a2", "10.244.1.3", "n1", "192.168.56.11", "10.244.1.1")
B1 = ep("b1", "10.244.2.2", "n2", "192.168.56.12", "10.244.2.1")
N1 = ep("ns-n1", "10.244.1.1", "n1", "192.168.56.11")


def test_neighbour_keys_follow_the_packet_path() -> None:
    assert neighbours.keys(A1, A2) == {("a1", "10.244.1.3"), ("a2", "10.244.1.2")}
    assert neighbours.keys(A1, B1) == {("a1", "10.244.1.1"), ("ns-n1", "10.244.1.2"), ("ns-n2", "10.244.2.2"),
                                       ("b1", "10.244.2.1"), ("ns-n1", "192.168.56.12"), ("ns-n2", "192.168.56.11")}
    assert neighbours.keys(N1, A1) == {("ns-n1", "10.244.1.2"), ("a1", "10.244.1.1")}
    # a reply shares the forward direction's entries
    assert neighbours.keys(B1, A1) == neighbours.keys(A1, B1)


def test_budget() -> None:
    assert neighbours.budget(1024, 0) == 820
    assert neighbours.budget(1024, 500) == 320
    assert neighbours.budget(1024, 5000) == 32


def test_pacer_holds_at_most_its_budget_and_evicts_idle_least_recent() -> None:
    pc = neighbours.Pacer(4, grace=1.0, linger=50.0)
    assert pc.admit(frozenset({("a", "1"), ("a", "2")}), 0.0) == (0.0, [])
    assert pc.admit(frozenset({("b", "1"), ("b", "2")}), 0.0) == (0.0, [])
    wait, victims = pc.admit(frozenset({("c", "1")}), 0.1)
    assert victims == [] and wait > 0  # everything held is busy
    pc.finished(frozenset({("a", "1"), ("a", "2")}), 0.2)
    wait, victims = pc.admit(frozenset({("c", "1")}), 0.5)
    assert victims == [] and wait == pytest.approx(0.7)  # idle, but within the grace period
    wait, victims = pc.admit(frozenset({("c", "1")}), 1.3)
    assert wait == 0.0 and set(victims) <= {("a", "1"), ("a", "2")} and victims
    pc.evicted(victims, set(victims))
    assert pc.admit(frozenset({("c", "1")}), 1.3) == (0.0, [])
    assert len(pc) <= 4 and pc.evictions == len(victims)


def test_pacer_keeps_what_it_could_not_delete_until_it_lingers_out() -> None:
    pc = neighbours.Pacer(2, grace=1.0, linger=10.0)
    pc.admit(frozenset({("a", "1"), ("a", "2")}), 0.0)
    pc.finished(frozenset({("a", "1"), ("a", "2")}), 0.0)
    tried = []
    while True:
        wait, victims = pc.admit(frozenset({("b", "1")}), 2.0)
        if not victims:
            break
        tried += victims
        pc.evicted(victims, set())  # the kernel refused: the entries stay counted
    assert sorted(tried) == [("a", "1"), ("a", "2")] and wait == pytest.approx(8.0)
    assert pc.admit(frozenset({("b", "1")}), 10.5) == (0.0, [])


def test_pacer_never_evicts_a_busy_key_or_the_probes_own() -> None:
    rng = random.Random(5)
    pc = neighbours.Pacer(50, grace=0.5)
    universe = [(f"ns{i}", f"10.0.0.{j}") for i in range(30) for j in range(5)]
    inflight: list[tuple[float, frozenset]] = []
    now = 0.0
    for _ in range(3000):
        now += 0.01
        for end, ks in [x for x in inflight if x[0] <= now]:
            pc.finished(ks, now)
            inflight.remove((end, ks))
        ks = frozenset(rng.sample(universe, rng.randint(1, 6)))
        busy = {k for _, held in inflight for k in held}
        wait, victims = pc.admit(ks, now)
        if victims:
            assert not (set(victims) & busy) and not (set(victims) & ks)
            pc.evicted(victims, set(victims))
            wait, victims = pc.admit(ks, now)
            assert not victims
        if not wait:
            inflight.append((now + rng.uniform(0.01, 0.3), ks))
        assert len(pc) <= 50
        assert busy <= set(pc._last)
    assert pc.evictions > 0 and pc.peak <= 50


def test_pacer_lets_an_oversized_probe_through_when_empty() -> None:
    pc = neighbours.Pacer(2)
    assert pc.admit(frozenset({("a", "1"), ("a", "2"), ("a", "3")}), 0.0) == (0.0, [])


ARP_CACHE = """\
entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls
00000402 00001917 00001964 00000000   00000000 00000000 00000000   00000000         00000000         00000000         00000010       00000002            00000100
00000402 00000fce 0000101f 00000000   00000005 00000001 00000000   00000000         00000000         0000000d         00000001       00000000            00000011
"""


def test_arp_cache_stats_are_summed_over_cpus() -> None:
    st = neightable.parse_stats(ARP_CACHE)
    assert st == neightable.Stats(entries=0x402, table_fulls=0x111, forced_gc_runs=0x11, unresolved_discards=2)
    assert neightable.parse_stats("") == neightable.Stats(0, 0, 0, 0)


def test_lab_estimate_and_suggested_limits() -> None:
    assert neightable.lab_estimate(10, 1000) == 2000 + 90
    assert neightable.lab_estimate(50, 5000, external=True) == 10000 + 2450 + 100
    cur = neightable.Limits(128, 512, 1024)
    assert neightable.suggested(100, cur) == neightable.Limits(128, 2048, 4096)
    assert neightable.suggested(12550, cur) == neightable.Limits(128, 16384, 32768)
    big = neightable.Limits(128, 90000, 100000)
    assert neightable.suggested(100, big) == big  # never lower


def test_up_warning_names_the_limit_and_the_exact_sysctl() -> None:
    lim = neightable.Limits(128, 512, 1024)
    assert neightable.warning(500, 20, lim) is None
    w = neightable.warning(2090, 20, lim)
    assert "gc_thresh3=1024" in w and "2090" in w
    assert ("sudo sysctl -w net.ipv4.neigh.default.gc_thresh2=4096 net.ipv4.neigh.default.gc_thresh3=8192" in w)
    assert "--raise-neigh-limits" in w


def test_raise_limits_only_raises(tmp_path) -> None:
    for i, v in ((1, 128), (2, 512), (3, 1024)):
        (tmp_path / f"gc_thresh{i}").write_text(f"{v}\n")
    ch = neightable.raise_limits(neightable.Limits(128, 4096, 8192), root=tmp_path)
    assert ch == [("net.ipv4.neigh.default.gc_thresh3", 1024, 8192), ("net.ipv4.neigh.default.gc_thresh2", 512, 4096)]
    assert neightable.read_limits(tmp_path) == neightable.Limits(128, 4096, 8192)
    assert neightable.raise_limits(neightable.Limits(128, 1000, 2000), root=tmp_path) == []


def test_echo_request_is_a_valid_icmp_packet_of_the_asked_size() -> None:
    pkt = icmp.echo_request(0x1234, 1, 1422)
    assert len(pkt) == 8 + 1422 and pkt[0] == 8
    assert icmp._checksum(pkt) == 0  # a correct checksum sums to zero
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(pkt), 0, 0, 64, 1, 0, bytes(4), bytes(4))
    reply = bytes([0]) + pkt[1:]
    assert icmp.is_echo_reply(ip + reply, 0x1234, 1)
    assert not icmp.is_echo_reply(ip + reply, 0x1235, 1)
    assert not icmp.is_echo_reply(ip + pkt, 0x1234, 1)  # our own request, seen by a raw socket


def test_group_for_runs_waves_together_only_where_the_underlay_does_not_fit() -> None:
    assert plan.group_for(811, 10) == 1  # 90 underlay entries stay made
    assert plan.group_for(811, 50) == 5  # 2,450 do not: 5 waves (250 pods) per pass over the source nodes
    assert plan.group_for(30000, 50) == 1
    assert plan.group_for(100, 50) == 1 and plan.group_for(811, 30) == 9
    p = plan.make(lab([4] * 3), full=False, seed=1, sample=0)
    order = p.ordered(2)
    assert sorted(order) == sorted(p.probes) and order != list(p.probes)
    assert p.ordered(1) == list(p.probes)


def test_neighbour_delete_request_matches_pyroute2s_encoding() -> None:
    import socket as so
    from pyroute2.netlink.rtnl.ndmsg import ndmsg
    m = ndmsg()
    m["family"] = so.AF_INET
    m["ifindex"] = 7
    m["attrs"] = [("NDA_DST", "10.244.1.2")]
    m["header"]["type"] = neightable.RTM_DELNEIGH
    m.encode()
    assert neightable.del_neigh(7, "10.244.1.2") == bytes(m.data)
