"""hostPort and Docker nodes in pod placement: the scheduler's ``NodePorts`` filter, reduced to a lab.

The spread ``scheduler`` places pods by address capacity; this pass runs after it, in file order, and applies
the one filter hostPort adds in the real scheduler (``NodePorts``: a node can hold one pod per (hostPort,
protocol)). A pod given ``node:`` is treated as a pod whose node selector names that node (the scheduler may not
move it); one without may go to any Kubernetes node. A pod that fits nowhere is not an error: it stays Pending
with the scheduler's own message, e.g.

    0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) didn't
    match Pod's node affinity/selector. preemption: 0/2 nodes are available: 1 No preemption victims found for
    incoming pod, 1 Preemption is not helpful for scheduling.

Nodes with ``runtime: docker`` run no kubelet: they are not counted among the "nodes available", and the loader
refuses a pod pinned to one.
"""
from __future__ import annotations

from typing import Any

from emulator.topology.model import Node

PORTS_MSG = "node(s) didn't have free ports for the requested pod ports"
SELECTOR_MSG = "node(s) didn't match Pod's node affinity/selector"


def unschedulable_message(total: int, no_ports: int, no_match: int) -> str:
    """The scheduler's FailedScheduling message (kube-scheduler 1.27+ wording, reasons sorted as it sorts)."""
    reasons = sorted([(f"{no_ports} {PORTS_MSG}", no_ports), (f"{no_match} {SELECTOR_MSG}", no_match)])
    parts = ", ".join(text for text, n in reasons if n)
    pre = []
    if no_ports:
        pre.append(f"{no_ports} No preemption victims found for incoming pod")
    if no_match:
        pre.append(f"{no_match} Preemption is not helpful for scheduling")
    return f"0/{total} nodes are available: {parts}. preemption: 0/{total} nodes are available: {', '.join(pre)}."


TAINT_MSG = "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
CORDONED_MSG = "node(s) were unschedulable"


def no_ready_node_message(total: int, not_ready: int, cordoned: int) -> str:
    """The scheduler's FailedScheduling message when no Kubernetes node of ``total`` is Ready and schedulable
    (``not_ready`` carry the not-ready taint, ``cordoned`` are cordoned); with no node at all, its own words."""
    if total == 0:
        return "no nodes available to schedule pods"
    reasons = sorted(f"{n} {msg}" for n, msg in ((not_ready, TAINT_MSG), (cordoned, CORDONED_MSG)) if n)
    return (f"0/{total} nodes are available: {', '.join(reasons)}. preemption: 0/{total} nodes are available: "
            f"{total} Preemption is not helpful for scheduling.")


def choose(ports: set[tuple[int, str]], pinned: str | None, spread_choice: str, used: dict[str, set],
           eligible: list[str]) -> tuple[str, str]:
    """One pod's node under the NodePorts filter: (node, "") or ("", the scheduler's message). ``used`` holds the
    (hostPort, protocol) pairs the pods bound to each Kubernetes node claim, ``eligible`` the nodes in file order
    that have room; ``spread_choice`` is the spread rule's pick. Used by ``apply`` for pods made after ``up``."""
    kube = list(used)
    if not ports & used.get(spread_choice, set()):
        return spread_choice, ""
    if pinned is None:
        free = [n for n in eligible if not ports & used[n]]
        if free:
            return free[0], ""
        return "", unschedulable_message(len(kube), sum(1 for n in kube if ports & used[n]), 0)
    return "", unschedulable_message(len(kube), 1, len(kube) - 1)


def place(parsed: list[dict[str, Any]], placed: dict[str, str], nodes: tuple[Node, ...],
          capacity: dict[str, int]) -> tuple[dict[str, str], dict[str, str]]:
    """Apply the NodePorts filter to the spread's ``placed`` (keyed by ``namespace/pod``); return ({key: node},
    {key: the scheduler's message})."""
    kube = [n.name for n in nodes if n.runtime != "docker"]
    used: dict[str, set[tuple[int, str]]] = {n: set() for n in kube}
    count = dict.fromkeys(kube, 0)
    final: dict[str, str] = {}
    pending: dict[str, str] = {}
    for p in parsed:
        name, ports = p["key"], {(port.host_port, port.protocol) for c in p["containers"] for port in c.ports
                                  if port.host_port}
        node = placed[name]
        if ports & used[node]:
            free = [n for n in kube if not ports & used[n] and count[n] < capacity[n]]
            if p["node"] is None and free:
                node = min(free, key=lambda n: (count[n], kube.index(n)))
            else:
                blocked = sum(1 for n in kube if ports & used[n])
                match = len(kube) - 1 if p["node"] is not None else 0
                if p["node"] is not None:
                    blocked = 1
                pending[name] = unschedulable_message(len(kube), blocked, match)
                continue
        used[node] |= ports
        count[node] += 1
        final[name] = node
    return final, pending
