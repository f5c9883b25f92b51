"""A ``NodeState`` as ``nft -f`` input: the whole table, or the difference from the state applied before.

Either way it is one transaction (libnftables commits a buffer as one). A full sync does what
kube-network-policies does (add, delete and add the table: whatever was in it is gone, including rules added or
removed by hand), then declares every set with its elements, every chain, and the rules. A partial sync
changes only what differs from ``previous``, in an order the kernel accepts within one transaction: new sets
(with elements) and new chains first, element additions and removals for kept sets, changed chains flushed and
refilled (the dispatch chains first, so nothing still jumps to a chain about to go), then removed chains flushed
and deleted, removed sets deleted. ``rule_text`` is how one rule reads in ``nft list ruleset`` (nft prints it
back in its own canonical spelling, which is why the health check compares rule *comments* and counts).
"""
from __future__ import annotations

from emulator.netpol import names
from emulator.netpol.nodestate import BASE_RULES, NftRule, NodeState

T = names.T


def _match_text(m: tuple) -> str:
    kind = m[0]
    if kind == "ct":
        return "ct state established,related"
    if kind == "fiblocal":
        return "fib saddr type local"
    if kind == "addr":
        _, side, neg, value = m
        return f"ip {side} {'!= ' if neg else ''}{value}"
    if kind == "except":
        _, side, cidrs = m
        return f"ip {side} != {{ {', '.join(cidrs)} }}"
    if kind == "protos":
        protos = m[1]
        return f"meta l4proto {protos[0]}" if len(protos) == 1 else f"meta l4proto {{ {', '.join(protos)} }}"
    if kind == "ports":
        items = ", ".join(f"{proto} . {lo}" if lo == hi else f"{proto} . {lo}-{hi}" for proto, lo, hi in m[1])
        return f"meta l4proto . th dport {{ {items} }}"
    if kind == "named":
        return f"ip daddr . meta l4proto . th dport @{m[1]}"
    raise ValueError(f"unknown match {m!r}")


def rule_text(r: NftRule) -> str:
    parts = [_match_text(m) for m in r.matches]
    if r.counter:
        parts.append("counter")
    parts.append(r.verdict)
    if r.comment:
        parts.append(f'comment "{r.comment}"')
    return " ".join(parts)


def _set_lines(lines: list[str], name: str, state: NodeState) -> None:
    d = state.sets[name]
    lines.append(f'add set {T} {name} {{ type {d.type} ;' + (f' comment "{d.comment}" ;' if d.comment else "") + " }")
    _elements(lines, "add", name, state.elements.get(name, frozenset()))


def _elements(lines: list[str], verb: str, name: str, els) -> None:
    els = sorted(els)
    for i in range(0, len(els), 1000):
        lines.append(f"{verb} element {T} {name} {{ {', '.join(els[i:i + 1000])} }}")


def _rules(lines: list[str], chain: str, rules) -> None:
    for r in rules:
        lines.append(f"add rule {T} {chain} {rule_text(r)}")


def full(state: NodeState) -> str:
    lines = [f'add table {T}', f"delete table {T}",
             f'add table {T} {{ comment "NetworkPolicy of node {state.node} (podlab, after kube-network-policies)" ; }}']
    for name in state.sets:
        _set_lines(lines, name, state)
    lines.append(f"add chain {T} {names.BASE_CHAIN} {{ type filter hook postrouting priority {names.BASE_PRIORITY} ;"
                 " policy accept ; }")
    for chain in state.chains:
        lines.append(f"add chain {T} {chain}")
    _rules(lines, names.BASE_CHAIN, BASE_RULES)
    for chain, rules in state.chains.items():
        _rules(lines, chain, rules)
    return "\n".join(lines) + "\n"


def diff(state: NodeState, previous: NodeState) -> str:
    """The partial transaction from ``previous`` to ``state`` ('' when nothing differs)."""
    lines: list[str] = []
    for name in state.sets:
        if name not in previous.sets:
            _set_lines(lines, name, state)
    for chain in state.chains:
        if chain not in previous.chains:
            lines.append(f"add chain {T} {chain}")
    for name in state.sets:
        if name in previous.sets:
            have, want = previous.elements.get(name, frozenset()), state.elements.get(name, frozenset())
            if have is want:
                continue
            if have - want:
                _elements(lines, "delete", name, have - want)
            if want - have:
                _elements(lines, "add", name, want - have)
    changed = [c for c in state.chains if c in previous.chains and previous.chains[c] != state.chains[c]]
    dispatch = [c for c in changed if c in (names.EGRESS_CHAIN, names.INGRESS_CHAIN)]
    for chain in dispatch + [c for c in changed if c not in dispatch]:
        lines.append(f"flush chain {T} {chain}")
        _rules(lines, chain, state.chains[chain])
    for chain in state.chains:
        if chain not in previous.chains:
            _rules(lines, chain, state.chains[chain])
    for chain in previous.chains:
        if chain not in state.chains:
            lines += [f"flush chain {T} {chain}", f"delete chain {T} {chain}"]
    for name in previous.sets:
        if name not in state.sets:
            lines.append(f"delete set {T} {name}")
    return "\n".join(lines) + "\n" if lines else ""
