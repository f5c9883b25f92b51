"""Keeping the check's probes within the kernel's neighbour table (see ``emulator.netlink.neightable``).

What the kernel does (measured here, and read in net/core/neighbour.c): when its one machine-wide ARP table holds
``gc_thresh3`` collectable entries it tries to throw out entries that are idle (STALE or FAILED) and more than
5 s old; an entry that was just resolved is REACHABLE, holds a timer and cannot be thrown out until its reachable
time (15-45 s by default) has passed without use. A check that opens connections to thousands of pods therefore
makes entries far faster than the kernel frees them, and the table overflows (measured: 10,000 overflows in a
1,000-pod check paced at the table's size per 6 s). So the check manages the entries it causes itself:

- ``Pacer`` is a working set of the entries the probes need, at most ``budget`` of them: a probe starts only
  when its entries are in the set; to make room the least recently used idle entries (no probe in flight uses
  them, the last one ended ``GRACE`` seconds ago, so the connection's closing packets are through) are *evicted*,
  which the caller does by deleting them from the kernel (``RTM_DELNEIGH``: as ``ip neigh del``, freeing the slot
  at once); an entry the caller could not delete stays counted until ``LINGER`` seconds after its last use, when
  the kernel can collect it. At the end the check evicts everything it still holds, leaving the lab's neighbour
  caches as it found them (minus entries the probes needed, which the lab makes again when it needs them).
- ``keys`` lists the entries a connection needs, by the path its packets take in a pod network (a key is the
  namespace and the neighbour's address):
  same node: the source pod's entry for the target and the target's for the source (on the bridge);
  across nodes: each pod's entry for its gateway (cni0), each node's cni0 entry for its own pod, and each node's
  entry for the other node on the underlay (the next hop, or VXLAN's outer destination);
  node → pod: the node's cni0 entry for the pod and the pod's entry for the gateway (the node's source address).
Pure code with the time passed in; unit-tested.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

GRACE = 0.2  # an entry is evictable this long after the last probe using it ended (its FIN/ACKs are through)
LINGER = 50.0  # an entry left in the kernel is collectable this long after its last use (reachable time + 5 s)
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
    """Entries the probes may hold at once: the limit less what the table held at the start (as if none of it
    could be thrown out) and a 20 % margin (entries the kernel makes that no key names), at least 32."""
    return max(32, gc_thresh3 - in_use - gc_thresh3 // 5)


class Pacer:
    """The working set of neighbour entries the probes hold (see the module docstring)."""

    def __init__(self, budget: int, grace: float = GRACE, linger: float = LINGER) -> None:
        self.budget, self.grace, self.linger = budget, grace, linger
        self._last: OrderedDict[Key, float] = OrderedDict()  # held keys, least recently used first
        self._busy: Counter[Key] = Counter()
        self._stuck: set[Key] = set()  # could not be deleted: held until last use + linger
        self.evictions = 0
        self.peak = 0

    def __len__(self) -> int:
        return len(self._last)

    def _touch(self, k: Key, now: float) -> None:
        self._last[k] = now
        self._last.move_to_end(k)

    def _idle(self, k: Key, now: float) -> bool:
        if self._busy[k]:
            return False
        return now - self._last[k] >= (self.linger if k in self._stuck else self.grace)

    def admit(self, ks: frozenset[Key], now: float) -> tuple[float, list[Key]]:
        """May a probe needing ``ks`` start now? ``(0.0, [])``: yes, its keys are now held and busy;
        ``(0.0, victims)``: first delete ``victims`` from the kernel and report with ``evicted``, then ask again;
        ``(seconds, [])``: not before then (or before a probe ends). A probe needing more keys than the whole budget
        is let through when nothing else is held."""
        self._forget_stuck(now)
        new = [k for k in ks if k not in self._last]
        room = self.budget - len(self._last)
        if len(new) > room and self._last:
            need = len(new) - room
            victims = []
            for k in self._last:
                if len(victims) >= max(need, self.budget // 8):
                    break
                if k not in ks and k not in self._stuck and self._idle(k, now):
                    victims.append(k)
            if len(victims) >= need:
                return 0.0, victims
            return self._next_idle(now), []
        for k in ks:
            self._touch(k, now)
            self._busy[k] += 1
        self.peak = max(self.peak, len(self._last))
        return 0.0, []

    def finished(self, ks: frozenset[Key], now: float) -> None:
        """A probe that held ``ks`` ended."""
        for k in ks:
            if self._busy[k] > 0:
                self._busy[k] -= 1
            if k in self._last:
                self._touch(k, now)

    def evicted(self, tried: list[Key], removed: set[Key]) -> None:
        """The caller deleted ``removed`` of ``tried`` from the kernel; the others stay until they linger out."""
        for k in tried:
            if k in removed:
                self._last.pop(k, None)
                self._stuck.discard(k)
                self.evictions += 1
            else:
                self._stuck.add(k)

    def held(self) -> list[Key]:
        """Every key still held (to evict at the end)."""
        return [k for k in self._last if k not in self._stuck]

    def _forget_stuck(self, now: float) -> None:
        for k in [k for k in self._stuck if not self._busy[k] and now - self._last[k] >= self.linger]:
            self._stuck.discard(k)
            self._last.pop(k, None)

    def _next_idle(self, now: float) -> float:
        """Seconds until the next held key becomes evictable (at least 10 ms)."""
        waits = [self._last[k] + (self.linger if k in self._stuck else self.grace) - now
                 for k in self._last if not self._busy[k]]
        return max(0.01, min(waits)) if waits else 0.05
