"""nftables tables as ``nft -j list ruleset`` prints them, parsed and walked for one new packet.

``parse_json`` keeps, per table, the chains (base chains with their hook, type, priority and policy), the
rules (their expressions, as nft's JSON schema gives them) and the named sets and maps with their elements —
the ClientIP-affinity sets of kube-proxy included, so the walk sees which clients the kernel has pinned to an
endpoint. iptables-nft's own tables (``ip nat``, ``ip filter`` ... holding ``xt`` expressions) are left to
``iptables``, which reads them through ``iptables-save``.

``Table.walk`` runs a chain's rules statement by statement, as the kernel does: a failed match ends the rule;
``jump``/``goto``/``return``/``accept``/``drop``/``reject``; verdict maps (``vmap @service-ips``, ``numgen random
mod N vmap {...}``, which splits the walk into one branch per element, each 1/N); ``meta mark set``; ``dnat``,
``snat``, ``masquerade`` (which end the walk, as their verdict is accept). Values: ``ip saddr/daddr``, ``tcp``/
``udp``/``th dport`` (no value for a packet of another protocol, so the match fails), ``meta l4proto/mark/
iifname/oifname``, ``ct state`` (new), ``fib saddr/daddr type``, prefixes, ranges, anonymous and named sets,
concatenations, ``&``/``|``/``^``. Anything else counts as not matching and is noted on the branch.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from emulator.tools.netfilter.model import BaseChain, Branch, ChainWalk, Env, Flow

#: Tables iptables-nft creates; their rules are xtables expressions, read through iptables-save instead.
IPTABLES_NFT_TABLES = ("nat", "filter", "mangle", "raw", "security")
NAT_PRIORITY = {"dstnat": -100, "srcnat": 100, "filter": 0, "mangle": -150, "raw": -300, "security": 50}
PROTO_NUMBERS = {1: "icmp", 6: "tcp", 17: "udp"}


class _Unknown(Exception):
    """An expression the walker does not model."""


@dataclass
class Chain:
    name: str
    hook: str | None = None
    type: str | None = None
    prio: int = 0
    policy: str = "accept"
    rules: list[dict] = field(default_factory=list)  # {"expr": [...], "comment": ...}


def _prio(p: object) -> int:
    if isinstance(p, int):
        return p
    if isinstance(p, str):
        return NAT_PRIORITY.get(p, 0)
    if isinstance(p, dict):  # {"+": ["dstnat", -10]} in newer schemas
        for op, sign in (("+", 1), ("-", -1)):
            if op in p:
                a, b = p[op]
                return _prio(a) + sign * _prio(b)
    return 0


def _elem_value(e: object) -> object:
    return e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e


def parse_json(doc: dict) -> list["Table"]:
    """The nftables tables of a ruleset (iptables-nft's left out), in listing order."""
    tables: dict[tuple[str, str], Table] = {}
    for item in doc.get("nftables", []):
        kind, obj = next(iter(item.items()))
        if kind == "metainfo":
            continue
        key = (obj.get("family", ""), obj.get("table") or obj.get("name", ""))
        if key[0] in ("ip", "inet") and key[1] in IPTABLES_NFT_TABLES and kind == "table":
            continue
        if kind == "table":
            tables.setdefault(key, Table(*key))
            continue
        t = tables.get(key)
        if t is None:
            continue
        if kind == "chain":
            t.chains[obj["name"]] = Chain(obj["name"], obj.get("hook"), obj.get("type"), _prio(obj.get("prio", 0)),
                                          obj.get("policy", "accept"))
        elif kind == "rule":
            t.chains.setdefault(obj["chain"], Chain(obj["chain"])).rules.append(obj)
        elif kind in ("set", "map"):
            elems = obj.get("elem") or []
            if kind == "map":
                t.maps[obj["name"]] = [(_elem_value(k), v) for k, v in elems]
            else:
                t.sets[obj["name"]] = [_elem_value(e) for e in elems]
    return list(tables.values())


def _ip_in(value: str, ref: object) -> bool:
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        return False
    if isinstance(ref, dict) and "prefix" in ref:
        return addr in ipaddress.IPv4Network(f"{ref['prefix']['addr']}/{ref['prefix']['len']}", strict=False)
    if isinstance(ref, dict) and "range" in ref:
        lo, hi = ref["range"]
        return ipaddress.IPv4Address(lo) <= addr <= ipaddress.IPv4Address(hi)
    return isinstance(ref, str) and value == ref


def _eq(value: object, ref: object) -> bool:
    """Does ``value`` (from the packet) equal or fall within ``ref`` (from the rule)?"""
    if value is None:
        return False
    if isinstance(ref, dict) and "concat" in ref:
        refs = ref["concat"]
        return isinstance(value, tuple) and len(value) == len(refs) and all(_eq(v, r) for v, r in zip(value, refs))
    if isinstance(ref, dict) and "range" in ref and isinstance(value, int):
        lo, hi = ref["range"]
        return lo <= value <= hi
    if isinstance(value, str) and (isinstance(ref, dict) or "." in value):
        return _ip_in(value, ref)
    if isinstance(value, str) and isinstance(ref, int):
        return PROTO_NUMBERS.get(ref) == value
    return value == ref


class Table(ChainWalk):
    def __init__(self, family: str, name: str) -> None:
        self.family, self.name = family, name
        self.source = f"nft table {family} {name}"
        self.chains: dict[str, Chain] = {}
        self.maps: dict[str, list[tuple[object, object]]] = {}
        self.sets: dict[str, list[object]] = {}

    def base_chains(self, hook: str) -> list[BaseChain]:
        return [BaseChain(c.name, c.type or "filter", c.prio, c.policy) for c in self.chains.values()
                if c.hook == hook and c.type in ("nat", "filter")]

    def _rules(self, chain: str) -> list[dict] | None:
        c = self.chains.get(chain)
        return None if c is None else c.rules

    def _text(self, rule: dict) -> str:
        return f"chain {rule['chain']}: {render(rule)}"

    def _verdict(self, v: dict, rule: dict, chain: str, i: int, st: Branch, env: Env, depth: int
                 ) -> list[Branch] | None:
        """Apply a verdict (jump, goto, return, accept, drop, reject, continue); None: go on with the next rule."""
        kind, arg = next(iter(v.items()))
        decided = replace(st, rule=self._text(rule), comment=rule.get("comment", ""))
        if kind in ("jump", "goto"):
            return self._jump(arg["target"], kind == "goto", self._text(rule), chain, i, st, env, depth)
        if kind == "return":
            return [st]
        if kind in ("accept", "drop", "reject"):
            return [replace(decided, verdict=kind)]
        if kind == "continue":
            return None
        return [st.note(f"verdict {kind} is not modelled")]

    def _rule(self, rule: dict, chain: str, i: int, st: Branch, env: Env, depth: int
              ) -> tuple[list[Branch] | None, Branch]:
        """Run the statements of ``rule``: (the branches, if it ended the chain, else None; the state after it)."""
        for e in rule.get("expr", []):
            kind, arg = next(iter(e.items()))
            try:
                if kind == "match":
                    if not self._match(arg, st.flow, env):
                        return None, st
                elif kind in ("jump", "goto", "return", "accept", "drop", "reject", "continue"):
                    return self._verdict(e, rule, chain, i, st, env, depth), st
                elif kind == "vmap":
                    return self._vmap(arg, rule, chain, i, st, env, depth), st
                elif kind == "mangle":
                    st = self._mangle(arg, st)
                elif kind in ("dnat", "snat", "masquerade"):
                    return [self._nat(kind, arg, rule, st, env)], st
                elif kind not in ("counter", "set", "log", "limit", "notrack", "comment"):
                    raise _Unknown(kind)  # the others have no effect on the path (``set update``: affinity)
            except _Unknown as u:
                return None, st.note(f"not evaluated, taken as not matching: {u} in {self._text(rule)}")
        return None, st

    def _vmap(self, arg: dict, rule: dict, chain: str, i: int, st: Branch, env: Env, depth: int
              ) -> list[Branch] | None:
        key, data = arg["key"], arg["data"]
        elems = self.maps.get(data[1:], []) if isinstance(data, str) else (data.get("set") or [])
        if isinstance(key, dict) and "numgen" in key:
            mod = key["numgen"]["mod"]
            out: list[Branch] = []
            for n in range(mod):
                verdict = next((v for k, v in elems if k == n + key["numgen"].get("offset", 0)), None)
                b = replace(st, probability=st.probability / mod)
                res = self._verdict(verdict, rule, chain, i, b, env, depth) if verdict else None
                out += res if res is not None else self._run(chain, i + 1, b, env, depth)
            return out
        value = self._value(key, st.flow, env)
        verdict = next((v for k, v in elems if _eq(value, k)), None)
        return self._verdict(verdict, rule, chain, i, st, env, depth) if verdict else None

    def _nat(self, kind: str, arg: dict | None, rule: dict, st: Branch, env: Env) -> Branch:
        f, arg = st.flow, arg or {}
        decided = replace(st, rule=self._text(rule), comment=rule.get("comment", ""), verdict="accept", nat=kind)
        if kind == "dnat":
            return replace(decided, flow=replace(f, dst=arg.get("addr", f.dst), dport=arg.get("port", f.dport)))
        if kind == "snat":
            return replace(decided, flow=replace(f, src=arg.get("addr", f.src)))
        b = replace(decided, flow=replace(f, src=env.masq_source or f.src))
        return b if env.masq_source else b.note("the address masquerade picks is unknown here")

    def _mangle(self, arg: dict, st: Branch) -> Branch:
        k = arg["key"]
        if not (isinstance(k, dict) and k.get("meta", {}).get("key") == "mark"):
            raise _Unknown(f"mangle of {k}")
        mark = self._value(arg["value"], st.flow, None)
        if not isinstance(mark, int):
            raise _Unknown(f"mark value {arg['value']}")
        return replace(st, flow=replace(st.flow, mark=mark), marked_by=st.marked_by + (" → ".join(st.chains[-2:]),))

    def _match(self, m: dict, f: Flow, env: Env) -> bool:
        op, left, right = m.get("op", "=="), m["left"], m["right"]
        value = self._value(left, f, env)
        if isinstance(right, str) and right.startswith("@"):
            hit = any(_eq(value, e) for e in self.sets.get(right[1:], []))
        elif isinstance(right, dict) and "set" in right:
            hit = any(_eq(value, _elem_value(e)) for e in right["set"])
        elif op == "in" or (isinstance(left, dict) and "ct" in left):
            names = right if isinstance(right, list) else [right]
            hit = value in names if isinstance(value, str) else bool(value)
        else:
            hit = _eq(value, right)
        if op in ("==", "in"):
            return hit
        if op == "!=":
            return not hit
        raise _Unknown(f"operator {op}")

    def _value(self, e: object, f: Flow, env: Env | None) -> object:
        if isinstance(e, (int, str)):
            return e
        if not isinstance(e, dict):
            raise _Unknown(str(e))
        kind, arg = next(iter(e.items()))
        if kind == "payload":
            proto, fieldname = arg.get("protocol"), arg.get("field")
            if proto == "ip" and fieldname in ("saddr", "daddr"):
                return f.src if fieldname == "saddr" else f.dst
            if proto in ("tcp", "udp", "th") and fieldname == "dport":
                return f.dport if (proto == f.proto or (proto == "th" and f.proto in ("tcp", "udp"))) else None
            raise _Unknown(f"payload {proto} {fieldname}")
        if kind == "meta":
            key = arg["key"]
            if key == "l4proto":
                return f.proto
            if key == "mark":
                return f.mark
            if key in ("iifname", "oifname") and env is not None:
                return env.in_dev if key == "iifname" else env.out_dev
            if key == "nfproto":
                return "ipv4"
            raise _Unknown(f"meta {key}")
        if kind == "ct" and arg.get("key") == "state":
            return "new"
        if kind == "fib" and arg.get("result") == "type" and env is not None:
            ip = f.dst if "daddr" in arg.get("flags", []) else f.src
            return "local" if env.is_local(ip) else "unicast"
        if kind == "concat":
            return tuple(self._value(x, f, env) for x in arg)
        if kind in ("&", "|", "^"):
            a, b = (self._value(x, f, env) for x in arg)
            if not isinstance(a, int) or not isinstance(b, int):
                raise _Unknown(f"{kind} of {arg}")
            return {"&": a & b, "|": a | b, "^": a ^ b}[kind]
        raise _Unknown(kind)


# -- rules as ``nft list`` prints them (enough of the syntax to show the rule that decided) ---------------------
def _show(e: object, bits: bool = False) -> str:
    if isinstance(e, (str, int)):
        return hex(e) if isinstance(e, int) and bits else str(e)
    if isinstance(e, list):
        return ", ".join(_show(x) for x in e)
    if not isinstance(e, dict):
        return str(e)
    kind, arg = next(iter(e.items()))
    if kind in _SHOW:
        return _SHOW[kind](arg)
    if kind == "set":
        return "{ " + ", ".join(_show(x) if not isinstance(x, list) else f"{_show(x[0])} : {_stmt(x[1])}"
                                for x in arg) + " }"
    if kind in ("&", "|", "^"):
        return f" {kind} ".join(_show(x, True) for x in arg)
    return f"{kind} {arg}"


_SHOW = {"payload": lambda a: f"{a.get('protocol')} {a.get('field')}", "meta": lambda a: f"meta {a['key']}",
         "ct": lambda a: f"ct {a['key']}", "fib": lambda a: f"fib {' . '.join(a.get('flags', []))} {a.get('result')}",
         "prefix": lambda a: f"{a['addr']}/{a['len']}", "range": lambda a: f"{_show(a[0])}-{_show(a[1])}",
         "concat": lambda a: " . ".join(_show(x) for x in a), "numgen": lambda a: f"numgen {a['mode']} mod {a['mod']}"}


def _stmt(e: dict) -> str:
    kind, arg = next(iter(e.items()))
    if kind == "match":
        bits = isinstance(arg["left"], dict) and next(iter(arg["left"])) in ("&", "|", "^")
        op = {"==": " == " if bits else " ", "!=": " != ", "in": " "}.get(arg.get("op", "=="), f" {arg.get('op')} ")
        return f"{_show(arg['left'])}{op}{_show(arg['right'], bits)}"
    if kind in ("jump", "goto"):
        return f"{kind} {arg['target']}"
    if kind == "vmap":
        return f"{_show(arg['key'])} vmap {_show(arg['data'])}"
    if kind == "mangle":
        return f"{_show(arg['key'])} set {_show(arg['value'])}"
    if kind in ("dnat", "snat"):
        port = f":{arg['port']}" if arg and arg.get("port") else ""
        return f"{kind} to {arg.get('addr', '')}{port}" if arg else kind
    if kind == "masquerade":
        flags = (arg or {}).get("flags")
        return "masquerade" + (f" {flags if isinstance(flags, str) else ','.join(flags)}" if flags else "")
    if kind == "set":
        return f"{arg.get('op')} {arg.get('set')} {{ {_show(arg.get('elem'))} }}"
    if arg is None:
        return kind
    return f"{kind} {_show(arg)}" if not isinstance(arg, dict) else kind


def render(rule: dict) -> str:
    text = " ".join(_stmt(e) for e in rule.get("expr", []))
    return text + (f' comment "{rule["comment"]}"' if rule.get("comment") else "")
