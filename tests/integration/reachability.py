"""Helpers shared by the fault and BGP timeline tests: who reaches whom, and when routes come and go.

Reachability is measured with real pings between pod namespaces, run in parallel; route presence is read from
the nodes' kernels over netlink (cheap enough to poll every few milliseconds for timelines).
"""
from __future__ import annotations

import itertools
import time
from typing import Callable

from emulator.check import probes as probe
from emulator.lab.api import Lab
from emulator.netlink import observe
from emulator.routing import held_routes


def pods_by_node(lab: Lab) -> dict[str, list[tuple[str, str]]]:
    """The topology's pods by node (``default``; not kube-system's coredns pods, which sit on some nodes only:
    the matrix is about routes between nodes, and the topology's pods cover every node)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for p in lab.pods:
        if p.namespace == "default":
            out.setdefault(p.node, []).append((p.name, p.ip))
    return out


def reach_matrix(lab: Lab) -> dict[tuple[str, str], bool]:
    """(source node, destination node) → every ping between their pods succeeded (one second per failure)."""
    pods = pods_by_node(lab)
    pairs = [(an, a, bn, bip) for an, bn in itertools.permutations(pods, 2) for a, _ in pods[an] for _, bip in pods[bn]]
    results = probe.matrix(pairs, lambda q: probe.ping(lab, q[1], q[3], timeout=1), workers=12)
    out: dict[tuple[str, str], bool] = {}
    for (an, _, bn, _), ok in results:
        out[(an, bn)] = out.get((an, bn), True) and ok
    return out


def expected(nodes: list[str], cut: Callable[[str, str], bool]) -> dict[tuple[str, str], bool]:
    return {(a, b): not cut(a, b) for a, b in itertools.permutations(nodes, 2)}


def route_to(lab: Lab, node: str, dst_node: str) -> observe.Route | None:
    slice_ = lab.node(dst_node).pod_cidr
    return held_routes.for_slices(held_routes.read(lab.node(node).netns), {dst_node: slice_})[dst_node]


def wait_for(cond: Callable[[], bool], timeout: float, poll: float = 0.005) -> float | None:
    """Seconds until ``cond()`` held, or None if it did not within ``timeout``."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(poll)


def all_reachable_within(lab: Lab, t0: float, budget: float) -> float:
    """Seconds from ``t0`` until every cross-node pod pair answers (fails past ``budget``).

    Each pair is probed on its own, over and over with a 0.25 s ping timeout, and its first success is its time:
    the result is accurate to a few hundred milliseconds, instead of waiting out a whole matrix of one-second
    timeouts between two looks.
    """
    pods = pods_by_node(lab)
    pairs = [(an, a, bn, bip) for an, bn in itertools.permutations(pods, 2) for a, _ in pods[an] for _, bip in pods[bn]]

    def first_answer(q: tuple[str, str, str, str]) -> float | None:
        while True:
            ok = lab.exec(q[1], ["ping", "-n", "-q", "-c", "1", "-W", "0.25", q[3]], timeout=5).returncode == 0
            elapsed = time.monotonic() - t0
            if ok:
                return elapsed
            if elapsed > budget:
                return None
    results = probe.matrix(pairs, first_answer, workers=max(len(pairs), 1))
    late = [(q[1], q[3]) for q, t in results if t is None]
    assert not late, f"not fully reachable {budget:.1f}s after healing: no answer for {late}"
    return max(t for _, t in results if t is not None)
