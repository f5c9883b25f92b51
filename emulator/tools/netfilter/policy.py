"""A node's NetworkPolicy table as the kernel holds it, walked for one packet: which policy and rule decided.

The table is ``inet kube-network-policies`` (``emulator.netpol.names``), read like every other table a trace walks
(``ruleset.read``: ``nft -j list ruleset`` in the node's namespace). ``walk`` runs its base chain for one new
packet with the same walker as every nft table (``nft.Table``), but logs every rule whose verdict the packet
reaches — the jumps into policy chains included, which the plain walk forgets once they return — and ``read_log``
turns that log into what a student asks: for each direction checked on this node, was the pod isolated, by which
policies (the dispatch chain's ``jump`` rules, commented with the policy's ``<namespace>/<name>``), and which rule
decided (its chain, comment, handle and its packet counter as the kernel counts it). Nothing here is recomputed
from the policies: a rule removed by hand, a set missing a pod, a policy the enforcer has not synced yet, all show
as the kernel would act on them.

``counters`` lists every counted rule of the table (chain, handle, comment → packets, bytes): ``capture`` and
``trace --verify`` read it before and after traffic, and a counter that grew is the kernel saying which rule took
the packets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from emulator.netpol import names
from emulator.tools.netfilter import nft
from emulator.tools.netfilter.model import Branch, Env, Flow, Table

DISPATCH = {names.EGRESS_CHAIN: "Egress", names.INGRESS_CHAIN: "Ingress"}


def find(tables: list[Table]) -> nft.Table | None:
    """The NetworkPolicy table among a namespace's tables (None: no enforcer here)."""
    return next((t for t in tables if isinstance(t, nft.Table) and (t.family, t.name) == (names.FAMILY, names.TABLE)),
                None)


def direction_of(chain: str) -> str | None:
    """``Egress``/``Ingress`` for the dispatch chains and the policy chains (``ingress-<H>-<ns>/<name>``)."""
    for prefix, d in DISPATCH.items():
        if chain == prefix or chain.startswith(prefix + "-"):
            return d
    return None


def counter_of(rule: dict) -> tuple[int, int] | None:
    for e in rule.get("expr", []):
        if "counter" in e and isinstance(e["counter"], dict):
            return int(e["counter"].get("packets", 0)), int(e["counter"].get("bytes", 0))
    return None


def verdict_of(rule: dict) -> tuple[str, str | None]:
    """The rule's verdict statement: (kind, target) — ("jump", "ingress-…"), ("drop", None), ..."""
    for e in rule.get("expr", []):
        kind, arg = next(iter(e.items()))
        if kind in ("jump", "goto"):
            return kind, arg["target"]
        if kind in ("accept", "drop", "reject", "return", "continue"):
            return kind, None
    return "", None


@dataclass(frozen=True)
class RuleRef:
    """One rule of the table, as ``nft -a list`` shows it: chain, handle, comment, the rule, its counter."""

    chain: str
    handle: int | None
    comment: str
    text: str
    packets: int | None = None
    bytes: int | None = None

    @classmethod
    def of(cls, rule: dict) -> "RuleRef":
        c = counter_of(rule)
        return cls(rule["chain"], rule.get("handle"), rule.get("comment", ""), nft.render(rule),
                   c[0] if c else None, c[1] if c else None)

    def words(self) -> str:
        what = f'rule "{self.comment}"' if self.comment else f"rule `{self.text}`"
        count = f", counter {self.packets} packets so far" if self.packets is not None else ""
        return f"chain {self.chain} {what} (handle {self.handle}{count})"

    def as_dict(self) -> dict:
        return {"chain": self.chain, "handle": self.handle, "comment": self.comment, "rule": self.text,
                "packets": self.packets, "bytes": self.bytes}


@dataclass
class Side:
    """One direction checked on this node: ``isolated_by`` the policies whose chains the packet entered."""

    direction: str  # Egress | Ingress
    subject: str  # the pod's address (source for egress, destination for ingress)
    isolated: bool = False
    isolated_by: list[str] = field(default_factory=list)
    decided_by: RuleRef | None = None  # the policy rule that admitted it, or the drop rule
    allowed: bool = True

    def words(self, who: str) -> str:
        head = f"{self.direction.lower()} of {who}"
        if not self.isolated:
            return f"{head}: not isolated (no NetworkPolicy selects it for {self.direction})"
        by = ", ".join(self.isolated_by) or "?"
        if self.allowed:
            return f"{head}: isolated by {by}; admitted by {self.decided_by.words() if self.decided_by else '?'}"
        none = "no rule of theirs admits it" if self.isolated_by else "no policy chain here admits it"
        return f"{head}: isolated by {by}; {none}: DROP by {self.decided_by.words() if self.decided_by else '?'}"

    def as_dict(self) -> dict:
        return {"direction": self.direction, "pod": self.subject, "isolated": self.isolated,
                "isolatedBy": list(self.isolated_by), "allowed": self.allowed,
                "decidedBy": self.decided_by.as_dict() if self.decided_by else None}


@dataclass
class PolicyVerdict:
    """What the NetworkPolicy table did to one packet on one node."""

    verdict: str  # accept | drop | reject
    sides: list[Side] = field(default_factory=list)
    exempt: RuleRef | None = None  # accepted before any policy: established, or from the node itself
    decided_by: RuleRef | None = None  # the rule whose verdict ended the walk (None: fell off, policy accept)
    log: list[RuleRef] = field(default_factory=list)

    @property
    def selected(self) -> bool:
        """Did some policy on this node select either end of the packet?"""
        return bool(self.sides) or self.exempt is not None

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "sides": [s.as_dict() for s in self.sides],
                "exempt": self.exempt.as_dict() if self.exempt else None,
                "decidedBy": self.decided_by.as_dict() if self.decided_by else None,
                "rulesMatched": [r.as_dict() for r in self.log]}


class LoggedTable(nft.Table):
    """``nft.Table`` that logs every rule whose verdict the packet reaches, in order."""

    def __init__(self, t: nft.Table) -> None:
        super().__init__(t.family, t.name)
        self.chains, self.maps, self.sets = t.chains, t.maps, t.sets
        self.log: list[dict] = []

    def _verdict(self, v: dict, rule: dict, chain: str, i: int, st: Branch, env: Env, depth: int
                 ) -> list[Branch] | None:
        self.log.append(rule)
        return super()._verdict(v, rule, chain, i, st, env, depth)


def read_log(rules: list[dict], verdict: str) -> PolicyVerdict:
    """The log of one walk (the rules whose verdict was reached, in order) in a policy's words."""
    pv = PolicyVerdict(verdict, log=[RuleRef.of(r) for r in rules])
    sides: dict[str, Side] = {}
    for rule, ref in zip(rules, pv.log):
        chain = rule["chain"]
        kind, target = verdict_of(rule)
        d = direction_of(chain)
        if d is None:  # the base chain: exemptions, or the dispatch into egress/ingress
            if kind == "accept":
                pv.exempt = ref
            continue
        side = sides.setdefault(d, Side(d, ""))
        if chain in DISPATCH:
            if kind == "jump" and target and direction_of(target) == d:
                side.isolated = True
                side.isolated_by.append(ref.comment or target)
            elif kind in ("drop", "reject"):
                side.isolated, side.allowed, side.decided_by = True, False, ref
            # the first rule (``!= @…-isolated-v4``: goto ingress / accept) leaves the side not isolated
        elif kind in ("accept", "goto", "jump"):  # a policy chain's rule admitted it
            side.isolated, side.decided_by = True, ref
    pv.sides = [sides[d] for d in ("Egress", "Ingress") if d in sides]
    pv.decided_by = pv.log[-1] if pv.log and verdict_of(rules[-1])[0] in ("accept", "drop", "reject") else None
    return pv


def walk(t: nft.Table, hook: str, flow: Flow, env: Env) -> PolicyVerdict | None:
    """Walk the table's base chain(s) at ``hook`` (None: the table has none there)."""
    bases = t.base_chains(hook)
    if not bases:
        return None
    lt = LoggedTable(t)
    verdict = "accept"
    for base in sorted(bases, key=lambda b: b.prio):
        b = lt.walk(base.name, flow, env)[0]
        verdict = b.verdict or base.policy
        if verdict != "accept":
            break
    pv = read_log(lt.log, verdict)
    for s in pv.sides:
        s.subject = flow.src if s.direction == "Egress" else flow.dst
    return pv


def prio(t: nft.Table, hook: str) -> int | None:
    return min((b.prio for b in t.base_chains(hook)), default=None)


class Earlier:
    """A table reduced to its base chains that run before priority ``below`` (to walk what precedes the policy)."""

    def __init__(self, t: Table, below: int) -> None:
        self.t, self.below, self.source = t, below, t.source

    def base_chains(self, hook: str):
        return [b for b in self.t.base_chains(hook) if b.prio < self.below]

    def walk(self, chain: str, flow: Flow, env: Env) -> list[Branch]:
        return self.t.walk(chain, flow, env)


def counters(t: nft.Table) -> dict[tuple[str, int | None], RuleRef]:
    """Every counted rule of the table: (chain, handle) → the rule with its counter."""
    out = {}
    for c in t.chains.values():
        for r in c.rules:
            if counter_of(r) is not None:
                ref = RuleRef.of(r)
                out[(ref.chain, ref.handle)] = ref
    return out


def grown(before: dict[tuple[str, int | None], RuleRef], after: dict[tuple[str, int | None], RuleRef]
          ) -> list[tuple[RuleRef, int]]:
    """The rules whose counter grew between two readings, with the growth (a rule new since: all of it)."""
    out = []
    for key, ref in after.items():
        was = before.get(key)
        delta = (ref.packets or 0) - ((was.packets or 0) if was else 0)
        if delta > 0:
            out.append((ref, delta))
    return out


__all__ = ["Earlier", "LoggedTable", "PolicyVerdict", "RuleRef", "Side", "counters", "find", "grown", "prio",
           "read_log", "walk"]
