"""The vocabulary of a netfilter walk, and the walk of one hook across every table that attaches to it.

A ``Flow`` is the first packet of a new connection (conntrack state NEW, the only time the nat chains are
consulted): addresses, protocol, destination port and the packet mark. ``Env`` is what the rules may ask about
the namespace: its own addresses (``-m addrtype --dst-type LOCAL``, ``fib daddr type local``), the devices the
packet came in and goes out on, the address MASQUERADE would pick, and the ``xt_recent`` lists (ClientIP
affinity in iptables mode).

A table (``iptables.Table``, ``nft.Table``) lists the base chains it attaches at a hook and walks one of them.
The walk returns ``Branch`` es: one, unless a rule chooses at random (``-m statistic --mode random``, ``numgen
random``); then one per outcome with its probability, so a Service's endpoints are all listed with their odds.
``evaluate`` does what the kernel does at one hook: the base chains of every table in priority order, each
seeing the packet as the previous left it; a chain's ACCEPT ends that chain only, DROP/REJECT end the packet; of
the nat chains only the first that translates counts (the kernel makes one NAT binding per direction and
connection). ``choose`` picks the branch the trace follows: the endpoint asked for, else the likeliest, the
first in rule order among equals.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Mapping, Protocol

HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
MAX_BRANCHES = 512  # a walk that splits further than this is cut (and says so)


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    proto: str  # icmp | tcp | udp
    dport: int | None = None
    mark: int = 0

    def dst_text(self) -> str:
        return f"{self.dst}:{self.dport}" if self.dport else self.dst


@dataclass(frozen=True)
class Env:
    hook: str
    local: frozenset[str] = frozenset()
    in_dev: str | None = None
    out_dev: str | None = None
    masq_source: str | None = None  # the source MASQUERADE would give the packet (its out device's address)
    recent: Mapping[str, frozenset[str]] = field(default_factory=dict)  # xt_recent list -> sources in it

    def is_local(self, ip: str) -> bool:
        return ip in self.local or ipaddress.IPv4Address(ip) in LOOPBACK


@dataclass(frozen=True)
class Branch:
    """One way through a chain (and, while walking, the state so far)."""

    probability: float
    flow: Flow
    chains: tuple[str, ...]
    jumps: tuple[str, ...] = ()  # the rule that jumped (or went) into each chain after the first
    verdict: str | None = None  # accept | drop | reject; None: returned to the caller / fell off the end
    nat: str | None = None  # dnat | snat | masquerade
    rule: str = ""  # the rule that decided, as the tool prints it
    comment: str = ""
    marked_by: tuple[str, ...] = ()  # the chains that changed the mark on the way
    notes: tuple[str, ...] = ()

    def note(self, text: str) -> "Branch":
        return self if text in self.notes else replace(self, notes=self.notes + (text,))

    def enter(self, chain: str, by: str) -> "Branch":
        return replace(self, chains=self.chains + (chain,), jumps=self.jumps + (by,))

    def back(self, caller: "Branch") -> "Branch":
        """Returned to ``caller``'s chain: the path is the caller's again."""
        return replace(self, chains=caller.chains, jumps=caller.jumps)


@dataclass(frozen=True)
class BaseChain:
    name: str
    type: str  # nat | filter
    prio: int
    policy: str = "accept"


class ChainWalk:
    """What walking chains means in both iptables and nftables: ``_run`` takes a chain's rules in order from
    ``start`` until one ends the walk (its ``_rule`` returns branches); ``_jump`` enters a chain and, for a jump,
    goes on in the caller after each branch that came back. A subclass says how rules are stored (``_rules``)
    and what one rule does (``_rule``: the branches if it ended the chain, else None, and the state after it)."""

    source = ""
    max_depth = 64

    def _rules(self, chain: str) -> list | None:
        raise NotImplementedError

    def _rule(self, rule, chain: str, i: int, st: Branch, env: Env, depth: int
              ) -> tuple[list[Branch] | None, Branch]:
        raise NotImplementedError

    def walk(self, chain: str, flow: Flow, env: Env) -> list[Branch]:
        return self._run(chain, 0, Branch(1.0, flow, (chain,)), env, 0)

    def _run(self, chain: str, start: int, st: Branch, env: Env, depth: int) -> list[Branch]:
        if depth > self.max_depth:
            return [st.note(f"jumps nested deeper than {self.max_depth} at {chain}: walk stopped")]
        rules = self._rules(chain)
        if rules is None:
            return [st.note(f"chain {chain} does not exist in {self.source}")]
        for i in range(start, len(rules)):
            out, st = self._rule(rules[i], chain, i, st, env, depth)
            if out is not None:
                return out[:MAX_BRANCHES]
        return [st]

    def _jump(self, target: str, goto: bool, by: str, chain: str, i: int, st: Branch, env: Env, depth: int
              ) -> list[Branch]:
        sub = self._run(target, 0, st.enter(target, by), env, depth + 1)
        if goto:  # the end of a goto'ed chain returns to the caller's caller
            return sub
        out: list[Branch] = []
        for b in sub:
            out += [b] if b.verdict else self._run(chain, i + 1, b.back(st), env, depth)
        return out


class Table(Protocol):
    source: str  # "iptables nat", "nft table ip kube-proxy": where the rules were read

    def base_chains(self, hook: str) -> list[BaseChain]: ...

    def walk(self, chain: str, flow: Flow, env: Env) -> list[Branch]: ...


@dataclass(frozen=True)
class Decision:
    """What one base chain did that matters (a NAT, a drop or reject, a mark), and what else it could have done."""

    source: str
    base: BaseChain
    chosen: Branch
    verdict: str
    before: Flow
    alternatives: tuple[Branch, ...] = ()

    def as_dict(self) -> dict:
        c = self.chosen
        d = {"table": self.source, "chain": self.base.name, "verdict": self.verdict, "nat": c.nat,
             "chains": list(c.chains), "jumps": list(c.jumps), "rule": c.rule, "comment": c.comment,
             "probability": round(c.probability, 4),
             "from": {"src": self.before.src, "dst": self.before.dst_text()},
             "to": {"src": c.flow.src, "dst": c.flow.dst_text()}, "mark": hex(c.flow.mark),
             "markedBy": list(c.marked_by), "notes": list(c.notes)}
        d["alternatives"] = [{"dst": a.flow.dst_text(), "src": a.flow.src, "nat": a.nat, "verdict": a.verdict,
                              "probability": round(a.probability, 4), "chains": list(a.chains)}
                             for a in self.alternatives]
        return d


@dataclass(frozen=True)
class HookResult:
    flow: Flow
    verdict: str  # accept | drop | reject
    decisions: tuple[Decision, ...] = ()

    @property
    def dnat(self) -> Decision | None:
        return next((d for d in self.decisions if d.chosen.nat == "dnat"), None)


def choose(branches: list[Branch], prefer: str | None = None) -> Branch:
    """The branch to follow: one that DNATs to ``prefer`` (``ip`` or ``ip:port``) if any, else the likeliest."""
    if prefer:
        for b in branches:
            if b.nat == "dnat" and prefer in (b.flow.dst, b.flow.dst_text()):
                return b
    best = branches[0]
    for b in branches[1:]:
        if b.probability > best.probability + 1e-9:
            best = b
    return best


def _outcome(b: Branch) -> tuple:
    return (b.flow, b.verdict, b.nat)


def merge(branches: list[Branch]) -> list[Branch]:
    """Branches with the same outcome as one (their probabilities added), in first-seen order."""
    out: dict[tuple, Branch] = {}
    for b in branches:
        k = _outcome(b)
        out[k] = replace(out[k], probability=out[k].probability + b.probability) if k in out else b
    return list(out.values())


def evaluate(tables: list[Table], hook: str, flow: Flow, env: Env, prefer: str | None = None) -> HookResult:
    """Every base chain at ``hook``, in priority order (ties: in the order ``tables`` lists them)."""
    bases = sorted(((b.prio, i, b) for i, t in enumerate(tables) for b in t.base_chains(hook)),
                   key=lambda x: (x[0], x[1]))
    decisions: list[Decision] = []
    translated = False
    for _, i, base in bases:
        if base.type == "nat" and translated:
            continue
        branches = merge(tables[i].walk(base.name, flow, env))
        chosen = choose(branches, prefer)
        verdict = chosen.verdict or base.policy
        if chosen.nat or verdict != "accept" or chosen.flow.mark != flow.mark or len(branches) > 1:
            decisions.append(Decision(tables[i].source, base, chosen, verdict, flow,
                                      tuple(b for b in branches if b is not chosen)))
        flow = chosen.flow
        translated = translated or chosen.nat is not None
        if verdict != "accept":
            return HookResult(flow, verdict, tuple(decisions))
    return HookResult(flow, "accept", tuple(decisions))


def in_net(ip: str, net: str) -> bool:
    try:
        return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(net, strict=False)
    except ValueError:
        return False
