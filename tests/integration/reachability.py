"""Helpers shared by the fault and BGP timeline tests: who reaches whom, and when routes come and go.

Reachability is measured with real pings between pod namespaces, run in parallel; route presence is read from
the nodes' kernels over netlink (cheap enough to poll every few milliseconds for timelines). bgp mode's
timelines are read from BIRD's own record of when each session went down or up (``bgp_timeline_within``).
"""
from __future__ import annotations

import itertools
import os
import time
from typing import Callable

from emulator.check import probes as probe
from emulator.lab.api import Lab
from emulator.netlink import observe
from emulator.proc.lifecycle import start_time
from emulator.routing import bgp, bird, held_routes


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


def started_wall(pid: int) -> float:
    """When process ``pid`` started, as a Unix time: its start time in /proc/PID/stat (clock ticks since boot,
    on CLOCK_BOOTTIME; 10 ms resolution). A timeline that starts there does not include the seconds a CLI that
    started the process spent importing itself on a loaded machine."""
    ticks = start_time(pid)
    assert ticks is not None, f"process {pid} is gone"
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))


def bgp_sessions(lab: Lab) -> dict[tuple[str, str], tuple[str, float | None, str]]:
    """(node, peer node) -> (BGP state, when the session last went up or down as BIRD logged it (Unix time, ms
    resolution), BIRD's info: the last error) for every session of every running BIRD."""
    out = {}
    for n in lab.nodes:
        for sess in bgp.node_report(lab.name, n.name)["sessions"]:
            out[(n.name, sess["peerNode"])] = (sess["bgpState"], bird.since_epoch(sess["since"] or ""), sess["info"])
    return out


def bgp_timeline_within(lab: Lab, t0: float, budget: float, up: bool, node: str | None = None,
                        wait: float = 60.0) -> float:
    """Seconds from ``t0`` (a Unix time) until BIRD brought the sessions up again (``up``: every session of the
    lab Established and every slice back in every kernel as ``proto bird``) or took those to ``node`` down (its
    peers hold no route to it); fails past ``budget``.

    The end state is awaited first (up to ``wait`` s, no clock involved), then the time is read from BIRD's own
    record: the moment each session changed state, as BIRD noted it while handling the event. Polling the
    kernel from here would time this process too, which a loaded machine starves for seconds (a poll of two
    routing tables then takes longer than BGP needs to converge).
    """
    names = [n.name for n in lab.nodes]
    pairs = [(a, b) for a, b in itertools.permutations(names, 2) if up or b == node]

    def done() -> bool:
        if up:
            routes_ok = all((r := route_to(lab, a, b)) is not None and r.origin == "bird" for a, b in pairs)
            return routes_ok and all(st == "Established" for st, _, _ in bgp_sessions(lab).values())
        return all(route_to(lab, a, b) is None for a, b in pairs)
    assert wait_for(done, timeout=wait, poll=0.05) is not None, \
        f"BGP never got {'back up' if up else f'{node} withdrawn'} ({wait:.0f}s): {bgp_sessions(lab)}"
    sessions = bgp_sessions(lab)
    moments = [since for (a, b), (_st, since, _i) in sessions.items() if (a, b) in pairs and since is not None]
    assert moments, f"no session changed: {sessions}"
    took = max(moments) - t0
    assert took <= budget, f"BGP took {took:.2f}s (budget {budget:.1f}s) after the event; sessions: {sessions}"
    return took


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
