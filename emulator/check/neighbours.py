"""Pacing the check's probes against the kernel's neighbour table (see ``emulator.netlink.neightable``).

The kernel refuses a new neighbour entry only when its table is full *and* every collectable entry in it was made
or changed in the last 5 seconds; older entries are thrown out to make room (and made again when next needed).
So what must stay under the limit is the number of entries made within any ~5 s, not the total: ``Pacer`` keeps a
sliding ``WINDOW`` of the entries the probes may have made (each ``key`` a (namespace, address) pair, from
``keys``) and holds a probe back while starting it would take the window over ``budget``. An entry made more
than a window ago counts again when it is next used (it may have been thrown out meanwhile).

``keys`` lists the entries one connection needs, by the path a packet takes in a pod network:
- same node:  the source pod's entry for the target and the target's for the source (on the bridge);
- across nodes: each pod's entry for its gateway (cni0), each node's cni0 entry for its own pod, and each
  node's entry for the other node on the underlay (the next hop, or VXLAN's outer destination);
- node → pod: the node's cni0 entry for the pod and the pod's entry for the gateway (the node's source address).
Pure code with an injectable clock; unit-tested.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW = 6.0  # the kernel's 5 s, with a margin
Key = tuple[str, str]


@dataclass(frozen=True)
class Endpoint:
    """Where a probe starts or ends: a pod (``gw`` is its node's cni0 address) or a node (``gw`` empty)."""

    ns: str
    ip: str
    node: str
    node_ns: str
    node_ip: str
    gw: str = ""

    @property
    def is_node(self) -> bool:
        return not self.gw


def keys(src: Endpoint, dst: Endpoint) -> frozenset[Key]:
    """The dynamic neighbour entries a TCP connection from ``src`` to pod ``dst`` needs (both directions)."""
    if src.is_node:
        if src.node == dst.node:
            return frozenset({(src.ns, dst.ip), (dst.ns, dst.gw)})
        return frozenset({(src.ns, dst.node_ip), (dst.node_ns, src.node_ip), (dst.node_ns, dst.ip),
                          (dst.ns, dst.gw)})
    if src.node == dst.node:
        return frozenset({(src.ns, dst.ip), (dst.ns, src.ip)})
    return frozenset({(src.ns, src.gw), (src.node_ns, src.ip), (dst.node_ns, dst.ip), (dst.ns, dst.gw),
                      (src.node_ns, dst.node_ip), (dst.node_ns, src.node_ip)})


def budget(gc_thresh3: int, in_use: int) -> int:
    """Entries the probes may make per window: the limit less what the table held at the start (counted as if
    none of it could be thrown out) and a 10 % margin, but at least a quarter of the limit (entries that old
    are collectable by the time the probes need the room)."""
    return max(gc_thresh3 // 4, gc_thresh3 - in_use - gc_thresh3 // 10)


class Pacer:
    """Admits probes while the entries made in the last ``window`` seconds stay within ``budget``."""

    def __init__(self, budget: int, window: float = WINDOW) -> None:
        self.budget, self.window = budget, window
        self._made: dict[Key, float] = {}  # key → when it was (possibly) made
        self._recent: deque[tuple[float, int]] = deque()  # (time, entries made then)
        self._count = 0

    def _expire(self, now: float) -> None:
        while self._recent and self._recent[0][0] <= now - self.window:
            self._count -= self._recent.popleft()[1]

    def cost(self, ks: frozenset[Key], now: float) -> int:
        return sum(1 for k in ks if k not in self._made or self._made[k] <= now - self.window)

    def admit(self, ks: frozenset[Key], now: float) -> float:
        """0.0 and the entries charged if the probe may start now, else how long to wait before asking again.
        A probe that alone costs more than the budget is admitted when the window is empty (it cannot fit)."""
        self._expire(now)
        c = self.cost(ks, now)
        if c and self._count + c > self.budget and self._count > 0:
            return max(0.01, self._recent[0][0] + self.window - now)
        for k in ks:
            if k not in self._made or self._made[k] <= now - self.window:
                self._made[k] = now
        if c:
            self._recent.append((now, c))
            self._count += c
        return 0.0

    @property
    def in_window(self) -> int:
        return self._count
