"""kube-proxy's nftables mode, pure: the ``nft -f`` transaction that makes a node's ``ip kube-proxy`` table match.

One table, ``ip kube-proxy``, with kube-proxy's structure (read from its nftables proxier): base chains
``filter-prerouting/input/forward/output`` (priority dstnat - 10 = -110) and ``nat-prerouting/output``
(dstnat, -100), ``nat-postrouting`` (srcnat, 100); dispatch through verdict maps instead of rule lists: ``service-ips``
(``ip daddr . meta l4proto . th dport`` → ``goto service-…``), ``service-nodeports`` (for local destinations),
``no-endpoint-services``/``no-endpoint-nodeports`` (→ ``goto reject-chain``, checked from ``endpoints-check``
for new connections); per service port a ``service-<hash>-ns/name/proto/port`` chain choosing an endpoint with
``numgen random mod N vmap {0 : goto endpoint-…, …}`` (ClientIP affinity: ``ip saddr @affinity-… goto …`` first,
and ``update @affinity-… { ip saddr }`` in the endpoint chain), ``external-…`` chains that mark NodePort traffic
for ``masquerading`` (mark 0x4000, ``masquerade fully-random``), and ``endpoint-…`` chains that mark hairpin
traffic and ``dnat to ip:port``.

A full sync (re)declares the whole table in one transaction: everything is added (idempotent), flushed and
refilled, and chains and sets no longer wanted (``existing``, from ``nft list``) are deleted. A partial sync
only touches the changed services: their map elements from ``previous`` are deleted, the new ones added, their
chains rewritten, their stale sets deleted and their stale chains flushed (a later transaction deletes them,
see ``render``); anything it expects that is missing makes ``nft`` fail, and the caller falls back to a full
sync.
"""
from __future__ import annotations

from emulator.services.proxy import names
from emulator.services.proxy.iptables import MASQ_MARK
from emulator.services.proxy.state import ProxyState, SvcKey, SvcPort

TABLE = "kube-proxy"
T = f"ip {TABLE}"
#: Priorities as numbers (dstnat = -100, srcnat = 100): nft only knows the names on some hooks.
BASE_CHAINS = (("filter-prerouting", "filter", "prerouting", "-110"),
               ("filter-input", "filter", "input", "-110"),
               ("filter-forward", "filter", "forward", "-110"),
               ("filter-output", "filter", "output", "-110"),
               ("nat-prerouting", "nat", "prerouting", "-100"),
               ("nat-output", "nat", "output", "-100"),
               ("nat-postrouting", "nat", "postrouting", "100"))
JUMPS = (("endpoints-check", "filter-input", "ct state new"), ("endpoints-check", "filter-forward", "ct state new"),
         ("endpoints-check", "filter-output", "ct state new"), ("firewall-check", "filter-prerouting", "ct state new"),
         ("firewall-check", "filter-output", "ct state new"), ("services", "nat-output", ""),
         ("services", "nat-prerouting", ""), ("masquerading", "nat-postrouting", ""))
MAPS = (("no-endpoint-services", "ipv4_addr . inet_proto . inet_service : verdict",
         "vmap to drop or reject packets to services with no endpoints"),
        ("no-endpoint-nodeports", "inet_proto . inet_service : verdict",
         "vmap to drop or reject packets to service nodeports with no endpoints"),
        ("firewall-ips", "ipv4_addr . inet_proto . inet_service : verdict",
         "destinations that are subject to LoadBalancerSourceRanges"),
        ("service-ips", "ipv4_addr . inet_proto . inet_service : verdict",
         "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
        ("service-nodeports", "inet_proto . inet_service : verdict", "NodePort traffic"))
NO_LOCALHOST = "ip daddr != 127.0.0.0/8"


def _chain(lines: list[str], name: str) -> None:
    lines += [f"add chain {T} {name}", f"flush chain {T} {name}"]


def setup(lines: list[str]) -> None:
    """The table, base chains, jumps, helper chains, maps and their dispatch rules (kube-proxy's setupNFTables)."""
    lines.append(f'add table {T} {{ comment "rules for kube-proxy" ; }}')
    for name, kind, hook, prio in BASE_CHAINS:
        lines += [f"add chain {T} {name} {{ type {kind} hook {hook} priority {prio} ; }}", f"flush chain {T} {name}"]
    made: set[str] = set()
    for dst, src, extra in JUMPS:
        if dst not in made:
            _chain(lines, dst)
            made.add(dst)
        lines.append(f"add rule {T} {src} {extra + ' ' if extra else ''}jump {dst}")
    for name in ("mark-for-masquerade",):
        _chain(lines, name)
    lines += [f"add rule {T} mark-for-masquerade mark set mark or {MASQ_MARK}",
              f"add rule {T} masquerading mark and {MASQ_MARK} == 0 return",
              f"add rule {T} masquerading mark set mark xor {MASQ_MARK}",
              f"add rule {T} masquerading masquerade fully-random",
              f'add set {T} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}',
              f"delete set {T} nodeport-ips"]
    for name, typ, comment in MAPS:
        lines.append(f'add map {T} {name} {{ type {typ} ; comment "{comment}" ; }}')
    lines += [f'add chain {T} reject-chain {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}',
              f"flush chain {T} reject-chain", f"add rule {T} reject-chain reject",
              f"add rule {T} endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
              f"add rule {T} endpoints-check fib daddr type local {NO_LOCALHOST} meta l4proto . th dport "
              "vmap @no-endpoint-nodeports",
              f"add rule {T} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
              f"add rule {T} services ip daddr . meta l4proto . th dport vmap @service-ips",
              f"add rule {T} services fib daddr type local {NO_LOCALHOST} meta l4proto . th dport "
              "vmap @service-nodeports"]


def elements(p: SvcPort, node: str) -> list[tuple[str, str, str]]:
    """(map, key, verdict) entries of one service port."""
    out = []
    local = [e for e in p.endpoints if e.node == node]
    key = f"{p.cluster_ip} . {p.protocol} . {p.port}"
    if p.endpoints:
        out.append(("service-ips", key, f"goto {names.nft_service(p)}"))
        if p.node_port:
            out.append(("service-nodeports", f"{p.protocol} . {p.node_port}", f"goto {names.nft_external(p)}"))
            if p.external_local and not local:
                out.append(("no-endpoint-nodeports", f"{p.protocol} . {p.node_port}", "drop"))
    else:
        out.append(("no-endpoint-services", key, "goto reject-chain"))
        if p.node_port:
            out.append(("no-endpoint-nodeports", f"{p.protocol} . {p.node_port}", "goto reject-chain"))
    return out


def chains_of(p: SvcPort, node: str) -> set[str]:
    if not p.endpoints:
        return set()
    out = {names.nft_service(p)} | {names.nft_endpoint(p, e) for e in p.endpoints}
    if p.node_port:
        out.add(names.nft_external(p))
        if p.external_local and any(e.node == node for e in p.endpoints):
            out.add(names.nft_local(p))
    return out


def sets_of(p: SvcPort) -> set[str]:
    return {names.nft_affinity(p, e) for e in p.endpoints} if p.affinity_seconds and p.endpoints else set()


def _dispatch(lines: list[str], p: SvcPort, chain: str, eps: tuple) -> None:
    if p.affinity_seconds:
        for e in eps:
            lines.append(f"add rule {T} {chain} ip saddr @{names.nft_affinity(p, e)} goto {names.nft_endpoint(p, e)}")
    vmap = " , ".join(f"{i} : goto {names.nft_endpoint(p, e)}" for i, e in enumerate(eps))
    lines.append(f"add rule {T} {chain} numgen random mod {len(eps)} vmap {{ {vmap} }}")


def service_rules(lines: list[str], p: SvcPort, state: ProxyState) -> None:
    if not p.endpoints:
        return
    svc = names.nft_service(p)
    local = tuple(e for e in p.endpoints if e.node == state.node)
    for e in p.endpoints:
        _chain(lines, names.nft_endpoint(p, e))
    for s in sorted(sets_of(p)):
        lines.append(f"add set {T} {s} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {p.affinity_seconds}s ; }}")
    _chain(lines, svc)
    lines.append(f"add rule {T} {svc} ip daddr {p.cluster_ip} {p.protocol} dport {p.port} "
                 f"ip saddr != {state.cluster_cidr} jump mark-for-masquerade")
    _dispatch(lines, p, svc, p.endpoints)
    if p.node_port:
        ext = names.nft_external(p)
        _chain(lines, ext)
        if not p.external_local:
            lines += [f"add rule {T} {ext} jump mark-for-masquerade", f"add rule {T} {ext} goto {svc}"]
        else:
            lines += [f'add rule {T} {ext} ip saddr {state.cluster_cidr} goto {svc} comment "short-circuit pod traffic"',
                      f'add rule {T} {ext} fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
                      f'add rule {T} {ext} fib saddr type local goto {svc} comment "short-circuit local traffic"']
            if local:
                loc = names.nft_local(p)
                _chain(lines, loc)
                _dispatch(lines, p, loc, local)
                lines.append(f"add rule {T} {ext} goto {loc}")
    for e in p.endpoints:
        ep = names.nft_endpoint(p, e)
        lines.append(f"add rule {T} {ep} ip saddr {e.ip} jump mark-for-masquerade")
        if p.affinity_seconds:
            lines.append(f"add rule {T} {ep} update @{names.nft_affinity(p, e)} {{ ip saddr }}")
        lines.append(f"add rule {T} {ep} meta l4proto {p.protocol} dnat to {e.addr}")


def wanted_chains(state: ProxyState, changed: set[SvcKey] | None) -> set[str]:
    """Chains the services in scope (all, or the changed ones) need."""
    ports = state.ports if changed is None else [p for p in state.ports if p.key in changed]
    return set().union(*(chains_of(p, state.node) for p in ports))


def stale_chains(state: ProxyState, changed: set[SvcKey] | None, previous: ProxyState | None,
                 existing_chains: set[str] | None) -> set[str]:
    """Service chains the state no longer needs (from ``nft list`` on a full sync, else from ``previous``: chain
    names embed the service port, so only the changed services' chains can have gone stale)."""
    wanted = wanted_chains(state, changed)
    if changed is None:
        return {c for c in existing_chains or set() if "/" in c} - wanted
    before = [p for p in (previous.ports if previous else ()) if p.key in changed]
    return set().union(*(chains_of(p, state.node) for p in before)) - wanted


def render(state: ProxyState, changed: set[SvcKey] | None = None, previous: ProxyState | None = None,
           existing_chains: set[str] | None = None, existing_sets: set[str] | None = None,
           delete_chains: set[str] | frozenset[str] = frozenset()) -> str:
    """``nft -f`` input: a full sync (``changed`` None) or a partial one for the changed services.

    Stale chains are only flushed: the kernel still counts a reference from an anonymous verdict map flushed in
    the same transaction, so a chain can only be deleted by a later transaction (``delete_chains``, those stale
    for a while; kube-proxy waits a second too).
    """
    lines: list[str] = []
    full = changed is None
    scope = state.ports if full else [p for p in state.ports if p.key in changed]
    wanted = wanted_chains(state, changed)
    wanted_sets: set[str] = set().union(*(sets_of(p) for p in scope))
    if full:
        setup(lines)
        for name, _, _ in MAPS:
            lines.append(f"flush map {T} {name}")
        todo = list(state.ports)
        stale_sets = {s for s in existing_sets or set() if s.startswith("affinity-")} - wanted_sets
    else:
        before = [p for p in (previous.ports if previous else ()) if p.key in changed]
        for p in before:
            for m, k, _ in elements(p, state.node):
                lines.append(f"delete element {T} {m} {{ {k} }}")
        todo = [p for p in state.ports if p.key in changed]
        stale_sets = set().union(*(sets_of(p) for p in before)) - wanted_sets
    for p in todo:  # chains first: a map element may only point at a chain that exists
        service_rules(lines, p, state)
        for m, k, v in elements(p, state.node):
            lines.append(f"add element {T} {m} {{ {k} : {v} }}")
    stale = stale_chains(state, changed, previous, existing_chains)
    for c in sorted(stale - set(delete_chains)):
        lines.append(f"flush chain {T} {c}")
    for c in sorted(set(delete_chains) - wanted):
        lines += [f"flush chain {T} {c}", f"delete chain {T} {c}"]
    for name in sorted(stale_sets):
        lines.append(f"delete set {T} {name}")
    return "\n".join(lines) + "\n"
