"""iptables' nat and filter tables as ``iptables-save`` prints them, parsed and walked for one new packet.

``parse_save`` reads the text (``*table``, ``:CHAIN POLICY``, ``-A CHAIN ...``) into tables of chains of rules;
a rule keeps its text (shown to the student as the rule that decided), its matches grouped by module (``-m
tcp --dport 80``, ``-m recent --rcheck --name X``) and its target. ``Table.walk`` follows a chain as the kernel
does: rules in order, a jump returns at the end of the callee or at RETURN, a goto (``-g``) returns to the
caller's caller, ACCEPT/DROP/REJECT and the NAT targets end the walk of the table. What kube-proxy, flannel and a
hand-written rule use is modelled: addresses, protocol, interfaces, ports (also ``multiport``), ``addrtype``,
``mark``, ``conntrack``/``state`` (the packet opens a connection: NEW), ``comment``, ``statistic --mode
random`` (the walk splits: taken with its probability, or not), ``recent`` (a ClientIP-affinity list holds the
client or not: read from the kernel's ``xt_recent`` lists), ``MARK``, ``DNAT``, ``SNAT``, ``MASQUERADE``,
``REDIRECT``. A match it cannot evaluate counts as not matching and the branch says so in its notes; a target
it does not know is passed over, also noted.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace

from emulator.tools.netfilter.model import BaseChain, Branch, ChainWalk, Env, Flow, in_net

#: (table, hook) -> priority, as the kernel registers iptables' tables (NF_IP_PRI_*).
PRIORITY = {("nat", "prerouting"): -100, ("nat", "output"): -100, ("nat", "postrouting"): 100,
            ("nat", "input"): 100, ("filter", "input"): 0, ("filter", "forward"): 0, ("filter", "output"): 0}
TABLES = ("nat", "filter")
CORE = {"-s": "-s", "--source": "-s", "-d": "-d", "--destination": "-d", "-p": "-p", "--protocol": "-p",
        "-i": "-i", "--in-interface": "-i", "-o": "-o", "--out-interface": "-o"}
FLAGS = {"--rcheck", "--set", "--update", "--remove", "--reap", "--rsource", "--rdest", "--random",
         "--random-fully", "--persistent", "--syn", "--rttl", "--limit-iface-in", "--limit-iface-out"}
NON_TERMINAL = {"LOG", "NFLOG", "CT", "CONNMARK", "TRACE", "AUDIT", "CHECKSUM", "TCPMSS", "NOTRACK"}
PROTOS = {"1": "icmp", "6": "tcp", "17": "udp"}


@dataclass(frozen=True)
class Opt:
    name: str
    value: str | None
    neg: bool = False


@dataclass(frozen=True)
class MatchGroup:
    module: str  # "" for the core options (-s, -d, -p, -i, -o)
    opts: tuple[Opt, ...]

    def text(self) -> str:
        head = f"-m {self.module} " if self.module else ""
        return head + " ".join(("! " if o.neg else "") + o.name + (f" {o.value}" if o.value is not None else "")
                               for o in self.opts)


@dataclass(frozen=True)
class Rule:
    text: str
    matches: tuple[MatchGroup, ...]
    target: str
    goto: bool = False
    target_opts: tuple[Opt, ...] = ()
    comment: str = ""

    def opt(self, name: str) -> str | None:
        return next((o.value for o in self.target_opts if o.name == name), None)

    def has(self, name: str) -> bool:
        return any(o.name == name for o in self.target_opts)


@dataclass
class Chain:
    policy: str | None  # ACCEPT/DROP for built-in chains, None for user chains
    rules: list[Rule] = field(default_factory=list)


def parse_rule(line: str) -> tuple[str, Rule]:
    toks = shlex.split(line)
    chain, rest = toks[1], toks[2:]
    groups: list[MatchGroup] = []
    module, opts = "", []  # the module whose options are being read
    target, goto, target_opts, comment = "", False, [], ""
    neg = False
    i = 0

    def flush() -> None:
        nonlocal opts
        if opts:
            groups.append(MatchGroup(module, tuple(opts)))
        opts = []
    while i < len(rest):
        t = rest[i]
        if t == "!":
            neg, i = True, i + 1
            continue
        if t == "-m":
            flush()
            module, i = rest[i + 1], i + 2
            continue
        if t in ("-j", "-g"):
            flush()
            target, goto = rest[i + 1], t == "-g"
            j = i + 2
            while j < len(rest):
                has_value = j + 1 < len(rest) and rest[j] not in FLAGS and not rest[j + 1].startswith("--")
                target_opts.append(Opt(rest[j], rest[j + 1] if has_value else None))
                j += 2 if has_value else 1
            break
        if t in CORE:  # a core option between a module's options (-m tcp -p tcp --dport 80): the module goes on
            flush()
            groups.append(MatchGroup("", (Opt(CORE[t], rest[i + 1], neg),)))
            neg, i = False, i + 2
            continue
        value = None if t in FLAGS else (rest[i + 1] if i + 1 < len(rest) else None)
        if module == "comment" and t == "--comment":
            comment = value or ""
        opts.append(Opt(t, value, neg))
        neg, i = False, i + (1 if t in FLAGS else 2)
    flush()
    return chain, Rule(line.strip(), tuple(groups), target, goto, tuple(target_opts), comment)


def parse_save(text: str) -> dict[str, "Table"]:
    """The tables of an ``iptables-save`` dump, by name (``iptables-restore`` input too: ``-I`` inserts, ``-X``
    deletes, so a full-sync text kube-proxy would apply to empty tables reads as the tables it makes)."""
    tables: dict[str, Table] = {}
    cur: Table | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            cur = tables.setdefault(line[1:].strip(), Table(line[1:].strip()))
        elif cur is not None and line.startswith(":"):
            name, policy = line[1:].split()[:2]
            cur.chains.setdefault(name, Chain(None if policy == "-" else policy))
        elif cur is not None and line.startswith("-A "):
            chain, rule = parse_rule(line)
            cur.chains.setdefault(chain, Chain(None)).rules.append(rule)
        elif cur is not None and line.startswith("-I "):  # restore input: -I CHAIN [N] ...
            _, chain, rest = (line.split(maxsplit=2) + [""])[:3]
            num, _, after = rest.partition(" ")
            pos, rest = (int(num) - 1, after) if num.isdigit() else (0, rest)
            cur.chains.setdefault(chain, Chain(None)).rules.insert(pos, parse_rule(f"-A {chain} {rest}")[1])
        elif cur is not None and line.startswith("-X "):
            cur.chains.pop(line.split()[1], None)
    return tables


def _ports(spec: str, port: int | None) -> bool:
    if port is None:
        return False
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if int(lo or 0) <= port <= int(hi or lo or 65535):
            return True
    return False


def _dev(pattern: str, dev: str | None) -> bool:
    if dev is None:
        return False
    return dev.startswith(pattern[:-1]) if pattern.endswith("+") else dev == pattern


def _mark(spec: str, mark: int) -> bool:
    value, _, mask = spec.partition("/")
    return mark & int(mask or "0xffffffff", 0) == int(value, 0)


def _new_mark(r: Rule, mark: int) -> int:
    for name, op in (("--set-xmark", "x"), ("--set-mark", "s"), ("--or-mark", "|"), ("--xor-mark", "^"),
                     ("--and-mark", "&")):
        spec = r.opt(name)
        if spec is None:
            continue
        value, _, mask = spec.partition("/")
        v, m = int(value, 0), int(mask or "0xffffffff", 0)
        return {"x": (mark & ~m) ^ v, "s": (mark & ~m) | v, "|": mark | v, "^": mark ^ v, "&": mark & v}[op]
    return mark


class Table(ChainWalk):
    def __init__(self, name: str) -> None:
        self.name = name
        self.source = f"iptables {name}"
        self.chains: dict[str, Chain] = {}

    def base_chains(self, hook: str) -> list[BaseChain]:
        prio = PRIORITY.get((self.name, hook))
        chain = self.chains.get(hook.upper())
        if prio is None or chain is None:
            return []
        return [BaseChain(hook.upper(), "nat" if self.name == "nat" else "filter", prio,
                          (chain.policy or "ACCEPT").lower())]

    def _rules(self, chain: str) -> list[Rule] | None:
        c = self.chains.get(chain)
        return None if c is None else c.rules

    # -- the walk -------------------------------------------------------------------------------------------------
    def _rule(self, r: Rule, chain: str, i: int, st: Branch, env: Env, depth: int
              ) -> tuple[list[Branch] | None, Branch]:
        p, st = self._match(r, st, env)
        if p <= 0:
            return None, st
        if p < 1 and st.probability * (1 - p) >= 1e-9:  # taken with probability p, or not
            hit = replace(st, probability=st.probability * p)
            miss = replace(st, probability=st.probability * (1 - p))
            return self._target(r, chain, i, hit, env, depth) + self._run(chain, i + 1, miss, env, depth), st
        return self._target(r, chain, i, st, env, depth), st

    def _target(self, r: Rule, chain: str, i: int, st: Branch, env: Env, depth: int) -> list[Branch]:
        t, f = r.target, st.flow
        decided = replace(st, rule=r.text, comment=r.comment)
        if t in self.chains:
            return self._jump(t, r.goto, r.text, chain, i, st, env, depth)
        if t == "RETURN" or t == "":
            return [st] if t == "RETURN" else self._run(chain, i + 1, st, env, depth)
        if t in ("ACCEPT", "DROP", "REJECT"):
            return [replace(decided, verdict=t.lower())]
        if t in ("DNAT", "SNAT"):
            to = r.opt("--to-destination" if t == "DNAT" else "--to-source") or ""
            ip, _, port = to.partition(":")
            new = replace(f, dst=ip, dport=int(port.split("-")[0]) if port else f.dport) if t == "DNAT" \
                else replace(f, src=ip)
            return [replace(decided, flow=new, verdict="accept", nat=t.lower())]
        if t == "MASQUERADE":
            b = replace(decided, flow=replace(f, src=env.masq_source or f.src), verdict="accept", nat="masquerade")
            return [b if env.masq_source else b.note("the address MASQUERADE picks is unknown here")]
        if t == "REDIRECT":
            port = r.opt("--to-ports")
            new = replace(f, dst=next(iter(sorted(env.local)), f.dst), dport=int(port) if port else f.dport)
            return [replace(decided, flow=new, verdict="accept", nat="dnat").note("REDIRECT: to the in device's "
                                                                                   "address")]
        if t == "MARK":
            mark = _new_mark(r, f.mark)
            st = replace(st, flow=replace(f, mark=mark), marked_by=st.marked_by + (" → ".join(st.chains[-2:]),))
            return self._run(chain, i + 1, st, env, depth)
        note = "" if t in NON_TERMINAL else f"target {t} is not modelled: passed over"
        return self._run(chain, i + 1, st.note(note) if note else st, env, depth)

    def _match(self, r: Rule, st: Branch, env: Env) -> tuple[float, Branch]:
        p = 1.0
        for g in r.matches:
            res = self._group(g, st.flow, env)
            if res is None:
                return 0.0, st.note(f"not evaluated, taken as not matching: {g.text()} in {r.text}")
            if res is False:
                return 0.0, st
            if res is not True:
                p *= float(res)
        return p, st

    def _group(self, g: MatchGroup, f: Flow, env: Env) -> bool | float | None:
        """True/False, a probability (statistic), or None when the match cannot be evaluated."""
        p = 1.0
        recent_name = next((o.value for o in g.opts if o.name == "--name"), "DEFAULT")
        for o in g.opts:
            res = self._opt(g.module, o, f, env, recent_name)
            if res is None:
                return None
            if isinstance(res, float):
                p *= (1 - res) if o.neg else res
            elif res == o.neg:
                return False
        return True if p == 1.0 else p

    def _opt(self, module: str, o: Opt, f: Flow, env: Env, recent_name: str) -> bool | float | None:
        n, v = o.name, o.value or ""
        if module == "":
            if n in ("-s", "-d"):
                return in_net(f.src if n == "-s" else f.dst, v)
            if n == "-p":
                return v == "all" or PROTOS.get(v, v) == f.proto
            return _dev(v, env.in_dev if n == "-i" else env.out_dev)
        if module in ("tcp", "udp", "multiport"):
            if n in ("--dport", "--destination-port", "--dports", "--destination-ports"):
                return (module == "multiport" or f.proto == module) and _ports(v, f.dport)
            if n == "--ports":
                return _ports(v, f.dport) or None
            if n == "--syn":
                return f.proto == "tcp"
            return None  # source ports and flags: the trace has no source port
        if module == "addrtype":
            if n in ("--limit-iface-in", "--limit-iface-out"):
                return True
            ip = f.dst if n == "--dst-type" else f.src
            local = env.is_local(ip)
            return local if v == "LOCAL" else (not local) if v == "UNICAST" else None
        if module == "mark" and n == "--mark":
            return _mark(v, f.mark)
        if module in ("conntrack", "state") and n in ("--ctstate", "--state"):
            return "NEW" in v.split(",")
        if module == "comment":
            return True
        if module == "statistic":
            if n == "--mode":
                return True if v == "random" else None
            return float(v) if n == "--probability" else None
        if module == "recent":
            if n in ("--rcheck", "--update"):
                return f.src in env.recent.get(recent_name, frozenset())
            return True  # --set, --name, --seconds, --reap, --mask, --rsource: no condition of their own
        if module == "icmp" and n == "--icmp-type":
            return f.proto == "icmp" and v in ("8", "echo-request", "any")
        return None
