"""Failure injection verbs, for every routing mode, each undoable:

    podlab fail node NODE          podlab heal node NODE     (the node's uplink: its port on the LAN goes down)
    podlab fail link NODE1 NODE2   podlab heal link NODE1 NODE2   (traffic between two nodes only is dropped)
    podlab heal all                podlab faults [-o json]   (what is failed now, read from the kernel)

A node is named in the one target grammar (``emulator.lab.targets``): ``node-1`` or ``node/node-1``, so
``fail node/node-1`` and ``fail node-1`` are ``fail node node-1`` (kubectl's ``TYPE/NAME`` and ``TYPE NAME``);
``fail link node/node-1 node-2`` too. A pod, the underlay or the external host cannot be failed: a usage error
(exit 2) says what can.
"""
from __future__ import annotations

import argparse

from emulator import faults
from emulator.cli import common, host_cmds, output
from emulator.errors import UsageError
from emulator.lab import targets
from emulator.lab.api import Lab

NODE_WORDS = ("node", "nodes", "no")
LINK_WORDS = ("link", "links")
FORMS = "node NODE, node/NODE, NODE or link NODE1 NODE2"


def parse_fault(verb: str, words: list[str]) -> tuple[str, tuple[str, ...]]:
    """What ``fail``/``heal`` were given: ("node", (NODE,)), ("link", (NODE1, NODE2)) or ("all", ()) (heal only);
    each NODE still in the target grammar (``node-1``, ``node/node-1``)."""
    forms = FORMS + (" or all" if verb == "heal" else "")
    head, rest = (words[0], words[1:]) if words else ("", [])
    if head in NODE_WORDS and len(rest) == 1:
        return "node", (f"node/{rest[0]}" if "/" not in rest[0] else rest[0],)
    if head in LINK_WORDS and len(rest) == 2:
        return "link", tuple(rest)
    if head == "all" and not rest and verb == "heal":
        return "all", ()
    if len(words) == 1 and head not in NODE_WORDS + LINK_WORDS + ("all",):
        return "node", (head,)
    raise UsageError(f"{verb} takes {forms} (given: {' '.join(words) or 'nothing'})", obj=" ".join(words))


def _node(lab: Lab, verb: str, target: str) -> str:
    """The node that ``target`` names (``node-1``, ``node/node-1``); not found is exit 4, another kind exit 2."""
    place = targets.resolve(lab, target, iface=False)
    if place.kind != "node":
        what = f"the {place.kind}" if place.kind in targets.SINGLETONS else f"a {place.kind}"
        raise UsageError(f"{verb} acts on a node's uplink or the link between two nodes ({FORMS}); {target!r} is "
                         f"{what}", obj=target)
    return place.name


def _consequence(lab: Lab, whose: str) -> str:
    return _consequence_text(lab.record.get("routing"), whose)


#: (verb, what) → (the fault function, what it says when it changed something, when it did not)
ACTIONS = {
    ("fail", "node"): (faults.fail_node, "node {0} failed: its port on the underlay LAN is down (agent and daemons "
                       "keep running); {consequence}", "node {0} was already failed; nothing changed"),
    ("fail", "link"): (faults.fail_link, "link {0} <-> {1} cut: the underlay drops traffic between them (both "
                       "ways); {consequence}", "link {0} <-> {1} was already cut; nothing changed"),
    ("heal", "node"): (faults.heal_node, "node {0} healed: its port is up again",
                       "node {0} was not failed; nothing changed"),
    ("heal", "link"): (faults.heal_link, "link {0} <-> {1} healed", "link {0} <-> {1} was not cut; nothing changed"),
}


def _consequence_text(mode: str | None, whose: str) -> str:
    if mode == "bgp":
        return f"BGP withdraws {whose} routes when the hold timer (3 s) expires"
    return f"routing {mode} is static: {whose} routes stay in place (stale) and the traffic is lost"


def _run_across(lab: str, verb: str, what: str, given: tuple[str, ...]) -> int:
    """``fail``/``heal`` on a multi-host lab: the host of the node(s) acts (``hosts.faults_across``)."""
    from emulator.hosts import faults_across, records
    if what == "all":
        healed = faults_across.every_host(lab, "heal_all")
        print(f"healed {len(healed)} fault{'s' if len(healed) != 1 else ''}" +
              "".join(f"\n  {f['kind']} {' <-> '.join(f['nodes'])} (host {f['host']})" for f in healed))
        return 0
    nodes = [faults_across.node_name(t) for t in given]
    _, changed, unchanged = ACTIONS[(verb, what)]
    text = changed if faults_across.act(lab, verb, what, nodes) else unchanged
    mode = (records.load(lab) or {}).get("routing")
    print(text.format(*nodes, consequence=_consequence_text(mode, "its" if what == "node" else "their")))
    return 0


def _run(verb: str, a: argparse.Namespace) -> int:
    what, given = parse_fault(verb, a.fault)
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:
        return _run_across(multi, verb, what, given)
    lab = Lab.get(a.lab)
    if what == "all":
        healed = faults.heal_all(lab)
        print(f"healed {len(healed)} fault{'s' if len(healed) != 1 else ''}" +
              "".join(f"\n  {f.kind} {' <-> '.join(f.nodes)}" for f in healed))
        return 0
    nodes = [_node(lab, verb, t) for t in given]
    act, changed, unchanged = ACTIONS[(verb, what)]
    text = changed if act(lab, *nodes) else unchanged
    print(text.format(*nodes, consequence=_consequence(lab, "its" if what == "node" else "their")))
    return 0


def cmd_fail(a: argparse.Namespace) -> int:
    return _run("fail", a)


def cmd_heal(a: argparse.Namespace) -> int:
    return _run("heal", a)


def cmd_faults(a: argparse.Namespace) -> int:
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:
        from emulator.hosts import faults_across
        found = faults_across.every_host(multi, "list")
        if a.output == "json":
            output.emit_list(found, lab=multi)
        elif not found:
            print(f"no faults in lab {multi}")
        else:
            output.table(["KIND", "NODES", "HOST", "SINCE", "DETAIL"], [
                [f["kind"], " <-> ".join(f["nodes"]), f["host"], f.get("since") or "-",
                 "port down on the LAN" if f["kind"] == "node" else f"{f.get('droppedPackets')} packets dropped"]
                for f in found])
        return 0
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


def register(sub: argparse._SubParsersAction) -> None:
    f = common.verb(sub, "fail", help="inject a failure: a node's uplink, or the link between two nodes",
                    description="podlab fail node NODE | fail node/NODE | fail NODE: the node's port on the LAN goes "
                                "down; podlab fail link NODE1 NODE2: traffic between the two nodes is dropped")
    f.add_argument("fault", nargs="+", metavar="FAULT", help=FORMS)
    f.set_defaults(fn=cmd_fail)
    h = common.verb(sub, "heal", help="undo a failure injected with `fail`",
                    description="podlab heal node NODE | heal node/NODE | heal NODE | heal link NODE1 NODE2 | "
                                "heal all")
    h.add_argument("fault", nargs="+", metavar="FAULT", help=FORMS + " or all")
    h.set_defaults(fn=cmd_heal)
    s = common.verb(sub, "faults", help="list the injected failures (read from the lab's underlay)")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(fn=cmd_faults)
