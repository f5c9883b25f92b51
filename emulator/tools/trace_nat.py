"""The NAT hooks of ``trace``: what each namespace's netfilter rules do to the packet, and Service addresses left
untranslated. ``NAT_HOOKS`` is the explicit list the walker uses unless it is given another; nothing registers.

``netfilter`` reads the rules the namespace's kernel holds (``netfilter.ruleset``: nftables tables, iptables
tables, xt_recent lists; once per namespace and trace) and walks the base chains at the hook the packet meets
(``netfilter.model.evaluate``). That is the proof of what the kernel will do: kube-proxy's chains (iptables
mode) or its ``ip kube-proxy`` table (nftables mode) pick the endpoint, flannel's and kube-proxy's masquerade
rules rewrite the source, a REJECT for a Service without endpoints stops the packet — whatever the node really
holds, including rules someone added by hand and missing ones kube-proxy has not written yet. Where the rules
choose at random, the trace follows the endpoint asked for (``--endpoint``) or the first in rule order (all are
equally likely) and lists the others with their odds.

``untranslated_service`` runs after it: a packet still addressed to the Service range when it leaves a node
(postrouting: after the nat chains had their chance and the filter chains did not reject it) was not DNATed, and
no router outside the cluster knows that range. It stops the trace and says why, from kube-proxy's desired
state (``services.proxy.state``, the pure model its rules are rendered from) and its status file: no Service
has that address and port, the Service has no endpoints, or the node's rules lack what kube-proxy wants there
(not synced yet, a failed sync, rules removed by hand).
"""
from __future__ import annotations

import ipaddress
import time

from emulator.fmt import duration
from emulator.services.proxy import names as chain_names
from emulator.services.proxy import state as proxy_state
from emulator.services.proxy.kubeproxy import status_path
from emulator.state.store import read_json
from emulator.errors import NoRouteError
from emulator.tools import trace_netpol
from emulator.tools.netfilter import model, ruleset
from emulator.tools.trace_model import NatAt, NatContext, NatHook, NatStep, Packet

MASQ_MARK = 0x4000


def _pct(p: float) -> str:
    return f"{p * 100:.0f}%"


def _rules(ctx: NatContext, ns: str) -> ruleset.Ruleset:
    key = ("ruleset", ns)
    if key not in ctx.memo:
        ctx.memo[key] = ruleset.read(ns)
    return ctx.memo[key]


def _deciding(b: model.Branch) -> str:
    """The rule that decided, after the one that led to its chain when it says little alone (``reject``)."""
    bare = b.rule.rsplit(": ", 1)[-1] in ("drop", "reject", "accept") or b.rule.endswith(("-j DROP", "-j REJECT"))
    return f"{b.jumps[-1]} → {b.rule}" if bare and b.jumps and b.rule.startswith("chain ") else b.rule


def describe(d: model.Decision, at: NatAt) -> str:
    """One decision in a line: what changed, by which chain path, and what else the rules could have chosen."""
    c = d.chosen
    where = f"{d.source} {' → '.join(c.chains)}"
    if c.nat == "dnat":
        text = f"DNAT {d.before.dst_text()} → {c.flow.dst_text()} by {where}"
        text += f" ({c.comment})" if c.comment else ""
        others = [a for a in d.alternatives if a.nat == "dnat"]
        if others:
            also = ", ".join(f"{a.flow.dst_text()} {_pct(a.probability)}" for a in others)
            text += f"; endpoint chosen at random: {_pct(c.probability)} (others: {also})"
        if c.flow.mark & MASQ_MARK and not d.before.mark & MASQ_MARK:
            text += f"; marked {hex(c.flow.mark)} for masquerade by {', '.join(c.marked_by)}"
    elif c.nat in ("snat", "masquerade"):
        how = f"masquerade: the address {at.out_dev} gives it" if c.nat == "masquerade" else "SNAT"
        text = f"SNAT {d.before.src} → {c.flow.src} ({how}) by {where}"
        if d.before.mark & MASQ_MARK:
            text += f" (the packet carries mark {hex(d.before.mark)})"
    elif d.verdict in ("drop", "reject"):
        text = f"{d.verdict.upper()} by {where}: {_deciding(c)}"
    else:
        text = f"mark {hex(c.flow.mark)} set by {', '.join(c.marked_by) or where}"
    return text + "".join(f" [{n}]" for n in c.notes)


def netfilter(ctx: NatContext, at: NatAt, pkt: Packet) -> NatStep | None:
    """What the namespace's rules do at ``at.point`` (None: nothing that changes or stops the packet)."""
    if at.kind == "underlay" and at.point not in ("prerouting", "forward", "postrouting"):
        return None
    rs = _rules(ctx, at.ns)
    if rs.empty:
        return None
    v = ctx.view(at.kind, at.owner)
    masq = None
    if at.point == "postrouting":
        try:
            masq = v.route_get(pkt.dst).prefsrc
        except NoRouteError:
            masq = None
    env = model.Env(at.point, frozenset(a.ip for a in v.addrs), at.in_dev, at.out_dev, masq, rs.recent)
    res = model.evaluate(rs.tables, at.point, model.Flow(pkt.src, pkt.dst, pkt.proto, pkt.port, pkt.mark), env,
                         ctx.prefer)
    if not res.decisions:
        return None
    new = pkt.with_(src=res.flow.src, dst=res.flow.dst, port=res.flow.dport, mark=res.flow.mark)
    text = "; then ".join(describe(d, at) for d in res.decisions)
    detail = {"hook": at.point, "verdict": res.verdict, "readWith": rs.sources,
              "decisions": [d.as_dict() for d in res.decisions]}
    problem = None
    if res.verdict != "accept":
        last = res.decisions[-1]
        why = _service_words(ctx, at, pkt)
        problem = (f"{at.owner} {'rejects' if res.verdict == 'reject' else 'drops'} {pkt.text()} at {at.point}: "
                   f"{_deciding(last.chosen)} ({last.source} {' → '.join(last.chosen.chains)})"
                   + (f"; {why}" if why else ""))
    return NatStep(new, text, problem, detail)


# -- Services the rules did not translate ------------------------------------------------------------------------
def _model(ctx: NatContext, node: str) -> proxy_state.ProxyState:
    key = ("proxy-model", node)
    if key not in ctx.memo:
        lab = ctx.lab
        cidr = lab.record.get("cluster", {}).get("podCIDR", "")  # type: ignore[attr-defined]
        ctx.memo[key] = proxy_state.build(list(lab.store.list("services")),  # type: ignore[attr-defined]
                                          list(lab.store.list("endpoints")), node, cidr)  # type: ignore[attr-defined]
    return ctx.memo[key]


def _in_service_range(ctx: NatContext, ip: str) -> bool:
    cidr = ctx.lab.record.get("cluster", {}).get("serviceCIDR")  # type: ignore[attr-defined]
    return bool(cidr) and ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(cidr)


def _service_words(ctx: NatContext, at: NatAt, pkt: Packet) -> str:
    """What kube-proxy's model says about a packet to a Service address ('' if it is no Service address)."""
    if at.kind != "node":
        return ""
    if not _in_service_range(ctx, pkt.dst):
        nodeport = next((p for p in _model(ctx, at.owner).ports if p.node_port and p.node_port == pkt.port
                         and p.protocol == pkt.proto), None)
        if nodeport is None or pkt.dst not in frozenset(a.ip for a in ctx.view(at.kind, at.owner).addrs):
            return ""
        if not nodeport.endpoints:
            return f"NodePort {pkt.port} is {nodeport.spn}, which has no endpoints"
        if nodeport.external_local and not any(e.node == at.owner for e in nodeport.endpoints):
            return (f"NodePort {pkt.port} is {nodeport.spn}, externalTrafficPolicy Local, and none of its endpoints "
                    f"runs on {at.owner}")
        return f"NodePort {pkt.port} is {nodeport.spn}"
    ports = [p for p in _model(ctx, at.owner).ports if p.cluster_ip == pkt.dst]
    port = next((p for p in ports if p.port == pkt.port and p.protocol == pkt.proto), None)
    if port is None:
        if not ports:
            return f"no Service has ClusterIP {pkt.dst}"
        have = ", ".join(f"{p.port}/{p.protocol.upper()}" for p in ports)
        return f"{ports[0].namespace}/{ports[0].name} ({pkt.dst}) has no port {pkt.port}/{pkt.proto.upper()} " \
               f"(its ports: {have})"
    if not port.endpoints:
        return f"{port.spn} has no endpoints (no ready pod matches its selector)"
    eps = ", ".join(e.addr for e in port.endpoints)
    mode = (_status(ctx, at.owner) or {}).get("mode")
    chain = {"iptables": f"chain {chain_names.svc_chain(port)}", "nftables": f"chain {chain_names.nft_service(port)}"}
    return f"kube-proxy's desired state for {at.owner} sends {port.spn} to {eps} ({chain.get(mode, 'no kube-proxy')})"


def _status(ctx: NatContext, node: str) -> dict | None:
    return read_json(status_path(ctx.lab.paths, node))  # type: ignore[attr-defined]


def _proxy_status(ctx: NatContext, node: str) -> str:
    st = _status(ctx, node)
    if not st:
        return f"kube-proxy of {node} has never reported a sync"
    if st.get("error"):
        return f"kube-proxy of {node} ({st.get('mode')} mode) last failed: {st['error']}"
    ago = duration(time.time() - st["time"]) if st.get("time") else "?"
    return (f"kube-proxy of {node} ({st.get('mode')} mode) reported its last sync {ago} ago, without error: the "
            "rules were changed after it wrote them, or it has not caught up yet")


def untranslated_service(ctx: NatContext, at: NatAt, pkt: Packet) -> NatStep | None:
    """Stop a packet that still goes to a Service address after a node's nat rules (see the module docstring)."""
    if at.kind != "node" or at.point != "postrouting" or not _in_service_range(ctx, pkt.dst):
        return None
    why = _service_words(ctx, at, pkt)
    target = f"{pkt.dst}:{pkt.port}" if pkt.port else pkt.dst
    if why.startswith("kube-proxy's desired state"):
        why = f"{at.owner}'s netfilter rules do not DNAT it, but {why}; {_proxy_status(ctx, at.owner)}"
    text = f"{target} is a Service address and leaves {at.owner} untranslated: {why}"
    problem = f"{at.owner} sends {pkt.text()} out of {at.out_dev} still addressed to a Service: {why}"
    return NatStep(pkt, text, problem, {"hook": at.point, "service": target, "explanation": why})


# The NetworkPolicy hook first: it walks what precedes the policy table itself and leaves any earlier drop to
# ``netfilter``, which then also applies the NAT the later chains (masquerade) do.
NAT_HOOKS: tuple[NatHook, ...] = (trace_netpol.netpol, netfilter, untranslated_service)
