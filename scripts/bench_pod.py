#!/usr/bin/env python3
"""Benchmark: add and delete one pod in a running lab of N nodes × M pods; print one JSON line.

    sudo python3 scripts/bench_pod.py --nodes 10 --pods 100 --rounds 20

add_ms: from ``apply`` (the manifest written to the store) until the node's agent reports the pod Running;
del_ms: from ``delete`` until the agent has stopped it, released its IP and removed its namespace. Medians and
90th percentiles over the rounds. Not a test: the figures go to the README.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emulator import plugins  # noqa: E402
from emulator.lab import builder, teardown  # noqa: E402
from emulator.lab.api import Lab  # noqa: E402
from emulator.topology.loader import loads  # noqa: E402

plugins.install()
from bench_up import topology_text  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(int(len(xs) * p), len(xs) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--name", default="benchpod")
    a = ap.parse_args()
    topo = loads(topology_text(a.name, a.nodes, a.pods, "vxlan", "pause"), source="<bench>")
    try:
        builder.up(topo)
        lab = Lab(a.name)
        adds, dels = [], []
        for i in range(a.rounds):
            name = f"extra-{i}"
            t0 = time.perf_counter()
            lab.apply_pod({"name": name, "node": f"n{1 + i % a.nodes}"})
            lab.wait_pod(name)
            adds.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            lab.delete_pod(name)
            dels.append((time.perf_counter() - t0) * 1000)
    finally:
        teardown.destroy(a.name)
    print(json.dumps({"nodes": a.nodes, "pods": a.nodes * a.pods, "rounds": a.rounds,
                      "add_ms_median": round(statistics.median(adds), 1), "add_ms_p90": round(pct(adds, 0.9), 1),
                      "del_ms_median": round(statistics.median(dels), 1), "del_ms_p90": round(pct(dels, 0.9), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
