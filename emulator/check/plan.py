"""Which connections ``podlab check`` opens: every pod pair in a small lab, a spanning set in a large one.

Up to ``FULL_MAX_PODS`` Running pods (or with ``--full``) the plan is the full matrix: every ordered pair of pods.
Above that the N² matrix is not worth its cost (5,000 pods would be 25 million connections) and the plan is a
*spanning set* that still exercises every path the network model has:

- the pods of each node are numbered 0..k-1 (sorted by name); for every ordered pair of nodes (a, b) pod
  ``j mod k_a`` of a connects to pod ``j mod k_b`` of b for j < max(k_a, k_b): every pod sends to a pod on every
  other node, every pod is reached from every other node, and every node pair is crossed in both directions;
- on each node, pod j and pod j XOR 1 connect both ways (with an odd count the last pod pairs with pod 0), so the
  bridge path is proven for every pod in both directions with one neighbour entry per pod;
- plus a random sample of the remaining pairs, drawn with a seed the report shows (``--seed`` repeats a run).

``node/<n> → pod`` probes (each node to every pod on it) are part of every plan. Probes are ordered by the pod
index ``j`` ("waves"): a wave touches few pods, so the neighbour entries it needs are made close together in time
and are no longer needed afterwards (see ``neighbours``, which keeps the probes within the kernel's table).
``ordered(group)`` runs ``group`` waves at a time, source node by source node: the underlay entries a source node
needs (one per other node) are then made once per group of waves instead of once per wave, while the entries of
the group's pods (2 per pod) stay made for the group's length; ``group_for`` chooses the largest group that fits.
Pure code: no kernel, unit-tested for the coverage properties above.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Literal

FULL_MAX_PODS = 100


@dataclass(frozen=True)
class Plan:
    """Probes in order: (source, target pod); a source is a pod name or ``node/<name>``."""

    probes: tuple[tuple[str, str], ...]
    mode: Literal["full", "spanning"]
    pods: int
    seed: int | None = None
    sampled: int = 0
    waves: tuple[int, ...] = ()  # per probe: its wave (the sample: after the last), for ``ordered``
    src_nodes: tuple[int, ...] = ()  # per probe: the index of its source's node

    def ordered(self, group: int) -> list[tuple[str, str]]:
        """The probes, ``group`` waves at a time and source node by source node within a group."""
        if not self.waves or group <= 1:
            return list(self.probes)
        idx = sorted(range(len(self.probes)), key=lambda i: (self.waves[i] // group, self.src_nodes[i], self.waves[i]))
        return [self.probes[i] for i in idx]

    @property
    def pod_pairs(self) -> int:
        return sum(1 for s, _ in self.probes if not s.startswith("node/"))

    @property
    def all_pairs(self) -> int:
        return self.pods * (self.pods - 1)

    def describe(self) -> str:
        if self.mode == "full":
            return f"full matrix: {self.pod_pairs} of {self.all_pairs} pod pairs"
        return (f"spanning set: {self.pod_pairs} of {self.all_pairs} pod pairs (every pod to and from every node, "
                f"every node pair both ways, {self.sampled} sampled with seed {self.seed}; --full for all)")

    def as_dict(self) -> dict:
        return {"mode": self.mode, "pods": self.pods, "pairs": self.pod_pairs, "of": self.all_pairs,
                "seed": self.seed, "sampled": self.sampled}


def default_sample(pods: int) -> int:
    return max(100, pods // 10)


def group_for(budget: int, nodes: int) -> int:
    """How many waves to run at once. Where every node's underlay entries (N × (N-1)) fit the neighbour budget
    beside two waves, one: the underlay entries stay made and each pod's are made once. Otherwise as many waves
    as the budget holds at about 3 entries per pod of a wave (gateway, the node's entry for it, its same-node
    peer; one pod per node): measured in a simulation of 50 × 100 pods with a budget of 810, 5 waves at a time
    delete 4 × fewer entries than 1, and 8 (more than fit) 5 × more."""
    n = max(nodes, 1)
    if n * (n - 1) + 8 * n + 100 <= budget:
        return 1
    return max(1, budget // (3 * n))


def make(pods: Iterable[tuple[str, str]], full: bool | None = None, seed: int | None = None,
         sample: int | None = None) -> Plan:
    """The plan for ``pods`` ((name, node) each). ``full=None`` chooses by size; ``seed=None`` draws one."""
    by_node: dict[str, list[str]] = defaultdict(list)
    for name, node in pods:
        by_node[node].append(name)
    for names in by_node.values():
        names.sort()
    nodes = sorted(by_node)
    total = sum(len(v) for v in by_node.values())
    node_probes = [(j, f"node/{n}", by_node[n][j]) for n in nodes for j in range(len(by_node[n]))]
    if full or (full is None and total <= FULL_MAX_PODS):
        return Plan(tuple(_full(by_node, nodes) + [(s, t) for _, s, t in node_probes]), "full", total)
    if seed is None:
        seed = random.SystemRandom().randrange(1, 10**6)
    waves: list[tuple[int, str, str]] = list(node_probes)
    index = {n: i for i, n in enumerate(nodes)}
    node_of = {name: node for node, names in by_node.items() for name in names}
    for a in nodes:
        pa = by_node[a]
        for j, t in _same_node(pa):
            waves.append((j, pa[j], t))
        for b in nodes:
            if b == a:
                continue
            pb = by_node[b]
            waves += [(j, pa[j % len(pa)], pb[j % len(pb)]) for j in range(max(len(pa), len(pb)))]
    waves.sort(key=lambda w: (w[0], w[1].startswith("node/")))
    chosen = [(s, t) for _, s, t in waves]
    taken = {p for p in chosen if not p[0].startswith("node/")}
    extra = _sample(sorted(node_of), taken, default_sample(total) if sample is None else sample,
                    random.Random(seed))
    last = max((w for w, _, _ in waves), default=0) + 1
    wave_of = tuple([w for w, _, _ in waves] + [last] * len(extra))
    src = tuple(index[s[5:]] if s.startswith("node/") else index[node_of[s]] for s, _ in chosen + extra)
    return Plan(tuple(chosen + extra), "spanning", total, seed, len(extra), wave_of, src)


def _full(by_node: dict[str, list[str]], nodes: list[str]) -> list[tuple[str, str]]:
    """Every ordered pair, each pair's two directions side by side (they share their neighbour entries)."""
    names = [n for node in nodes for n in by_node[node]]
    out = []
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            out += [(x, y), (y, x)]
    return out


def _same_node(names: list[str]) -> list[tuple[int, str]]:
    """(index, target) for each same-node probe: j ↔ j^1, and with an odd count the last pod ↔ pod 0."""
    k = len(names)
    out = [(j, names[j ^ 1]) for j in range(k) if (j ^ 1) < k]
    if k % 2 == 1 and k > 1:
        out += [(k - 1, names[0]), (0, names[k - 1])]
    return out


def _sample(names: list[str], taken: set[tuple[str, str]], want: int, rng: random.Random) -> list[tuple[str, str]]:
    """Up to ``want`` ordered pairs not in ``taken``, uniformly at random (a seeded ``rng``)."""
    n = len(names)
    want = min(want, n * (n - 1) - len(taken))
    out: list[tuple[str, str]] = []
    seen = set(taken)
    tries = 0
    while len(out) < want and tries < 20 * want + 100:
        tries += 1
        x, y = rng.randrange(n), rng.randrange(n)
        if x != y and (names[x], names[y]) not in seen:
            seen.add((names[x], names[y]))
            out.append((names[x], names[y]))
    return out
