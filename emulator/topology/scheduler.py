"""A tiny spread scheduler for pods that the topology file does not pin to a node.

Each unpinned pod, in file order, goes to the node holding the fewest pods so far (pinned pods included); a
tie goes to the node listed first in the file. A node whose slice is full is never chosen. This is the
``NodeResourcesBalancedAllocation``/``PodTopologySpread`` idea of the real scheduler reduced to one resource, pod
addresses, so that the outcome is predictable enough to draw on a whiteboard: with two nodes and four pods,
node-1 gets pods 1 and 3, node-2 gets 2 and 4.

A heap keyed by (pods so far, file position) makes each choice O(log nodes), so scheduling thousands of pods
stays instant. The function is pure; the loader turns ``Unschedulable`` into a topology error.
"""
from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


class Unschedulable(Exception):
    """No node has room for ``pod``; ``assigned`` holds the assignments made before it."""

    def __init__(self, pod: str, capacity: int, assigned: dict[str, str]) -> None:
        super().__init__(f"no node has room for pod {pod}: all nodes are full ({capacity} pod addresses in all)")
        self.pod, self.capacity, self.assigned = pod, capacity, assigned


def spread(pods_without_node: Sequence[str], nodes: Mapping[str, int],
           existing_counts: Mapping[str, int] | None = None) -> dict[str, str]:
    """Assign each pod to a node: fewest pods first, ties to the earlier node, never beyond capacity.

    ``nodes`` maps node name to capacity, in file order; ``existing_counts`` gives the pods already bound to
    each node (missing nodes count 0). Returns ``{pod: node}`` in the order of ``pods_without_node``.
    Raises ``Unschedulable`` for the first pod that fits nowhere.
    """
    existing = existing_counts or {}
    heap = [(existing.get(name, 0), position, name) for position, name in enumerate(nodes)]
    heap = [entry for entry in heap if entry[0] < nodes[entry[2]]]
    heapq.heapify(heap)
    assigned: dict[str, str] = {}
    for pod in pods_without_node:
        if not heap:
            raise Unschedulable(pod, sum(nodes.values()), assigned)
        count, position, name = heapq.heappop(heap)
        assigned[pod] = name
        if count + 1 < nodes[name]:
            heapq.heappush(heap, (count + 1, position, name))
    return assigned
