"""kube-proxy's iptables mode, pure: the ``iptables-restore --noflush`` input that makes a node match a state.

The rules have kube-proxy's chains, order and comments (read from its proxier), so ``iptables-save`` on a lab
node reads like one from a real node:

* nat: ``PREROUTING``/``OUTPUT`` → ``KUBE-SERVICES``: per service port ``-d <ClusterIP> --dport <port> -j
  KUBE-SVC-…``, last ``-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS``; ``KUBE-NODEPORTS`` → ``KUBE-EXT-…`` (mark
  for masquerade, then ``KUBE-SVC-…``); ``KUBE-SVC-…`` marks traffic from outside the cluster CIDR, then picks
  endpoint i of N with ``-m statistic --mode random --probability 1/(N-i)`` (the last unconditionally; with
  ClientIP affinity first ``-m recent --rcheck`` per endpoint); ``KUBE-SEP-…`` marks hairpin traffic (source =
  the endpoint) and DNATs; ``POSTROUTING`` → ``KUBE-POSTROUTING`` masquerades packets carrying mark 0x4000.
* filter: ``KUBE-SERVICES``/``KUBE-EXTERNAL-SERVICES`` REJECT ports of services without endpoints (so clients
  get "connection refused" at once instead of a timeout), ``KUBE-FORWARD`` accepts marked and established
  traffic and drops INVALID.

One ``render`` call is one transaction. A *full* sync declares (and so flushes) every chain, adds the jumps
from the built-in chains that ``existing`` (parsed ``iptables-save``) lacks, and deletes KUBE service chains that
the state no longer needs; a *partial* sync rewrites the top-level chains plus the chains of the changed
services only (kube-proxy's "minimize iptables-restore"), deleting their stale chains from the previous state.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from emulator.services.proxy import names
from emulator.services.proxy.state import ProxyState, SvcKey, SvcPort

MASQ_MARK = "0x4000"
CANARY = "KUBE-PROXY-CANARY"
FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL")
NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
#: (table, kube chain, built-in chain, comment, extra match) in kube-proxy's order; each is inserted at the top.
JUMPS = (
    ("filter", "KUBE-EXTERNAL-SERVICES", "INPUT", "kubernetes externally-visible service portals", "-m conntrack --ctstate NEW"),
    ("filter", "KUBE-EXTERNAL-SERVICES", "FORWARD", "kubernetes externally-visible service portals", "-m conntrack --ctstate NEW"),
    ("filter", "KUBE-NODEPORTS", "INPUT", "kubernetes health check service ports", ""),
    ("filter", "KUBE-SERVICES", "FORWARD", "kubernetes service portals", "-m conntrack --ctstate NEW"),
    ("filter", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", "-m conntrack --ctstate NEW"),
    ("filter", "KUBE-FORWARD", "FORWARD", "kubernetes forwarding rules", ""),
    ("filter", "KUBE-PROXY-FIREWALL", "INPUT", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"),
    ("filter", "KUBE-PROXY-FIREWALL", "OUTPUT", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"),
    ("filter", "KUBE-PROXY-FIREWALL", "FORWARD", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"),
    ("nat", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", ""),
    ("nat", "KUBE-SERVICES", "PREROUTING", "kubernetes service portals", ""),
    ("nat", "KUBE-POSTROUTING", "POSTROUTING", "kubernetes postrouting rules", ""),
)


@dataclass
class Existing:
    """What ``iptables-save`` shows: chains per table and the (table, built-in, target) jumps present."""

    chains: dict[str, set[str]] = field(default_factory=dict)
    jumps: set[tuple[str, str, str]] = field(default_factory=set)

    def has_canary(self) -> bool:
        return all(CANARY in self.chains.get(t, set()) for t in ("mangle", "nat", "filter"))


def parse_save(text: str) -> Existing:
    ex = Existing()
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            ex.chains.setdefault(table, set())
        elif line.startswith(":"):
            ex.chains.setdefault(table, set()).add(line[1:].split()[0])
        elif line.startswith("-A "):
            parts = line.split()
            if "-j" in parts:
                target = parts[len(parts) - 1 - parts[::-1].index("-j") + 1]
                ex.jumps.add((table, parts[1], target))
    return ex


def q(text: str) -> str:
    return f'"{text}"' if " " in text else text


def probability(n: int) -> str:
    return f"{1.0 / n:0.10f}"


def service_chains(ports: tuple[SvcPort, ...] | list[SvcPort], node: str) -> set[str]:
    """Every nat chain the given service ports need on ``node`` (for stale-chain accounting)."""
    out: set[str] = set()
    for p in ports:
        if not p.endpoints:
            continue
        out.add(names.svc_chain(p))
        if p.node_port:
            out.add(names.ext_chain(p))
        if p.external_local and any(e.node == node for e in p.endpoints):
            out.add(names.svl_chain(p))
        out.update(names.sep_chain(p, e) for e in p.endpoints)
    return out


class _Writer:
    def __init__(self) -> None:
        self.filter_chains: list[str] = []
        self.filter_rules: list[str] = []
        self.nat_chains: list[str] = []
        self.nat_rules: list[str] = []

    def text(self, mangle: bool) -> str:
        out = []
        if mangle:
            out += ["*mangle", f":{CANARY} - [0:0]", "COMMIT"]
        out += ["*filter", *self.filter_chains, *self.filter_rules, "COMMIT",
                "*nat", *self.nat_chains, *self.nat_rules, "COMMIT"]
        return "\n".join(out) + "\n"


def _lb_rules(p: SvcPort, chain: str, eps: tuple) -> list[str]:
    out = []
    if p.affinity_seconds:
        for e in eps:
            sep = names.sep_chain(p, e)
            out.append(f'-A {chain} -m comment --comment "{p.spn} -> {e.addr}" -m recent --name {sep} '
                       f'--rcheck --seconds {p.affinity_seconds} --reap -j {sep}')
    n = len(eps)
    for i, e in enumerate(eps):
        stat = f" -m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
        out.append(f'-A {chain} -m comment --comment "{p.spn} -> {e.addr}"{stat} -j {names.sep_chain(p, e)}')
    return out


@functools.lru_cache(maxsize=16384)
def _top_lines(p: SvcPort, node: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The service port's rules in the top-level chains: (filter rules, nat rules). Cached: a partial sync
    rewrites these for every service, so unchanged services cost a dictionary lookup."""
    proto, dst = p.protocol, f"-m {p.protocol} -p {p.protocol} -d {p.cluster_ip} --dport {p.port}"
    filt: list[str] = []
    nat: list[str] = []
    if not p.endpoints:
        comment = q(f"{p.spn} has no endpoints")
        filt.append(f"-A KUBE-SERVICES -m comment --comment {comment} {dst} -j REJECT")
        if p.node_port:
            filt.append(f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {comment} -m addrtype --dst-type "
                        f"LOCAL -m {proto} -p {proto} --dport {p.node_port} -j REJECT")
        return tuple(filt), ()
    nat.append(f'-A KUBE-SERVICES -m comment --comment "{p.spn} cluster IP" {dst} -j {names.svc_chain(p)}')
    if p.node_port:
        nat.append(f"-A KUBE-NODEPORTS -m comment --comment {p.spn} -m {proto} -p {proto} "
                   f"--dport {p.node_port} -j {names.ext_chain(p)}")
        if p.external_local and not any(e.node == node for e in p.endpoints):
            filt.append(f'-A KUBE-EXTERNAL-SERVICES -m comment --comment "{p.spn} has no local endpoints" '
                        f"-m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {p.node_port} -j DROP")
    return tuple(filt), tuple(nat)


@functools.lru_cache(maxsize=16384)
def _chain_lines(p: SvcPort, node: str, cidr: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The service port's own chains: (declarations, rules)."""
    if not p.endpoints:
        return (), ()
    proto, dst = p.protocol, f"-m {p.protocol} -p {p.protocol} -d {p.cluster_ip} --dport {p.port}"
    local_eps = tuple(e for e in p.endpoints if e.node == node)
    svc, ext = names.svc_chain(p), names.ext_chain(p)
    chains = [f":{svc} - [0:0]"]
    rules = [f'-A {svc} -m comment --comment "{p.spn} cluster IP" {dst} ! -s {cidr} -j KUBE-MARK-MASQ']
    rules += _lb_rules(p, svc, p.endpoints)
    if p.node_port:
        chains.append(f":{ext} - [0:0]")
        if not p.external_local:
            rules += [f'-A {ext} -m comment --comment "masquerade traffic for {p.spn} external destinations" '
                      "-j KUBE-MARK-MASQ", f"-A {ext} -j {svc}"]
        else:
            svl = names.svl_chain(p)
            rules += [f'-A {ext} -m comment --comment "pod traffic for {p.spn} external destinations" '
                      f"-s {cidr} -j {svc}",
                      f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {p.spn} external destinations" '
                      "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                      f'-A {ext} -m comment --comment "route LOCAL traffic for {p.spn} external destinations" '
                      f"-m addrtype --src-type LOCAL -j {svc}"]
            if local_eps:
                rules.append(f"-A {ext} -j {svl}")
                chains.append(f":{svl} - [0:0]")
                rules += _lb_rules(p, svl, local_eps)
    for e in p.endpoints:
        sep = names.sep_chain(p, e)
        chains.append(f":{sep} - [0:0]")
        rules.append(f"-A {sep} -m comment --comment {p.spn} -s {e.ip} -j KUBE-MARK-MASQ")
        recent = f" -m recent --name {sep} --set" if p.affinity_seconds else ""
        rules.append(f"-A {sep} -m comment --comment {p.spn}{recent} -m {proto} -p {proto} "
                     f"-j DNAT --to-destination {e.addr}")
    return tuple(chains), tuple(rules)


def _service(w: _Writer, p: SvcPort, state: ProxyState, write_chains: bool) -> None:
    filt, nat = _top_lines(p, state.node)
    w.filter_rules += filt
    w.nat_rules += nat
    if write_chains:
        chains, rules = _chain_lines(p, state.node, state.cluster_cidr)
        w.nat_chains += chains
        w.nat_rules += rules


def render(state: ProxyState, changed: set[SvcKey] | None = None, previous: ProxyState | None = None,
           existing: Existing | None = None) -> str:
    """The restore input for a full sync (``changed`` None) or a partial one (the changed services)."""
    w = _Writer()
    full = changed is None
    w.filter_chains = [f":{c} - [0:0]" for c in FILTER_CHAINS]
    w.nat_chains = [f":{c} - [0:0]" for c in NAT_CHAINS]
    if full:
        w.filter_chains.append(f":{CANARY} - [0:0]")
        w.nat_chains.append(f":{CANARY} - [0:0]")
        have = existing.jumps if existing else set()
        for table, target, builtin, comment, extra in JUMPS:
            if (table, builtin, target) not in have:
                rule = f'-I {builtin} 1 {extra + " " if extra else ""}-m comment --comment "{comment}" -j {target}'
                (w.filter_rules if table == "filter" else w.nat_rules).append(rule)
    w.nat_rules += [f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
                    f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
                    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
                    "-j MASQUERADE --random-fully",
                    f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}"]
    for p in state.ports:
        _service(w, p, state, full or p.key in changed)
    if full:
        stale = {c for c in (existing.chains.get("nat", set()) if existing else set())
                 if names.is_service_chain(c)} - service_chains(state.ports, state.node)
    else:  # chain names embed the service port, so only the changed services' chains can have gone stale
        before = [p for p in (previous.ports if previous else ()) if p.key in changed]
        stale = (service_chains(before, state.node)
                 - service_chains([p for p in state.ports if p.key in changed], state.node))
    for c in sorted(stale):
        w.nat_chains.append(f":{c} - [0:0]")
        w.nat_rules.append(f"-X {c}")
    w.nat_rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
                       'last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS')
    w.filter_rules += ["-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
                       '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
                       f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
                       '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
                       "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    return w.text(mangle=full)
