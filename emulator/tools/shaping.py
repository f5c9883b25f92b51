"""Link shaping with tc: a rate with tbf (works on this kernel), delay/jitter/loss with netem (where it exists).

Shaping acts on the *egress* of one interface, as tc does: ``podlab link set web-1 --rate 10mbit`` limits what
web-1 sends; ``--both`` also shapes the other end of the veth cable (the pod's node-side veth, or a node's port
on the underlay bridge), so both directions are limited — which is what a topology file's ``link:`` does.

Commands (pure, ``tc_commands``): rate only → ``tc qdisc replace dev D root handle 1: tbf rate R burst B latency
50ms``; with delay/jitter/loss → ``netem`` at the root and the tbf as its child (``parent 1:1``), the layout
tc-netem(8) documents. Burst is 10 ms worth of the rate, at least 4 full frames, so that tbf can keep the rate
at the timer resolution.

netem: this machine's kernel has no ``sch_netem``. ``netem_available`` asks the kernel once, in a throw-away
network namespace of its own (``unshare --net``: nothing is touched in the root namespace or in a lab), and a
request for delay, jitter or loss fails before any change with ``NetemUnavailableError`` saying so.
"""
from __future__ import annotations

import functools
import json
import shutil
import subprocess

from emulator.lab.api import run_in
from emulator.topology import units
from emulator.tools.errors import MissingDependencyError, NetemUnavailableError, ToolError
from emulator.tools.targets import Point
from emulator.topology.model import LinkShape

LATENCY = "50ms"
NETEM_MISSING = ("this kernel has no netem qdisc (sch_netem is not built or loadable), so delay, jitter and loss "
                 "cannot be emulated here; rate shaping (tbf) works. On a kernel with netem (`modprobe sch_netem`) "
                 "the same command works unchanged")


def burst_bytes(rate_bps: int, mtu: int = 1500) -> int:
    return max(rate_bps // 8 // 100, 4 * (mtu + 14))


def tbf_args(shape: LinkShape, mtu: int) -> list[str]:
    assert shape.rate_bps is not None
    return ["tbf", "rate", units.format_rate(shape.rate_bps), "burst", str(burst_bytes(shape.rate_bps, mtu)),
            "latency", LATENCY]


def netem_args(shape: LinkShape) -> list[str]:
    args = ["netem"]
    if shape.delay_us is not None:
        args += ["delay", units.format_time(shape.delay_us)]
        if shape.jitter_us is not None:
            args.append(units.format_time(shape.jitter_us))
    if shape.loss_pct is not None:
        args += ["loss", units.format_percent(shape.loss_pct)]
    return args


def tc_commands(dev: str, shape: LinkShape, mtu: int = 1500) -> list[list[str]]:
    """The tc commands that give ``dev`` the shape (replacing any root qdisc it had)."""
    if shape.needs_netem:
        cmds = [["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", *netem_args(shape)]]
        if shape.rate_bps is not None:
            cmds.append(["tc", "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", *tbf_args(shape, mtu)])
        return cmds
    if shape.rate_bps is None:
        raise ValueError("an empty shape has no tc commands")
    return [["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", *tbf_args(shape, mtu)]]


def clear_command(dev: str) -> list[str]:
    return ["tc", "qdisc", "del", "dev", dev, "root"]


@functools.lru_cache(maxsize=1)
def netem_available() -> bool:
    """Whether the kernel can make a netem qdisc (tried on lo of a private, throw-away network namespace)."""
    _need_tc()
    r = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                       capture_output=True, text=True, timeout=10)
    return r.returncode == 0


def _need_tc() -> None:
    if shutil.which("tc") is None:
        raise MissingDependencyError("tc is missing; install it with `apt-get install iproute2`", obj="tc")


def _mtu(point: Point) -> int:
    r = run_in(point.ns, ["ip", "-j", "link", "show", "dev", point.iface], timeout=10)
    try:
        return int(json.loads(r.stdout)[0]["mtu"])
    except (ValueError, IndexError, KeyError):
        return 1500


def apply(point: Point, shape: LinkShape) -> list[str]:
    """Shape the egress of ``point``; returns the commands run (as text). Nothing changes if netem is needed
    but missing."""
    _need_tc()
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
    _need_tc()
    r = run_in(point.ns, clear_command(point.iface), timeout=10)
    if r.returncode != 0 and "No such file" not in r.stderr and "Cannot delete qdisc with handle of zero" \
            not in r.stderr:
        raise ToolError(f"tc qdisc del on {point.label} failed: {r.stderr.strip()}", obj=point.label)
    return r.returncode == 0


def show(point: Point) -> list[dict]:
    """The qdiscs of ``point`` as tc reports them (``tc -j -s qdisc show``)."""
    _need_tc()
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
