"""tc for a link shape: the commands (pure) and running them inside a namespace.

A rate is a tbf qdisc (works on this kernel); delay/jitter/loss are netem (where it exists). Rate only →
``tc qdisc replace dev D root handle 1: tbf rate R burst B latency 50ms``; with delay/jitter/loss → ``netem`` at
the root and the tbf as its child (``parent 1:1``), the layout tc-netem(8) documents. Burst is 10 ms worth of the
rate, at least 4 full frames, so that tbf can keep the rate at the timer resolution.

netem: this machine's kernel has no ``sch_netem``. ``netem_available`` asks the kernel once, in a throw-away
network namespace of its own (``unshare --net``: nothing is touched in the root namespace or in a lab).
Used by the link-shaping CNI plugin (``cni.linkshape``) and by ``podlab link`` (``tools.shaping``).
"""
from __future__ import annotations

import functools
import shutil
import subprocess

from emulator.errors import MissingDependencyError, PodlabError
from emulator.netlink import netns
from emulator.topology import units
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
    need_tc()
    r = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                       capture_output=True, text=True, timeout=10)
    return r.returncode == 0


def need_tc() -> None:
    if shutil.which("tc") is None:
        raise MissingDependencyError("tc is missing; install it with `apt-get install iproute2`", obj="tc")


def run(ns: str | None, argv: list[str], timeout: float = 10) -> subprocess.CompletedProcess:
    """Run one tc command inside the namespace ``ns`` (a name under /run/netns or a path; None: the caller's)."""
    if ns is not None:
        argv = ["nsenter", f"--net={ns if ns.startswith('/') else netns.path(ns)}", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def shape(ns: str | None, dev: str, link: LinkShape, mtu: int) -> list[str]:
    """Give ``dev`` in ``ns`` the shape; return the commands run (as text). PodlabError naming the device if tc
    refuses; NETEM_MISSING if delay/jitter/loss is asked on a kernel without netem (nothing changed then)."""
    need_tc()
    if link.needs_netem and not netem_available():
        raise PodlabError(f"cannot shape {dev} with delay/jitter/loss: {NETEM_MISSING}", obj=dev)
    done = []
    for argv in tc_commands(dev, link, mtu):
        r = run(ns, argv)
        if r.returncode != 0:
            raise PodlabError(f"{' '.join(argv)} failed: {r.stderr.strip()}", obj=dev)
        done.append(" ".join(argv))
    return done
