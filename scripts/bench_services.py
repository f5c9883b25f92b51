#!/usr/bin/env python3
"""Benchmark: how fast a Service change reaches the rules of every node (kube-proxy's "network programming
latency"), with S Services × E endpoints on N nodes; one JSON line per kube-proxy mode.

    sudo python3 scripts/bench_services.py [--mode iptables|nftables|both] [--nodes 10] [--services 100]
                                          [--endpoints 10] [--changes 20] [--name sbench]

The lab has one pause pod per node; the Services have no selector and their Endpoints are written straight into
the store (as the endpoints controller would), each naming E of the pods' addresses on distinct ports, so the
measurement isolates kube-proxy: the initial full sync of S × E endpoints on every node, then ``--changes``
changes, alternating "one endpoint of one Service replaced" and "one Service added". For each change the clock
starts just before the store write and stops when the last of the N kube-proxies has finished the transaction
that contains it (each reports the store versions it synced and when, in its status file). The target is 200 ms.
Not a test: figures go to the README and docs/services.md.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emulator import plugins  # noqa: E402
from emulator.lab import builder, teardown  # noqa: E402
from emulator.lab.api import Lab, run_in  # noqa: E402
from emulator.services import registry  # noqa: E402
from emulator.services.component import wait_synced  # noqa: E402
from emulator.services.endpoints import manifest as endpoints_manifest  # noqa: E402
from emulator.services.model import Service, ServicePort  # noqa: E402
from emulator.services.proxy.kubeproxy import status_path  # noqa: E402
from emulator.state.store import read_json  # noqa: E402
from emulator.topology.loader import loads  # noqa: E402

plugins.install()


def topology_text(name: str, nodes: int, mode: str, routing: str) -> str:
    lines = ["version: 1", f"name: {name}", f"routing: {routing}", f"kubeProxy: {{mode: {mode}}}", "nodes:"]
    lines += [f"  - name: n{i}" for i in range(1, nodes + 1)]
    lines.append("pods:")
    lines += [f"  - {{name: p{i}, node: n{i}}}" for i in range(1, nodes + 1)]
    return "\n".join(lines) + "\n"


def endpoints_for(name: str, ips: list[str], base_port: int, count: int) -> dict:
    addrs = [{"ip": ips[i % len(ips)], "nodeName": f"n{i % len(ips) + 1}"} for i in range(count)]
    return endpoints_manifest(name, "default", [{"addresses": [a], "ports": [{"name": "http", "port": base_port + i,
                                                                              "protocol": "TCP"}]}
                                                for i, a in enumerate(addrs)])


def add_service(lab: Lab, cidr: ipaddress.IPv4Network, i: int, ips: list[str], eps: int) -> None:
    svc = Service(f"svc-{i}", ports=(ServicePort(80, 8080, "TCP", "http"),))
    registry.put_service(lab.store, svc, cidr)
    lab.store.put("endpoints", f"svc-{i}", endpoints_for(f"svc-{i}", ips, 8000, eps))


def applied_everywhere(lab: Lab, nodes: list[str], versions: tuple[int, int], timeout: float = 10) -> float:
    """Wall-clock time at which the last node reported a sync covering ``versions``."""
    deadline = time.monotonic() + timeout
    done: dict[str, float] = {}
    while len(done) < len(nodes):
        for n in nodes:
            if n in done:
                continue
            st = read_json(status_path(lab.paths, n)) or {}
            v = st.get("versions") or [0, 0]
            if v[0] >= versions[0] and v[1] >= versions[1]:
                done[n] = st["time"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes {sorted(set(nodes) - set(done))} did not apply the change in {timeout}s")
        time.sleep(0.001)
    return max(done.values())


def run(mode: str, a: argparse.Namespace) -> dict:
    name = f"{a.name}{mode[:3]}"
    log = lambda s: print(f"  [{mode}] {s}", file=sys.stderr, flush=True)  # noqa: E731
    topo = loads(topology_text(name, a.nodes, mode, a.routing), source="<bench>")
    try:
        builder.up(topo, progress=log)
        lab = Lab(name)
        nodes = [n.name for n in topo.nodes]
        ips = [lab.pod(f"p{i}").ip for i in range(1, a.nodes + 1)]
        cidr = topo.service_cidr
        t0 = time.perf_counter()
        for i in range(a.services):
            add_service(lab, cidr, i, ips, a.endpoints)
        wait_synced(lab.paths, lab.store, nodes, timeout=60)
        initial = time.perf_counter() - t0
        full_ms = [read_json(status_path(lab.paths, n)).get("lastSyncMs") for n in nodes]
        log(f"{a.services} services x {a.endpoints} endpoints programmed on {a.nodes} nodes in {initial:.2f}s")
        time.sleep(1.5)  # let the periodic health checks settle
        lat: list[float] = []
        for c in range(a.changes):
            time.sleep(0.3)
            start = time.time()
            if c % 2 == 0:  # replace one endpoint of one service
                k = (c * 7) % a.services
                ep = endpoints_for(f"svc-{k}", ips, 8000 + 100 * (c + 1), a.endpoints)
                lab.store.put("endpoints", f"svc-{k}", ep)
            else:  # add a service
                add_service(lab, cidr, a.services + c, ips, a.endpoints)
            versions = (lab.store.version("services"), lab.store.version("endpoints"))
            lat.append((applied_everywhere(lab, nodes, versions) - start) * 1000)
        node1 = lab.node(nodes[0]).netns
        check = ["iptables-save", "-t", "nat"] if mode == "iptables" else ["nft", "list", "table", "ip", "kube-proxy"]
        last_port = 8000 + 100 * (((a.changes - 1) // 2) * 2 + 1)
        assert f":{last_port}" in run_in(node1, check).stdout, "the last change is not in node 1's rules"
        lat.sort()
        return {"mode": mode, "nodes": a.nodes, "services": a.services + a.changes // 2,
                "endpoints_per_service": a.endpoints, "initial_program_s": round(initial, 2),
                "full_sync_ms_median": round(statistics.median(x for x in full_ms if x), 1),
                "changes": a.changes, "change_ms_median": round(statistics.median(lat), 1),
                "change_ms_p90": round(lat[int(0.9 * (len(lat) - 1))], 1), "change_ms_max": round(lat[-1], 1),
                "target_ms": 200, "within_target": lat[-1] <= 200}
    finally:
        teardown.destroy(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="both", choices=["iptables", "nftables", "both"])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--routing", default="vxlan")
    ap.add_argument("--name", default="sbench")
    a = ap.parse_args()
    for mode in (["iptables", "nftables"] if a.mode == "both" else [a.mode]):
        print(json.dumps(run(mode, a)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
