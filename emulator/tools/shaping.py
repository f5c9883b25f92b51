"""``podlab link``: shape a point of a running lab (egress of one interface, as tc does).

``podlab link set web-1 --rate 10mbit`` limits what web-1 sends; ``--both`` also shapes the other end of the veth
cable (the pod's node-side veth, or a node's port on the underlay bridge), so both directions are limited — which
is what a topology file's ``link:`` does. The commands themselves (tbf, netem) come from ``netlink.tc``, which the
link-shaping CNI plugin uses too; a request for delay, jitter or loss on a kernel without netem fails before any
change with ``NetemUnavailableError``.
"""
from __future__ import annotations

import json

from emulator.lab.api import run_in
from emulator.netlink import observe
from emulator.netlink.rtnl import Rtnl
from emulator.topology import units
from emulator.netlink.tc import NETEM_MISSING, clear_command, need_tc, netem_available, tc_commands
from emulator.errors import NetemUnavailableError, ToolError
from emulator.tools.targets import Point
from emulator.topology.model import LinkShape


def _mtu(point: Point) -> int:
    with Rtnl.in_ns(point.ns) as rt:
        link = observe.link(rt, point.iface)
    return link.mtu if link is not None and link.mtu else 1500


def apply(point: Point, shape: LinkShape) -> list[str]:
    """Shape the egress of ``point``; returns the commands run (as text). Nothing changes if netem is needed
    but missing."""
    need_tc()
    if shape.needs_netem and not netem_available():
        raise NetemUnavailableError(f"cannot shape {point.label} with delay/jitter/loss: {NETEM_MISSING}",
                                    obj=point.label)
    done = []
    for argv in tc_commands(point.iface, shape, _mtu(point)):
        r = run_in(point.ns, argv, timeout=10)
        if r.returncode != 0:
            raise ToolError(f"{' '.join(argv)} failed in {point.owner}: {r.stderr.strip()}", obj=point.label)
        done.append(" ".join(argv))
    return done


def clear(point: Point) -> bool:
    """Remove any shaping from ``point`` (back to the default qdisc); False if there was none."""
    need_tc()
    r = run_in(point.ns, clear_command(point.iface), timeout=10)
    if r.returncode != 0 and "No such file" not in r.stderr and "Cannot delete qdisc with handle of zero" \
            not in r.stderr:
        raise ToolError(f"tc qdisc del on {point.label} failed: {r.stderr.strip()}", obj=point.label)
    return r.returncode == 0


def show(point: Point) -> list[dict]:
    """The qdiscs of ``point`` as tc reports them (``tc -j -s qdisc show``)."""
    need_tc()
    r = run_in(point.ns, ["tc", "-j", "-s", "qdisc", "show", "dev", point.iface], timeout=10)
    if r.returncode != 0:
        raise ToolError(f"tc qdisc show on {point.label} failed: {r.stderr.strip()}", obj=point.label)
    try:
        return json.loads(r.stdout or "[]")
    except ValueError:
        return []


def describe(qdiscs: list[dict]) -> str:
    """One line for the qdiscs of an interface (``tbf rate 10Mbit burst 12500b``, ``noqueue`` ...)."""
    parts = []
    for q in qdiscs:
        opts = q.get("options", {})
        words = [q.get("kind", "?")]
        if "rate" in opts:
            words.append(f"rate {units.format_rate(opts['rate'] * 8)}" if isinstance(opts["rate"], int)
                         else f"rate {opts['rate']}")
        for key in ("delay", "jitter", "loss", "burst"):
            if key in opts:
                val = opts[key]
                words.append(f"{key} {val.get('delay', val) if isinstance(val, dict) else val}")
        parts.append(" ".join(str(w) for w in words))
    return "; ".join(parts) or "none"
