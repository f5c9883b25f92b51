"""``podlab link``: shape a link (rate with tbf; delay/jitter/loss with netem where the kernel has it).

    podlab link set web-1 --rate 10mbit [--both]        (egress of web-1's eth0; --both: the node-side veth too)
    podlab link set node-1 --delay 5ms --loss 1%        (needs netem: refused with a clear message without it)
    podlab link show [TARGET ...] [-o json]             (qdiscs of pods' and nodes' interfaces)
    podlab link clear web-1 [--both]
"""
from __future__ import annotations

import argparse

from emulator.cli import common, output
from emulator.lab.api import Lab
from emulator.errors import ToolError


def _points(lab: Lab, target: str, both: bool) -> list:
    from emulator.tools import targets
    point = targets.resolve(lab, target)
    other = targets.peer(lab, point) if both else None
    if both and other is None:
        raise ToolError(f"{point.label} is not one end of a veth cable; --both applies to pod eth0, node eth0, "
                        "node veths and underlay ports", obj=point.label)
    return [point] + ([other] if other else [])


def cmd_set(a: argparse.Namespace) -> int:
    from emulator.tools import shaping
    from emulator.topology import units
    lab = Lab.get(a.lab)
    raw = {k: getattr(a, k) for k in units.SHAPE_KEYS if getattr(a, k) is not None}
    try:
        shape = units.parse_shape(raw)
    except units.UnitError as e:
        raise ToolError(f"link set: {e}; fix: {e.fix}") from None
    for p in _points(lab, a.target, a.both):
        for cmd in shaping.apply(p, shape):
            print(f"{p.owner}: {cmd}")
    return 0


def cmd_clear(a: argparse.Namespace) -> int:
    from emulator.tools import shaping
    lab = Lab.get(a.lab)
    for p in _points(lab, a.target, a.both):
        print(f"{p.label}: {'shaping removed' if shaping.clear(p) else 'was not shaped'}")
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    from emulator.tools import shaping, targets
    lab = Lab.get(a.lab)
    if a.targets:
        points = [targets.resolve(lab, t) for t in a.targets]
    else:
        points = []
        for p in lab.pods:
            if p.status.get("phase") == "Running":
                eth0 = targets.resolve(lab, f"pod/{p.ref}", check=False)  # ns/name outside default
                points += [eth0, targets.peer(lab, eth0)]
        points += [targets.resolve(lab, f"node/{n}", check=False) for n in lab.record.get("nodes", [])]
    rows, items = [], []
    for p in points:
        q = shaping.show(p)
        items.append({"target": p.label, "netns": p.ns, "interface": p.iface, "qdiscs": q})
        rows.append([p.label, p.ns, shaping.describe(q)])
    if a.output == "json":
        output.emit_list(items, lab=lab.name, netem=shaping.netem_available())
    else:
        output.table(["TARGET", "NETNS", "QDISC"], rows)
        if not shaping.netem_available():
            print(f"note: {shaping.NETEM_MISSING}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "link", help="shape links: rate (tbf), delay/jitter/loss (netem)")
    verbs = common.actions(s, "link_verb", "set|show|clear")
    v = common.verb(verbs, "set", help="shape the egress of TARGET[:IFACE]")
    v.add_argument("target")
    v.add_argument("--rate", help="e.g. 10mbit (tbf)")
    v.add_argument("--delay", help="e.g. 5ms (netem)")
    v.add_argument("--jitter", help="e.g. 1ms (netem, with --delay)")
    v.add_argument("--loss", help="e.g. 1%% (netem)")
    v.add_argument("--both", action="store_true", help="shape the other end of the cable too (both directions)")
    v.set_defaults(fn=cmd_set)
    v = common.verb(verbs, "clear", help="remove shaping from TARGET[:IFACE]")
    v.add_argument("target")
    v.add_argument("--both", action="store_true")
    v.set_defaults(fn=cmd_clear)
    v = common.verb(verbs, "show", help="qdiscs of targets (default: every pod cable and node uplink)")
    v.add_argument("targets", nargs="*")
    v.add_argument("-o", "--output", choices=["text", "json"], default="text")
    v.set_defaults(fn=cmd_show)
