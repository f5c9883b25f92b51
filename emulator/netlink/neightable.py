"""The kernel's IPv4 neighbour (ARP) table: its limits, its counters, and how many entries a lab can need.

There is one ARP table for the whole machine: the entries of every network namespace count against the same
limits, ``net.ipv4.neigh.default.gc_thresh1/2/3`` (128/512/1024 by default), which only the root namespace's
administrator should set (a namespace sees the same global values). When the table holds ``gc_thresh3``
garbage-collectable entries and none of them is older than 5 s, the kernel refuses new ones ("neighbour table
overflow"): the packet that needed the entry is dropped, and ``table_fulls`` in ``/proc/net/stat/arp_cache`` (one
line per CPU) goes up by one. Permanent entries (flannel's VTEP neighbours) do not count against the limits.

``lab_estimate`` is the number of dynamic entries a lab needs when all of its pods talk across the cluster:
- 2 per pod: the pod's entry for its gateway (cni0) and its node's entry for the pod on cni0;
- N × (N-1) on the underlay: every node's entry for every other node's IP (VXLAN's outer destination or
  host-gw/BGP's next hop), plus 2 per node where the lab has an external host / gateway;
- pods talking to pods of their own node need one more per pair (``podlab check``'s spanning set: 1 per pod).
It is a floor for a lab in use, not a ceiling: a pod talking to every pod of its own node needs one per peer.

podlab reads these values and never writes them, unless asked (``podlab up --raise-neigh-limits``, ``raise_limits``).
"""
from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

PROC_SYS = Path("/proc/sys/net/ipv4/neigh/default")
PROC_STAT = Path("/proc/net/stat/arp_cache")


@dataclass(frozen=True)
class Limits:
    gc_thresh1: int
    gc_thresh2: int
    gc_thresh3: int


@dataclass(frozen=True)
class Stats:
    """The table's counters (summed over CPUs); ``entries`` includes permanent ones."""

    entries: int
    table_fulls: int
    forced_gc_runs: int
    unresolved_discards: int


def read_limits(root: Path = PROC_SYS) -> Limits:
    return Limits(*(int((root / f"gc_thresh{i}").read_text()) for i in (1, 2, 3)))


def parse_stats(text: str) -> Stats:
    """Parse ``/proc/net/stat/arp_cache``: a header line of column names, then one line of hex numbers per CPU.
    ``entries`` is the table's (the same on every line); the event counters are per CPU and are summed."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return Stats(0, 0, 0, 0)
    cols = lines[0]
    rows = [[int(v, 16) for v in ln] for ln in lines[1:] if len(ln) == len(cols)]

    def total(name: str) -> int:
        if name not in cols:
            return 0
        i = cols.index(name)
        return sum(r[i] for r in rows)
    entries = rows[0][cols.index("entries")] if rows and "entries" in cols else 0
    return Stats(entries, total("table_fulls"), total("forced_gc_runs"), total("unresolved_discards"))


def read_stats(path: Path = PROC_STAT) -> Stats | None:
    try:
        return parse_stats(path.read_text())
    except OSError:
        return None


def lab_estimate(nodes: int, pods: int, external: bool = False, same_node_pairs: int = 0) -> int:
    """Dynamic ARP entries a lab needs with every pod talking across the cluster (see the module docstring)."""
    return 2 * pods + nodes * (nodes - 1) + (2 * nodes if external else 0) + same_node_pairs


def suggested(need: int, current: Limits) -> Limits:
    """Limits that fit ``need`` entries with room to spare: gc_thresh3 a power of two ≥ 2 × need (at least 4096),
    gc_thresh2 half of it; gc_thresh1 (below which nothing is collected) is left alone. Never lower than now."""
    t3 = 4096
    while t3 < 2 * need:
        t3 *= 2
    t3 = max(t3, current.gc_thresh3)
    return Limits(current.gc_thresh1, max(t3 // 2, current.gc_thresh2), t3)


def sysctl_command(lim: Limits) -> str:
    return (f"sudo sysctl -w net.ipv4.neigh.default.gc_thresh2={lim.gc_thresh2} "
            f"net.ipv4.neigh.default.gc_thresh3={lim.gc_thresh3}")


def warning(need: int, in_use: int, lim: Limits) -> str | None:
    """The warning ``podlab up`` prints when a lab can overflow the table ('' → None when it fits)."""
    if need + in_use <= lim.gc_thresh3:
        return None
    return (f"this lab can need about {need} neighbour (ARP) entries, and the kernel's table, shared by every "
            f"namespace on this machine, holds at most gc_thresh3={lim.gc_thresh3} ({in_use} in use now): pods "
            f"talking across the cluster will see 'neighbour table overflow' drops, and `podlab check` paces its "
            f"probes to stay under the limit (slower). Raise it with: {sysctl_command(suggested(need + in_use, lim))}"
            f"  (or `podlab up --raise-neigh-limits`)")


def raise_limits(want: Limits, root: Path = PROC_SYS) -> list[tuple[str, int, int]]:
    """Write gc_thresh2/3 of the root namespace where they are lower than ``want``; return (key, old, new) for each
    change. Only on the user's explicit request; the caller must be in the root network namespace."""
    cur = read_limits(root)
    changes = []
    for i, new in ((3, want.gc_thresh3), (2, want.gc_thresh2)):  # 3 first: thresh2 ≤ thresh3 at every moment
        old = getattr(cur, f"gc_thresh{i}")
        if new > old:
            (root / f"gc_thresh{i}").write_text(str(new))
            changes.append((f"net.ipv4.neigh.default.gc_thresh{i}", old, new))
    return changes


RTM_DELNEIGH = 29
_NDMSG = struct.Struct("=BBHiHBB")


def del_neigh(ifindex: int, ip: str) -> bytes:
    """An ``RTM_DELNEIGH`` request (header flags and sequence are filled in by ``Rtnl.batch``): ndmsg + NDA_DST."""
    body = _NDMSG.pack(socket.AF_INET, 0, 0, ifindex, 0, 0, 0) + struct.pack("=HH", 8, 1) + socket.inet_aton(ip)
    return struct.pack("=IHHII", 16 + len(body), RTM_DELNEIGH, 0, 0, 0) + body


class Forgetter:
    """Deletes dynamic neighbour entries by (namespace, address), as ``ip neigh del ADDR dev DEV`` does.

    ``dev_of(ns, ip)`` names the device the entry is on. Sockets of namespaces asked about often (``keep``: the
    nodes) stay open until ``close``; others are opened per call. Returns the keys now absent (deleted, or not
    there); a namespace that cannot be entered keeps its keys (the caller lets them age out)."""

    def __init__(self, dev_of, keep: set[str] | None = None) -> None:
        self.dev_of, self.keep = dev_of, keep or set()
        self._rt: dict[str, object] = {}
        self._idx: dict[tuple[str, str], int] = {}

    def __call__(self, keys) -> set[tuple[str, str]]:
        from emulator.errors import PodlabError
        from emulator.netlink.rtnl import Request, Rtnl
        by_ns: dict[str, list[str]] = {}
        for ns, ip in keys:
            by_ns.setdefault(ns, []).append(ip)
        gone: set[tuple[str, str]] = set()
        for ns, ips in by_ns.items():
            rt = self._rt.get(ns)
            try:
                if rt is None:
                    rt = Rtnl.in_ns(ns)
                    if ns in self.keep:
                        self._rt[ns] = rt
                reqs = []
                for ip in ips:
                    dev = self.dev_of(ns, ip)
                    if (ns, dev) not in self._idx:
                        self._idx[(ns, dev)] = rt.link_index(dev)
                    reqs.append(Request(None, RTM_DELNEIGH, raw=del_neigh(self._idx[(ns, dev)], ip),
                                        obj=f"neigh {ip} dev {dev}", ok_errnos=(errno.ENOENT,)))
                rt.batch(reqs)
                gone.update((ns, ip) for ip in ips)
            except (PodlabError, OSError):  # namespace or device already gone: its entries went with it, and
                pass  # the entries not deleted stay counted, so the budget is never overrun
            finally:
                if rt is not None and ns not in self.keep:
                    rt.close()
        return gone

    def close(self) -> None:
        for rt in self._rt.values():
            rt.close()
        self._rt.clear()
