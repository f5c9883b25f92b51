#!/usr/bin/env python3
"""Benchmark: cold start of an N-node bgp lab until every node holds every other node's route; one JSON line.

    sudo python3 scripts/bench_bgp.py --nodes 10 [--pods 1] [--layout mesh|reflector] [--runs 3] [--name bbench]
    sudo python3 scripts/bench_bgp.py --timeline [--nodes 3]

routes_s runs from the start of ``up`` (topology already validated) until the kernel of every node holds a
``proto bird`` route for every other node's slice (a watcher thread dumps the routes of every node namespace
every 10 ms); up_s until ``up`` returned (it also waits for the pods and for that same convergence); down_s until
the lab is removed. With several runs the medians are reported too. Target (issue 5): routes_s <= 5 s for 10 nodes.
Not a test: the figure goes to docs/bgp-and-faults.md.

``--timeline`` measures instead how fast routes move on a small lab (one JSON line, seconds, median of --runs):
BIRD stopped / killed on the last node → its slice gone from every other node; BIRD started again → every
route back everywhere; node failed → withdrawn (hold time); node healed / link healed → relearned.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emulator import plugins  # noqa: E402
from emulator import faults  # noqa: E402
from emulator.lab import builder, teardown  # noqa: E402
from emulator.lab.api import Lab  # noqa: E402
from emulator.routing import bgp  # noqa: E402
from emulator.topology.loader import loads  # noqa: E402

plugins.install()


def topology_text(name: str, nodes: int, pods: int, layout: str) -> str:
    lines = ["version: 1", f"name: {name}", "routing: bgp", f"bgp: {{mode: {layout}}}", "nodes:"]
    lines += [f"  - name: n{i}" for i in range(1, nodes + 1)]
    lines.append("pods:" if pods else "pods: []")
    for i in range(1, nodes + 1):
        for j in range(1, pods + 1):
            lines += [f"  - name: p{i}-{j}", f"    node: n{i}", "    containers:", "      - {name: c, image: pause}"]
    return "\n".join(lines) + "\n"


def watch(topo, t0: float, done: threading.Event, out: dict) -> None:
    """Record the first moment every node holds every route (namespaces that do not exist yet count as missing)."""
    while not done.is_set():
        try:
            if not bgp.missing_routes(topo):
                out["routes_s"] = time.perf_counter() - t0
                return
        except Exception:  # noqa: BLE001 - the lab is still being built
            pass
        time.sleep(0.01)


def one_run(name: str, nodes: int, pods: int, layout: str) -> dict:
    topo = loads(topology_text(name, nodes, pods, layout), source="<bench>")
    seen: dict = {}
    done = threading.Event()
    t0 = time.perf_counter()
    watcher = threading.Thread(target=watch, args=(topo, t0, done, seen), daemon=True)
    watcher.start()
    try:
        builder.up(topo, progress=lambda s: print(f"  {time.perf_counter() - t0:6.3f}s {s}", file=sys.stderr))
        up_s = time.perf_counter() - t0
        watcher.join(timeout=10)
    finally:
        done.set()
        t1 = time.perf_counter()
        teardown.destroy(name)
        down_s = time.perf_counter() - t1
    return {"routes_s": round(seen.get("routes_s", float("nan")), 3), "up_s": round(up_s, 3),
            "down_s": round(down_s, 3)}


def _until(cond, timeout: float = 10.0) -> float:
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            return float("nan")
        time.sleep(0.002)
    return time.perf_counter() - t0


def timeline(name: str, nodes: int, runs: int) -> dict:
    topo = loads(topology_text(name, nodes, 1, "mesh"), source="<bench>")
    last, first = topo.nodes[-1].name, topo.nodes[0].name
    lost = str(topo.node(last).pod_cidr)

    def gone() -> bool:  # no other node holds the last node's slice
        missing = bgp.missing_routes(topo)
        return all(lost in missing.get(n.name, []) for n in topo.nodes if n.name != last)

    def full() -> bool:
        return not bgp.missing_routes(topo)

    steps: dict[str, list[float]] = {}

    def measure(key: str, action, cond) -> None:
        t0 = time.perf_counter()
        action()
        steps.setdefault(key, []).append(time.perf_counter() - t0 + _until(cond))

    builder.up(topo)
    lab = Lab(name)
    try:
        for _ in range(runs):
            measure("stop_withdrawn_s", lambda: bgp.stop_daemon(name, last), gone)
            measure("start_relearned_s", lambda: bgp.start_daemon(name, last), full)
            measure("kill_withdrawn_s", lambda: bgp.stop_daemon(name, last, kill=True), gone)
            measure("restart_relearned_s", lambda: bgp.start_daemon(name, last), full)
            measure("node_fail_withdrawn_s", lambda: faults.fail_node(lab, last), gone)
            time.sleep(1)
            measure("node_heal_relearned_s", lambda: faults.heal_node(lab, last), full)
            faults.fail_link(lab, first, last)
            _until(lambda: lost in bgp.missing_routes(topo).get(first, []))
            time.sleep(1)
            measure("link_heal_relearned_s", lambda: faults.heal_link(lab, first, last), full)
    finally:
        teardown.destroy(name)
    return {"timeline_nodes": nodes, "runs": runs,
            **{k: round(statistics.median(v), 3) for k, v in steps.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=1, help="pause pods per node")
    ap.add_argument("--layout", choices=["mesh", "reflector"], default="mesh")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--name", default="bbench")
    ap.add_argument("--timeline", action="store_true", help="measure withdraw/relearn times instead")
    a = ap.parse_args()
    if a.timeline:
        print(json.dumps(timeline(a.name, a.nodes if a.nodes != 10 else 3, a.runs)))
        return 0
    runs = [one_run(a.name, a.nodes, a.pods, a.layout) for _ in range(a.runs)]
    n = a.nodes
    result = {"nodes": n, "pods": n * a.pods, "layout": a.layout,
              "sessions": n * (n - 1) // 2 if a.layout == "mesh" else n - 1, "routes": n * (n - 1), "runs": runs}
    if a.runs > 1:
        for key in ("routes_s", "up_s", "down_s"):
            result[f"{key}_median"] = round(statistics.median(r[key] for r in runs), 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
