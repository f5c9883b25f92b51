"""Where captured packets stop, and which rule stopped them: a capture's packets beside the nodes' own accounts.

Three sources, each the kernel's:
- the captured packets (``capture``): at which points a flow was seen, and at which it never arrived;
- ``nft monitor trace`` of the nodes involved (``nftrace``): per packet, each rule it matched and the verdict that
  ended it — a NetworkPolicy drop names the dispatch chain's last rule, the policies whose chains the packet
  entered (the ``jump`` rules, commented ``<namespace>/<name>``) and, when admitted, the policy rule that did it;
- the NetworkPolicy table's rule counters read before and after (``netfilter.policy.counters``): how many packets
  each rule took meanwhile, which also covers packets the trace did not mark.

``report`` puts them together: the packets grouped by node, flow, verdict and deciding rule (established packets
of allowed connections, accepted by the table's first rule, are counted apart), then for every dropped flow its
drop point — the points that saw it, the points it did not reach, and the node and rule where it stopped — and
the counters that grew. Pure (tests give recorded traces and packets).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from emulator.netpol import names
from emulator.tools import packets, pcapng
from emulator.tools.netfilter.policy import RuleRef, direction_of
from emulator.tools.nftrace import Event, PacketTrace

NETPOL = names.T
Flow = tuple[str, str, str, "int | None"]  # src, dst, proto (tcp|udp|icmp), dport


def frame_flow(data: bytes) -> Flow | None:
    """The flow of one captured frame (the inner packet of a VXLAN frame); None for non-IPv4."""
    f = packets.decode_ethernet(data)
    f = f.inner or f
    if not f.src or f.proto == "ARP":
        return None
    return f.src, f.dst, f.proto.lower(), f.dport


def flow_text(flow: Flow) -> str:
    src, dst, proto, dport = flow
    return f"{proto} {src} → {dst}" + (f":{dport}" if dport is not None else "")


def policy_words(pt: PacketTrace) -> str:
    """What the NetworkPolicy table did to one traced packet ('' if the packet never entered its chains)."""
    evs = [e for e in pt.events if e.table == NETPOL]
    if not evs:
        return ""
    parts: list[str] = []
    for d in ("Egress", "Ingress"):
        side = [e for e in evs if direction_of(e.chain) == d]
        if not side:
            continue
        by = [e.comment or e.target for e in side if e.verdict == "jump" and direction_of(e.target) == d]
        decided = next((e for e in side if e.verdict in ("drop", "reject")), None) or \
            next((e for e in side if e.chain not in (names.EGRESS_CHAIN, names.INGRESS_CHAIN)
                  and e.verdict in ("accept", "goto", "jump")), None)
        head = d.lower()
        if not by and decided is None:
            parts.append(f"{head}: not isolated")
        elif decided is not None and decided.verdict in ("drop", "reject"):
            parts.append(f"{head}: isolated by {', '.join(by) or '?'}; {decided.verdict.upper()} by chain "
                         f"{decided.chain} rule \"{decided.comment or decided.rule}\"")
        else:
            rule = f'rule "{decided.comment or decided.rule}"' if decided else "?"
            parts.append(f"{head}: isolated by {', '.join(by) or '?'}; admitted by chain "
                         f"{decided.chain if decided else '?'} {rule}")
    if not parts:
        first = evs[0]
        what = first.comment or first.rule
        return f"accepted by {NETPOL} chain {first.chain} rule \"{what}\"" if first.verdict == "accept" else ""
    return "NetworkPolicy " + "; ".join(parts)


def _established(pt: PacketTrace) -> bool:
    return any(e.table == NETPOL and e.verdict == "accept" and "established" in e.rule for e in pt.events)


def _stop_words(pt: PacketTrace) -> str:
    e = pt.decided_by
    if e is None:
        return ""
    return policy_words(pt) if e.table == NETPOL else \
        f"{e.verdict.upper()} by {e.table} chain {e.chain} rule \"{e.comment or e.rule}\""


@dataclass
class Verdicts:
    node: str
    flow: Flow
    verdict: str
    words: str
    count: int = 0
    first: Flow | None = None  # the flow as it came, when a DNAT changed it before the rules that decided

    def text(self) -> str:
        before = f" (sent to {flow_text(self.first).split(' ', 1)[1]})" if self.first and self.first != self.flow \
            else ""
        return f"{self.node}  {flow_text(self.flow)}{before}  ×{self.count}  {self.verdict.upper()}: {self.words}"


@dataclass
class DropPoint:
    flow: Flow
    node: str
    words: str
    seen: dict[str, int] = field(default_factory=dict)  # point label → packets of the flow
    missing: list[str] = field(default_factory=list)

    def text(self) -> str:
        seen = ", ".join(f"{p} ×{n}" for p, n in self.seen.items()) or "no capture point"
        miss = f"; never reached {', '.join(self.missing)}" if self.missing else ""
        return f"{flow_text(self.flow)}: seen at {seen}{miss} — stops on {self.node}: {self.words}"


@dataclass
class Report:
    nodes: list[str]
    verdicts: list[Verdicts] = field(default_factory=list)
    established: dict[str, int] = field(default_factory=dict)  # node → packets of accepted connections
    drops: list[DropPoint] = field(default_factory=list)
    counters: list[tuple[str, RuleRef, int]] = field(default_factory=list)  # node, rule, packets meanwhile

    def lines(self) -> list[str]:
        out = [f"rules that decided (nft monitor trace on {', '.join(self.nodes)}):"]
        out += [f"  {v.text()}" for v in self.verdicts] or ["  no new connection passed a NetworkPolicy or a drop"]
        est = ", ".join(f"{n} {c}" for n, c in self.established.items() if c)
        if est:
            out.append(f"  (packets of connections already allowed, accepted by `ct state established,related "
                       f"accept`: {est})")
        if self.drops:
            out.append("drop points:")
            out += [f"  {d.text()}" for d in self.drops]
        if self.counters:
            out.append(f"rule counters that grew meanwhile ({NETPOL}):")
            out += [f"  {n} chain {r.chain} rule \"{r.comment or r.text}\" (handle {r.handle}): +{d} packets"
                    for n, r, d in self.counters]
        return out

    def as_dict(self) -> dict:
        return {"nodes": self.nodes,
                "verdicts": [{"node": v.node, "flow": list(v.flow), "verdict": v.verdict, "rule": v.words,
                              "packets": v.count, "sentAs": list(v.first) if v.first else None}
                             for v in self.verdicts],
                "established": self.established,
                "dropPoints": [{"flow": list(d.flow), "node": d.node, "rule": d.words, "seenAt": d.seen,
                                "notSeenAt": d.missing} for d in self.drops],
                "counters": [{"node": n, **r.as_dict(), "grew": d} for n, r, d in self.counters]}


def report(nodes: Sequence[str], traces: Sequence[PacketTrace], labels: Sequence[str],
           captured: Sequence[pcapng.Packet], counters: Sequence[tuple[str, RuleRef, int]] = (),
           behind: Mapping[str, frozenset[str]] | None = None) -> Report:
    """The report of one capture: ``labels[i]`` names the point of ``captured`` packets with ``iface == i``;
    ``behind[label]`` the addresses a packet seen at that point may be going to (a pod's eth0 or veth: the pod's
    IP; a node's interface: its pods'), so a dropped flow is said to be missing only where it was heading."""
    rep = Report(list(nodes), counters=list(counters))
    groups: dict[tuple, Verdicts] = {}
    dropped: dict[tuple[str, Flow], tuple[PacketTrace, str]] = {}
    for pt in traces:
        if _established(pt):
            rep.established[pt.node] = rep.established.get(pt.node, 0) + 1
            continue
        words = policy_words(pt) if pt.verdict == "accept" else _stop_words(pt)
        if not words:
            continue
        key = (pt.node, pt.flow(), pt.verdict, words)
        v = groups.setdefault(key, Verdicts(pt.node, pt.flow(), pt.verdict, words, first=pt.first))
        v.count += 1
        if pt.verdict != "accept":
            dropped.setdefault((pt.node, pt.flow()), (pt, words))
    rep.verdicts = list(groups.values())
    seen: dict[Flow, dict[str, int]] = {}
    for p in captured:
        flow = frame_flow(p.data)
        if flow is not None:
            per = seen.setdefault(flow, {})
            per[labels[p.iface]] = per.get(labels[p.iface], 0) + 1
    for (node, flow), (pt, words) in dropped.items():
        at: dict[str, int] = {}
        for f in pt.flows():
            for label, n in seen.get(f, {}).items():
                at[label] = at.get(label, 0) + n
        ordered = {lb: at[lb] for lb in labels if lb in at}
        dsts = {f[1] for f in pt.flows()}
        missing = [lb for lb in labels if lb not in at and (behind is None or dsts & behind.get(lb, frozenset()))]
        rep.drops.append(DropPoint(flow, node, words, ordered, missing))
    return rep


__all__ = ["DropPoint", "Event", "Report", "Verdicts", "frame_flow", "policy_words", "report"]
