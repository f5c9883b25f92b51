#!/usr/bin/env python3
"""Benchmark: bring up and tear down a lab of N nodes × M pods (pause containers); print one JSON line.

    sudo python3 scripts/bench_up.py --nodes 10 --pods 100 [--routing vxlan] [--name bench]

up_s runs from the start of ``up`` (topology already validated) until every pod reports Running; down_s until
the kernel has released every namespace (the veth peers have vanished). Not a test: figures go to the README.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emulator import plugins  # noqa: E402
from emulator.lab import builder, teardown  # noqa: E402
from emulator.topology.loader import loads  # noqa: E402

plugins.install()


def topology_text(name: str, nodes: int, pods: int, routing: str, image: str) -> str:
    lines = ["version: 1", f"name: {name}", f"routing: {routing}", "nodes:"]
    lines += [f"  - name: n{i}" for i in range(1, nodes + 1)]
    lines.append("pods:")
    for i in range(1, nodes + 1):
        for j in range(1, pods + 1):
            lines += [f"  - name: p{i}-{j}", f"    node: n{i}", "    containers:",
                      f"      - {{name: c, image: {image}}}"]
    return "\n".join(lines) + "\n"


def netns_objects() -> int | None:
    """Network namespaces the kernel still holds (live and being freed), from /proc/slabinfo."""
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


def wait_quiet(max_s: float = 60.0, stable_s: float = 3.0) -> None:
    """Wait until the kernel has finished freeing earlier namespaces (a teardown still running in the kernel's
    cleanup worker holds the RTNL lock for long stretches and would slow this run down)."""
    deadline, last, since = time.monotonic() + max_s, netns_objects(), time.monotonic()
    while last is not None and time.monotonic() < deadline:
        time.sleep(0.5)
        now = netns_objects()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= stable_s:
            return


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=100, help="pods per node")
    ap.add_argument("--routing", default="vxlan")
    ap.add_argument("--image", default="pause")
    ap.add_argument("--name", default="bench")
    a = ap.parse_args()
    topo = loads(topology_text(a.name, a.nodes, a.pods, a.routing, a.image), source="<bench>")
    wait_quiet()
    t0 = time.perf_counter()
    c0 = cpu_times()
    try:
        builder.up(topo, progress=lambda s: print(f"  {time.perf_counter() - t0:6.3f}s {s}", file=sys.stderr))
        up_s = time.perf_counter() - t0
        c1 = cpu_times()
    finally:
        t1 = time.perf_counter()
        teardown.destroy(a.name)
        down_s = time.perf_counter() - t1
    busy = (c1[0] - c0[0]) / max(c1[1] - c0[1], 1)
    print(json.dumps({"nodes": a.nodes, "pods": a.nodes * a.pods, "routing": a.routing, "up_s": round(up_s, 3),
                      "down_s": round(down_s, 3), "cpu_busy_during_up": round(busy, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
