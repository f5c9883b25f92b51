"""Failure injection verbs, for every routing mode, each undoable:

    podlab fail node NODE          podlab heal node NODE     (the node's uplink: its port on the LAN goes down)
    podlab fail link NODE1 NODE2   podlab heal link NODE1 NODE2   (traffic between two nodes only is dropped)
    podlab heal all                podlab faults [-o json]   (what is failed now, read from the kernel)
"""
from __future__ import annotations

import argparse

from emulator import faults
from emulator.cli import common, output
from emulator.lab.api import Lab


def _consequence(lab: Lab, whose: str) -> str:
    mode = lab.record.get("routing")
    if mode == "bgp":
        return f"BGP withdraws {whose} routes when the hold timer (3 s) expires"
    return f"routing {mode} is static: {whose} routes stay in place (stale) and the traffic is lost"


def cmd_fail(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    if a.what == "node":
        if faults.fail_node(lab, a.node):
            print(f"node {a.node} failed: its port on the underlay LAN is down (agent and daemons keep running); "
                  f"{_consequence(lab, 'its')}")
        else:
            print(f"node {a.node} was already failed; nothing changed")
    else:
        if faults.fail_link(lab, a.node1, a.node2):
            print(f"link {a.node1} <-> {a.node2} cut: the underlay drops traffic between them (both ways); "
                  f"{_consequence(lab, 'their')}")
        else:
            print(f"link {a.node1} <-> {a.node2} was already cut; nothing changed")
    return 0


def cmd_heal(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    if a.what == "all":
        healed = faults.heal_all(lab)
        print(f"healed {len(healed)} fault{'s' if len(healed) != 1 else ''}" +
              "".join(f"\n  {f.kind} {' <-> '.join(f.nodes)}" for f in healed))
    elif a.what == "node":
        changed = faults.heal_node(lab, a.node)
        print(f"node {a.node} " + ("healed: its port is up again" if changed else "was not failed; nothing changed"))
    else:
        changed = faults.heal_link(lab, a.node1, a.node2)
        print(f"link {a.node1} <-> {a.node2} " + ("healed" if changed else "was not cut; nothing changed"))
    return 0


def cmd_faults(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    found = faults.list_faults(lab)
    if a.output == "json":
        output.emit_list([f.as_dict() for f in found], lab=lab.name)
        return 0
    if not found:
        print(f"no faults in lab {lab.name}")
        return 0
    rows = [[f.kind, " <-> ".join(f.nodes), f.since or "-",
             "port down on the LAN" if f.kind == "node" else f"{f.dropped_packets} packets dropped"] for f in found]
    output.table(["KIND", "NODES", "SINCE", "DETAIL"], rows)
    return 0


def _targets(p: argparse.ArgumentParser, fn, with_all: bool) -> None:
    sub = common.actions(p, "what", "node|link" + ("|all" if with_all else ""))
    n = common.verb(sub, "node", help="a node's uplink")
    n.add_argument("node")
    lk = common.verb(sub, "link", help="the path between two nodes")
    lk.add_argument("node1")
    lk.add_argument("node2")
    parsers = [n, lk]
    if with_all:
        parsers.append(common.verb(sub, "all", help="every fault of the lab"))
    for q in parsers:
        q.set_defaults(fn=fn)


def register(sub: argparse._SubParsersAction) -> None:
    _targets(common.verb(sub, "fail", help="inject a failure: a node's uplink, or the link between two nodes"),
             cmd_fail, with_all=False)
    _targets(common.verb(sub, "heal", help="undo a failure injected with `fail`"), cmd_heal, with_all=True)
    s = common.verb(sub, "faults", help="list the injected failures (read from the lab's underlay)")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(fn=cmd_faults)
