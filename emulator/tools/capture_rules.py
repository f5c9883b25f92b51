"""What the nodes' rules did while a capture ran: ``nft monitor trace`` and the NetworkPolicy counters, per node.

``RuleWatch.for_points`` picks the nodes a capture's points involve (a node point's node, a pod point's node:
where that pod's traffic is policed) and decides whether to watch: ``--nftrace`` always, ``--no-nftrace``
never, by default when one of those nodes enforces NetworkPolicy (holds ``inet kube-network-policies``). Used
as a context manager around the capture, it reads each node's policy counters, starts the tracer
(``nftrace.Tracer``), and on exit stops it and reads the counters again; ``report`` hands everything to
``droppoint.report`` with the capture's packets. Without the ``nft`` program (``nft monitor`` is not in
libnftables) the default is not to watch, and ``--nftrace`` is refused as a missing dependency.
"""
from __future__ import annotations

import shutil
from typing import Sequence

from emulator.errors import MissingDependencyError
from emulator.lab.api import Lab
from emulator.tools import droppoint, nftrace, pcapng, targets, trace_netpol
from emulator.tools.netfilter import policy
from emulator.tools.targets import Point
from emulator.topology import names

Counters = dict[tuple[str, "int | None"], policy.RuleRef]


def nodes_of(lab: Lab, points: Sequence[Point]) -> dict[str, str]:
    """The nodes (name → netns) whose rules the packets at these points pass, in the points' order."""
    out: dict[str, str] = {}
    for p in points:
        node = p.owner if p.kind == "node" else lab.pod(p.owner).node if p.kind == "pod" else None
        if node and node not in out:
            out[node] = names.node_ns(lab.name, node)
    return out


def behind(lab: Lab, points: Sequence[Point]) -> dict[str, frozenset[str]]:
    """Point label → the pod addresses a packet seen there may be heading to (see ``droppoint.report``)."""
    ips: dict[str, tuple[str, str]] = {}  # pod → (IP, node)
    for name in lab.store.names("pods"):
        st = lab.store.get_status("pods", name) or {}
        if st.get("podIP"):
            ips[name] = (st["podIP"], st.get("nodeName", ""))
    out = {}
    for p in points:
        pod = p.owner if p.kind == "pod" else None
        if p.kind == "node" and p.iface.startswith("veth"):
            peer = targets.peer(lab, p)
            pod = peer.owner if peer is not None else None
        if pod is not None:
            out[p.label] = frozenset({ips[pod][0]} if pod in ips else ())
        elif p.kind == "node":
            out[p.label] = frozenset(ip for ip, node in ips.values() if node == p.owner)
        elif p.kind == "underlay":
            out[p.label] = frozenset(ip for ip, _ in ips.values())
        else:
            out[p.label] = frozenset()
    return out


def read_counters(ns: str) -> Counters | None:
    """The NetworkPolicy table's counted rules in ``ns`` (None: no such table)."""
    return trace_netpol.table_counters(ns)


class RuleWatch:
    def __init__(self, lab: Lab, nodes: dict[str, str], before: dict[str, Counters | None],
                 points: Sequence[Point] = ()) -> None:
        self.lab, self.nodes, self.before, self.points = lab, nodes, before, list(points)
        self.after: dict[str, Counters | None] = {}
        self.tracer = nftrace.Tracer(lab.name, nodes)

    @classmethod
    def for_points(cls, lab: Lab, points: Sequence[Point], want: bool | None) -> "RuleWatch | None":
        if want is False:
            return None
        if shutil.which("nft") is None:  # nft monitor is the nft program's (libnftables alone has no monitor)
            if want:
                raise MissingDependencyError("--nftrace needs the nft program (nft monitor trace); install it with "
                                             "`apt-get install nftables`", obj="nft")
            return None
        nodes = nodes_of(lab, points)
        before = {n: read_counters(ns) for n, ns in nodes.items()}
        if not nodes or (want is None and all(c is None for c in before.values())):
            return None
        return cls(lab, nodes, before, points)

    def __enter__(self) -> "RuleWatch":
        self.tracer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.tracer.stop()
        self.after = {n: read_counters(ns) for n, ns in self.nodes.items()}

    def grown(self) -> list[tuple[str, policy.RuleRef, int]]:
        out = []
        for n in self.nodes:
            before, after = self.before.get(n), self.after.get(n)
            if after is not None:
                out += [(n, r, d) for r, d in policy.grown(before or {}, after)]
        return out

    def report(self, labels: Sequence[str], captured: Sequence[pcapng.Packet]) -> droppoint.Report:
        return droppoint.report(list(self.nodes), self.tracer.traces(), labels, captured, self.grown(),
                                behind(self.lab, self.points))
