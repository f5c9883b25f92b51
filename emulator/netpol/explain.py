"""``netpol explain``: why one connection is allowed or dropped, by which policy and rule, and where that rule
is in the kernel (node, chain, the rule's comment) with its packet counter.

The decision is the engine's (``engine.evaluate``); the places are those the node state puts it
(``names``): egress is decided on the source's node in chain ``egress-<H>-<ns>/<policy>``, ingress on the
destination's node in ``ingress-<H>-<ns>/<policy>``; a side no policy isolates passes ``egress``/``ingress``
at their first rule; an isolated side no rule admits ends at the chain's last rule (``counter drop``). Counters
come from ``kernel.read`` (``nft -j list table``): the packets each rule has matched so far, as a student sees
them with ``nft list ruleset``.
"""
from __future__ import annotations

from emulator.netpol import names
from emulator.netpol.engine import Decision, Endpoint, PodInfo, Verdict
from emulator.netpol.kernel import KernelTable
from emulator.netpol.model import EGRESS, INGRESS

DROP = {EGRESS: "no NetworkPolicy allows this egress", INGRESS: "no NetworkPolicy allows this ingress"}


def _counter(kt: KernelTable | None, chain: str, comment: str) -> str:
    if kt is None or not kt.present:
        return ""
    n = kt.packets.get((chain, comment))
    return f" [{n} packets so far]" if n is not None else " [rule not in the kernel!]"


def side_lines(d: Decision, node: str, kt: KernelTable | None) -> list[str]:
    where = f"{d.direction.lower()} of {d.subject} (decided on {node})"
    if d.exempt:
        return [f"{where}: {d.exempt}"]
    if not d.isolating:
        return [f"{where}: not isolated (no policy selects it for {d.direction}), nothing checks it"]
    out = [f"{where}: isolated by {', '.join(d.isolating)}"]
    for rule in d.allowed_by:
        ref, _, idx = rule.partition(" ")
        ns, _, name = ref.partition("/")
        chain = names.policy_chain(d.direction, ns, name)
        comments = [c for (ch, c) in (kt.packets if kt else {}) if ch == chain and c.startswith(rule)]
        counters = "".join(_counter(kt, chain, c) for c in comments[:1]) if kt else ""
        out.append(f"  allowed by {rule}: {node} chain {chain}, rule \"{rule}\"{counters}")
    if not d.allowed_by:
        out.append(f"  no rule of theirs admits it: dropped by {node} chain {d.direction.lower()}, rule "
                   f"\"{DROP[d.direction]}\"{_counter(kt, d.direction.lower(), DROP[d.direction])}")
    return out


def lines(v: Verdict, src: Endpoint, dst: Endpoint, port: int, protocol: str,
          tables: dict[str, KernelTable]) -> list[str]:
    head = f"{src.ref} → {dst.ref} {port}/{protocol}: {'allowed' if v.allowed else 'dropped'}"
    out = [head]
    if v.egress is not None and isinstance(src, PodInfo):
        out += ["  " + x for x in side_lines(v.egress, src.node, tables.get(src.node))]
    else:
        out.append(f"  egress: {src.ref} is not a pod (no egress policy applies)")
    if v.ingress is not None and isinstance(dst, PodInfo):
        out += ["  " + x for x in side_lines(v.ingress, dst.node, tables.get(dst.node))]
    else:
        out.append(f"  ingress: {dst.ref} is not a pod (no ingress policy applies)")
    out.append("  (policy is applied in each node's postrouting hook, after Service DNAT: a ClusterIP is decided as "
               "its endpoint pod)")
    return out
