"""What a node's kernel holds of its NetworkPolicy table, read back and compared with what the policies ask.

``read`` runs ``nft -j list table inet kube-network-policies`` in the node's namespace and keeps, per set, its
elements (``10.244.1.2``, ``10.244.1.2 . tcp . 80``) and, per chain, its rules' comments and packet counters.
``differences`` compares that with the node's desired ``NodeState`` (computed from the store by the same code the
enforcer runs) in words a student can act on: a missing chain, a rule missing or not ours, a pod missing from a
set. This is the evidence ``check netpol`` gives for a cell of the truth table that came out wrong.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from emulator.lab.api import Lab
from emulator.netpol import names
from emulator.netpol.enforcer import differences as chain_differences
from emulator.netpol.enforcer import expected_rules
from emulator.netpol.nodestate import NodeState


@dataclass
class KernelTable:
    node: str
    present: bool = True
    sets: dict[str, set[str]] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)  # chain → comments, in order
    packets: dict[tuple[str, str], int] = field(default_factory=dict)  # (chain, comment) → packets counted


def _element(e: object) -> str:
    if isinstance(e, dict):
        if "concat" in e:
            return " . ".join(_element(x) for x in e["concat"])
        if "prefix" in e:
            return f"{e['prefix']['addr']}/{e['prefix']['len']}"
        if "elem" in e:
            return _element(e["elem"]["val"])
    return str(e)


def parse(node: str, text: str) -> KernelTable:
    kt = KernelTable(node)
    for item in json.loads(text).get("nftables", []):
        if "set" in item:
            s = item["set"]
            kt.sets[s["name"]] = {_element(e) for e in s.get("elem", [])}
        elif "chain" in item:
            kt.rules.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            r = item["rule"]
            comment = r.get("comment", "")
            kt.rules.setdefault(r["chain"], []).append(comment)
            for x in r.get("expr", []):
                if "counter" in x:
                    kt.packets[(r["chain"], comment)] = x["counter"].get("packets", 0)
    return kt


def read(lab: Lab, node: str) -> KernelTable:
    r = lab.node(node).exec(["nft", "-j", "list", "table", names.FAMILY, names.TABLE])
    if r.returncode != 0:
        return KernelTable(node, present=False)
    return parse(node, r.stdout)


def differences(kt: KernelTable, want: NodeState, limit: int = 8) -> list[str]:
    if not kt.present:
        return [f"{kt.node}: table {names.T} is missing"]
    out = [f"{kt.node}: {d}" for d in chain_differences(kt.rules, expected_rules(want))]
    for s, els in want.elements.items():
        have = kt.sets.get(s)
        if have is None:
            out.append(f"{kt.node}: set {s} is missing")
            continue
        out += [f"{kt.node}: set {s} lacks {e}" for e in sorted(els - have)]
        out += [f"{kt.node}: set {s} holds {e}, which no policy puts there" for e in sorted(have - els)]
    return out[:limit] + ([f"{kt.node}: ... and {len(out) - limit} more"] if len(out) > limit else [])
