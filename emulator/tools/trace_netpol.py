"""``trace``'s NetworkPolicy hook: on every node a pod's packet leaves through, the policy and rule that admit or
drop it, read from that node's kernel table, with the rule's packet counter.

Enforcement sits where kube-network-policies puts it: table ``inet kube-network-policies``, base chain
``postrouting`` at priority ``srcnat - 5`` — after the Service DNAT (so a ClusterIP is decided as its endpoint
pod), before the masquerade. The walker calls this hook at every ``postrouting`` it passes, routed or bridged
(``br_netfilter``); on a node whose table has that chain it walks the base chains of the other tables that run
earlier (a drop there is the ``netfilter`` hook's to report, it comes next), then the policy table with
``netfilter.policy.walk``, which logs the rules the packet reaches: ``egress``/``ingress`` (isolated or not), the
``jump`` into each policy's chain that selects the pod (commented ``<namespace>/<name>``), and the rule that
decided — a policy rule (``x/allow ingress[0]``) or the dispatch chain's last rule (``counter drop``). The hop's
line names them with chain, comment, handle and counter; ``-o json`` has the same as data (``detail.netpol``).
A drop ends the trace with the policy's words as the problem, and ``trace --verify`` (``verify_rules``) then
sends the probe anyway and shows the drop rule's counter growing: the kernel's own proof of the drop point.

A packet whose ends are both not pods (a VXLAN outer packet between nodes) is left alone: no policy selects node
addresses. The ruleset is read once per namespace and trace, shared with the ``netfilter`` hook
(``ctx.memo[("ruleset", ns)]``).
"""
from __future__ import annotations

import json

from emulator.errors import NftError, NoRouteError
from emulator.netlink import netns
from emulator.netpol import names
from emulator.services.proxy.libnft import Nft
from emulator.tools.netfilter import model, nft, policy, ruleset
from emulator.tools.trace_model import NatAt, NatContext, NatStep, Packet, TraceResult

TABLE = f"nft table {names.T}"


def _rules(ctx: NatContext, ns: str) -> ruleset.Ruleset:
    key = ("ruleset", ns)  # the key trace_nat's netfilter hook uses: one read per namespace and trace
    if key not in ctx.memo:
        ctx.memo[key] = ruleset.read(ns)
    return ctx.memo[key]


def _who(ctx: NatContext, ip: str) -> str:
    pod = getattr(ctx, "pods", {}).get(ip)
    return f"{pod['name']} ({ip})" if pod else ip


def _env(ctx: NatContext, at: NatAt, pkt: Packet) -> model.Env:
    v = ctx.view(at.kind, at.owner)
    try:
        masq = v.route_get(pkt.dst).prefsrc
    except NoRouteError:
        masq = None
    return model.Env(at.point, frozenset(a.ip for a in v.addrs), at.in_dev, at.out_dev, masq)


def words(pv: policy.PolicyVerdict, node: str, who) -> str:
    """The hop's line: what the node's policy table did, side by side, with the deciding rule."""
    head = f"NetworkPolicy on {node} ({TABLE} {names.BASE_CHAIN}): "
    if pv.exempt is not None and not pv.sides:
        return head + f"accepted before any policy by {pv.exempt.words()}"
    if not pv.sides:
        return head + "no policy selects either end on this node: not checked, accepted"
    parts = [s.words(who(s.subject)) for s in pv.sides]
    return head + "; ".join(parts) + ("" if pv.verdict != "accept" else "; accepted")


def netpol(ctx: NatContext, at: NatAt, pkt: Packet) -> NatStep | None:
    """The NetworkPolicy decision at a node's postrouting (None: no policy table there, or no pod involved)."""
    if at.kind != "node" or at.point != "postrouting":
        return None
    pods = getattr(ctx, "pods", {})
    if pkt.src not in pods and pkt.dst not in pods:
        return None
    rs = _rules(ctx, at.ns)
    t = policy.find(rs.tables)
    prio = policy.prio(t, at.point) if t is not None else None
    if t is None or prio is None:
        return None
    env = _env(ctx, at, pkt)
    flow = model.Flow(pkt.src, pkt.dst, pkt.proto, pkt.port, pkt.mark)
    before = model.evaluate([policy.Earlier(x, prio) for x in rs.tables if x is not t], at.point, flow, env)
    if before.verdict != "accept":
        return None  # something earlier stops it: the netfilter hook, next, says what
    pv = policy.walk(t, at.point, before.flow, env)
    if pv is None:
        return None
    who = lambda ip: _who(ctx, ip)  # noqa: E731
    text = words(pv, at.owner, who)
    detail = {"hook": at.point, "table": names.T, "node": at.owner, "verdict": pv.verdict, "netpol": pv.as_dict()}
    problem = None
    if pv.verdict != "accept":
        side = next((s for s in pv.sides if not s.allowed), None)
        why = side.words(who(side.subject)) if side else (pv.decided_by.words() if pv.decided_by else "?")
        problem = f"{at.owner} drops {pkt.text()} at {at.point} by NetworkPolicy: {why}"
    return NatStep(pkt, text, problem, detail)


# -- for trace --verify: the deciding rules' counters before and after the probe -----------------------------------
def deciding_rules(res: TraceResult) -> list[tuple[str, str, policy.RuleRef]]:
    """(node, netns, rule) of every NetworkPolicy rule that decided along the traced path."""
    out = []
    for h in res.hops:
        d = (h.detail or {}).get("netpol")
        if not d:
            continue
        for s in d["sides"]:
            r = s.get("decidedBy")
            if r and r.get("packets") is not None:
                out.append((h.at, h.ns, policy.RuleRef(r["chain"], r["handle"], r["comment"], r["rule"],
                                                       r["packets"], r["bytes"])))
    return out


def dropped_by_policy(res: TraceResult) -> bool:
    return any((h.detail or {}).get("netpol", {}).get("verdict") in ("drop", "reject") for h in res.hops)


def table_counters(ns: str) -> dict[tuple[str, int | None], policy.RuleRef] | None:
    """The counted rules of ``ns``'s NetworkPolicy table (None: no such table), listed terse: without the sets'
    elements, which a counter reading does not need and which are most of a big table's listing."""
    with netns.entered(ns):
        with Nft(json=True, terse=True) as n:
            try:
                text = n.run(f"list table {names.T}")
            except NftError:
                return None  # no policy table in this namespace
    t = policy.find(nft.parse_json(json.loads(text)) if text.strip() else [])
    return policy.counters(t) if t is not None else None


def read_counters(namespaces: set[str]) -> dict[str, dict[tuple[str, int | None], policy.RuleRef]]:
    return {ns: table_counters(ns) or {} for ns in namespaces}


def verify_words(res: TraceResult, before: dict, after: dict) -> list[str]:
    """One line per deciding rule: did its counter grow with the probe (the kernel took that rule)?"""
    lines = []
    for node, ns, rule in deciding_rules(res):
        key = (rule.chain, rule.handle)
        was, now = before.get(ns, {}).get(key), after.get(ns, {}).get(key)
        if now is None:
            lines.append(f"{node} chain {rule.chain} handle {rule.handle} is gone since the trace read it")
            continue
        delta = (now.packets or 0) - ((was.packets if was else rule.packets) or 0)
        what = f'{node} chain {now.chain} rule "{now.comment or now.text}" (handle {now.handle})'
        lines.append(f"{what}: counter {now.packets} packets, +{delta} with the probe"
                     + ("" if delta > 0 else " (did not move: the probe took another path)"))
    return lines
