"""A capture's drop points from recorded ``nft monitor`` lines and hand-made frames (no root).

``tests/unit/data/nft-monitor-trace-node-1.txt`` is what ``nft monitor`` printed in node-1 of the lab described in
``test_trace_netpol`` while a capture ran: client (10.244.2.2, node-2) tried server 10.244.1.3:81 (no rule admits
it), other (10.244.1.2) the server's ClusterIP 10.96.130.55:80 (its egress policy admits client only), and
client the ClusterIP (admitted by ``default/allow-client ingress[0]``).
"""
from __future__ import annotations

import struct
from pathlib import Path

from emulator.tools import droppoint, nftrace, pcapng
from emulator.tools.netfilter.policy import RuleRef

DATA = Path(__file__).parent / "data"
CLIENT, OTHER, SERVER, CIP = "10.244.2.2", "10.244.1.2", "10.244.1.3", "10.96.130.55"


def traces() -> list[nftrace.PacketTrace]:
    return nftrace.parse("node-1", (DATA / "nft-monitor-trace-node-1.txt").read_text().splitlines())


def tcp_frame(src: str, dst: str, dport: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 40000, dport, 0, 0, 0x50, 0x02, 64240, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return b"\x0a\x58\x0a\xf4\x01\x03" + b"\x0a\x58\x0a\xf4\x01\x02" + b"\x08\x00" + ip + tcp


def test_setup_marks_every_ipv4_packet_but_vxlan_outer_and_bgp() -> None:
    text = nftrace.setup_text()
    assert text.startswith("add table inet podlab-trace\ndelete table inet podlab-trace\n")
    for chain in ("prerouting", "output"):
        assert f"add chain inet podlab-trace {chain} {{ type filter hook {chain} priority raw - 50 ; }}" in text
        assert f"add rule inet podlab-trace {chain} udp dport 8472 return" in text
        assert f"add rule inet podlab-trace {chain} meta nfproto ipv4 meta nftrace set 1" in text


def test_parse_splits_packets_at_the_trace_tables_packet_line() -> None:
    pts = traces()
    # 14 packets enter through the trace table; a routed reply goes on under a new id (no packet line of ours)
    assert len(pts) == 19 and all(pt.node == "node-1" and pt.src for pt in pts)
    drop = pts[0]
    assert (drop.src, drop.dst, drop.proto, drop.sport, drop.dport, drop.flags) == (CLIENT, SERVER, "tcp", 52164, 81,
                                                                                     "syn")
    assert drop.verdict == "drop" and drop.iif == "eth0"
    e = drop.decided_by
    assert (e.table, e.chain, e.comment) == ("inet kube-network-policies", "ingress",
                                             "no NetworkPolicy allows this ingress")
    assert [x.comment for x in drop.events if x.verdict == "jump" and x.comment] == ["default/allow-client"]
    assert all(x.table != "inet podlab-trace" for pt in pts for x in pt.events)  # our own marking is not shown


def test_a_dnat_before_the_policy_keeps_the_flow_as_sent() -> None:
    pt = next(p for p in traces() if p.src == OTHER and p.verdict == "drop")
    assert pt.flow() == (OTHER, SERVER, "tcp", 80) and pt.first == (OTHER, CIP, "tcp", 80)
    assert droppoint.policy_words(pt) == ("NetworkPolicy egress: isolated by default/other-egress; DROP by chain "
                                          'egress rule "no NetworkPolicy allows this egress"')


def test_admitted_and_established_packets() -> None:
    pts = traces()
    ok = next(p for p in pts if p.src == CLIENT and p.dport == 80 and p.flags == "syn")
    assert ok.verdict == "accept"
    assert droppoint.policy_words(ok).endswith('admitted by chain ingress-XJ2OEWLG-default/allow-client rule '
                                               '"default/allow-client ingress[0]"')
    rep = droppoint.report(["node-1"], pts, [], [])
    assert rep.established["node-1"] >= 1


def test_report_names_the_drop_point_and_where_the_flow_never_arrived() -> None:
    labels = ["client:eth0", "node-2:eth0", "other:eth0", "node-1:vethaf1fb7f1", "server:eth0"]
    cap = [pcapng.Packet(i, tcp_frame(CLIENT, SERVER, 81), 54, iface) for i, iface in enumerate((0, 0, 1, 1))]
    cap += [pcapng.Packet(9, tcp_frame(OTHER, CIP, 80), 54, 2)]  # seen before the DNAT, as the sender sent it
    behind = {"client:eth0": frozenset({CLIENT}), "node-2:eth0": frozenset({CLIENT}),
              "other:eth0": frozenset({OTHER}), "node-1:vethaf1fb7f1": frozenset({SERVER}),
              "server:eth0": frozenset({SERVER})}
    grew = [("node-1", RuleRef("ingress", 23, "no NetworkPolicy allows this ingress", "counter drop", 2, 120), 2)]
    rep = droppoint.report(["node-1"], traces(), labels, cap, grew, behind)
    by_flow = {d.flow: d for d in rep.drops}
    d = by_flow[(CLIENT, SERVER, "tcp", 81)]
    assert d.seen == {"client:eth0": 2, "node-2:eth0": 2} and d.missing == ["node-1:vethaf1fb7f1", "server:eth0"]
    assert d.node == "node-1" and "isolated by default/allow-client" in d.words
    d = by_flow[(OTHER, SERVER, "tcp", 80)]
    assert d.seen == {"other:eth0": 1} and d.missing == ["node-1:vethaf1fb7f1", "server:eth0"]
    text = "\n".join(rep.lines())
    assert "drop points:" in text and "stops on node-1: NetworkPolicy ingress" in text
    assert '(sent to 10.244.1.2 → 10.96.130.55:80)' in text
    assert 'node-1 chain ingress rule "no NetworkPolicy allows this ingress" (handle 23): +2 packets' in text
    j = rep.as_dict()
    assert {tuple(x["flow"]) for x in j["dropPoints"]} == set(by_flow) and j["counters"][0]["grew"] == 2


def test_frame_flow_reads_the_inner_packet_and_skips_arp() -> None:
    assert droppoint.frame_flow(tcp_frame(CLIENT, SERVER, 81)) == (CLIENT, SERVER, "tcp", 81)
    arp = b"\xff" * 6 + b"\x0a\x58\x0a\xf4\x01\x02" + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20
    assert droppoint.frame_flow(arp) is None
