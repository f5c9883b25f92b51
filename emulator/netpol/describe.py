"""``describe netpol``: the policy as ``kubectl describe networkpolicy`` prints it, then what it means right now.

kubectl's part: the pod selector, for each direction either "Allowing ingress traffic:" with each rule's ports
(``To Port: 80/TCP``, ``<any> (traffic allowed to all ports)``) and peers (``From:`` with ``PodSelector``,
``NamespaceSelector``, ``IPBlock``; ``<any> (traffic not restricted by source)``), or ``<none> (Selected pods are
isolated for ingress connectivity)``, or "Not affecting egress traffic". podlab's part: the pods it selects now
(with IP and node), the pods each rule admits now, and where it is enforced (the nodes of the selected pods, with
the chain and set names to look for in ``nft list ruleset``).
"""
from __future__ import annotations

from emulator.netpol import names
from emulator.netpol.engine import Cluster, peer_matches, selects
from emulator.netpol.model import EGRESS, INGRESS, NetworkPolicy, Peer


def _peer_lines(peer: Peer, indent: str) -> list[str]:
    if peer.ip_block is not None:
        return [f"{indent}IPBlock:", f"{indent}  CIDR: {peer.ip_block.cidr}",
                f"{indent}  Except: {', '.join(peer.ip_block.except_)}"]
    out = []
    if peer.namespace_selector is not None:
        out.append(f"{indent}NamespaceSelector: {peer.namespace_selector.text()}")
    if peer.pod_selector is not None:
        out.append(f"{indent}PodSelector: {peer.pod_selector.text()}")
    return out


def kubectl_lines(p: NetworkPolicy) -> list[str]:
    lines = [f"Name:         {p.name}", f"Namespace:    {p.namespace}", f"Created on:   {p.created or '<unknown>'}",
             "Labels:       " + (",".join(f"{k}={v}" for k, v in p.labels) or "<none>"), "Annotations:  <none>",
             "Spec:", f"  PodSelector:     {p.pod_selector.text()}"
             + (" (Allowing the specific traffic to all pods in this namespace)" if p.pod_selector.empty else "")]
    for d in (INGRESS, EGRESS):
        word, peer_word = d.lower(), "From" if d == INGRESS else "To"
        if not p.affects(d):
            lines.append(f"  Not affecting {word} traffic")
            continue
        lines.append(f"  Allowing {word} traffic:")
        if not p.rules(d):
            lines.append(f"    <none> (Selected pods are isolated for {word} connectivity)")
        for i, r in enumerate(p.rules(d)):
            if i:
                lines.append("    ----------")
            if r.ports:
                lines += [f"    To Port: {pp.text()}" for pp in r.ports]
            else:
                lines.append("    To Port: <any> (traffic allowed to all ports)")
            if r.peers:
                for peer in r.peers:
                    lines.append(f"    {peer_word}:")
                    lines += _peer_lines(peer, "      ")
            else:
                lines.append(f"    {peer_word}: <any> (traffic not restricted by "
                             f"{'source' if d == INGRESS else 'destination'})")
    lines.append(f"  Policy Types: {', '.join(p.policy_types)}")
    return lines


def now_lines(p: NetworkPolicy, c: Cluster) -> list[str]:
    selected = [q for q in c.pods if selects(p, q)]
    lines = ["Selected pods (now):" + ("" if selected else " <none>")]
    lines += [f"  {q.ref} ({q.ip or 'no IP yet'} on {q.node})" for q in selected]
    for d in (INGRESS, EGRESS):
        if not p.affects(d):
            continue
        for i, r in enumerate(p.rules(d)):
            if not r.peers:
                lines.append(f"{d.lower()}[{i}] admits: every peer")
                continue
            pods = [q.ref for q in c.pods if any(peer.ip_block is None and peer_matches(peer, p.namespace, q, c)
                                                  for peer in r.peers)]
            blocks = [peer.text() for peer in r.peers if peer.ip_block is not None]
            what = pods + blocks
            lines.append(f"{d.lower()}[{i}] admits: " + (", ".join(what) if what else "nothing (no pod matches)"))
    nodes = sorted({q.node for q in selected if q.ip})
    if nodes:
        chains = [names.policy_chain(d, p.namespace, p.name) for d in (INGRESS, EGRESS) if p.affects(d)]
        lines.append(f"Enforced on:  {', '.join(nodes)} (table {names.T}: chain {', '.join(chains)}; set "
                     f"{names.selected_set(p.namespace, p.name)})")
    else:
        lines.append("Enforced on:  no node (it selects no running pod)")
    return lines
