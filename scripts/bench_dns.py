#!/usr/bin/env python3
"""Benchmark cluster DNS (issue 17: "the DNS pods answer >= 5,000 queries/s together"); print one JSON line.

    sudo python3 scripts/bench_dns.py [--seconds 5] [--procs 2] [--sockets 16] [--window 8] [--name corebench]
                                      [--nodes 2] [--pods 0]        (1000-pod lab: --nodes 10 --pods 100)

On a 2-node lab (or ``--nodes`` nodes with ``--pods`` pause pods each) (kube-proxy iptables, vxlan) with its two ``coredns`` pods of kube-system (one per node) and a
client pod on node-1:

* ``qps``: answers per second received by ``dnsperf_probe.py`` run *inside the client pod* against 10.96.0.10
  (kube-proxy spreads its sockets over both replicas), dnsperf-like: ``--procs`` processes × ``--sockets`` UDP
  sockets × ``--window`` outstanding queries, names cycling over Services that exist and one that does not
  (NXDOMAIN); ``per_replica_qps`` from each replica's ``coredns_dns_requests_total`` (its ``:9153/metrics``);
* ``start_to_first_answer_s`` (median of 3): one more instance of the pods' program started in the client pod on
  another port, from its exec until it answers a query (Python's start, imports, the first zone build);
* ``rss_mb``: the resident memory of each replica's process after the load.

Not a test: the figures go to the README and docs/kubectl.md.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import dns.message  # noqa: E402

from emulator import plugins  # noqa: E402
from emulator.lab import builder, teardown  # noqa: E402
from emulator.lab.api import Lab  # noqa: E402
from emulator.netlink import netns  # noqa: E402
from emulator.services import coredns, dnsserver  # noqa: E402
from emulator.topology.loader import loads  # noqa: E402

plugins.install()
ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "scripts" / "dnsperf_probe.py"
NAMES = ["kube-dns.kube-system.svc.cluster.local", "kubernetes.default.svc.cluster.local",
         "web.default.svc.cluster.local", "db.default.svc.cluster.local", "nope.default.svc.cluster.local"]


def topology(name: str, nodes: int = 2, pods: int = 0) -> str:
    """The bench lab: ``nodes`` nodes, the client pod, and ``pods`` pause pods on every node (issue 17 asks for
    its figures on a 1000-pod lab: ``--nodes 10 --pods 100``)."""
    node_list = ", ".join(f"{{name: node-{i}}}" for i in range(1, nodes + 1))
    pause = "".join(f"  - {{name: p{i}-{j}, node: node-{i}, containers: [{{name: c, image: pause}}]}}\n"
                    for i in range(1, nodes + 1) for j in range(pods))
    return f"""
version: 1
name: {name}
nodes: [{node_list}]
kubeProxy: {{mode: iptables}}
services:
  - {{name: web, ports: [{{port: 80}}]}}
  - {{name: db, ports: [{{port: 5432}}]}}
pods:
  - {{name: client, node: node-1, containers: [{{name: c, image: busybox}}]}}
{pause}"""


def start_to_first_answer(lab: Lab, ns: str) -> float:
    conf = lab.paths.root / "coredns" / "Corefile.bench"
    conf.write_text(dnsserver.render(lab.paths.store, port=10053, metrics=19153))
    wire = dns.message.make_query(NAMES[0], "A").to_wire()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with netns.entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.005)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "emulator.services.dnsserver", "-conf", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            while True:
                sock.sendto(wire, ("127.0.0.1", 10053))
                try:
                    sock.recv(4096)
                    return time.perf_counter() - t0
                except (socket.timeout, ConnectionRefusedError):
                    if proc.poll() is not None or time.perf_counter() - t0 > 10:
                        raise RuntimeError("the DNS server did not answer within 10 s") from None
        finally:
            sock.close()
            proc.terminate()
            proc.wait(5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--sockets", type=int, default=16)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--name", default="corebench")
    ap.add_argument("--nodes", type=int, default=2, help="nodes of the lab (default 2)")
    ap.add_argument("--pods", type=int, default=0, help="pause pods per node besides the client (default 0)")
    a = ap.parse_args()
    log = lambda s: print(f"  {s}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        builder.up(loads(topology(a.name, a.nodes, a.pods), source="<bench>"), progress=log)
        lab = Lab(a.name)
        pods = [p for p in lab.store.list("pods", ns=coredns.NAMESPACE) if p["metadata"]["name"].startswith("coredns-")]
        sts = [lab.store.get_status("pods", p["metadata"]["name"], coredns.NAMESPACE) for p in pods]
        ips = [st["podIP"] for st in sts]
        client = lab.pod("client")
        out = client.exec([sys.executable, str(PROBE), "--server", "10.96.0.10", "--seconds", str(a.seconds),
                           "--procs", str(a.procs), "--sockets", str(a.sockets), "--window", str(a.window),
                           "--names", ",".join(NAMES), "--metrics", ",".join(ips)], timeout=a.seconds + 30)
        if out.returncode != 0:
            raise RuntimeError(f"the probe failed: {out.stderr}")
        probe = json.loads(out.stdout)
        rss = [rss_mb(st["containerStatuses"][0]["pid"]) for st in sts]
        starts = [start_to_first_answer(lab, client.netns) for _ in range(3)]
        print(json.dumps({"lab_pods": a.nodes * a.pods + 1, "replicas": len(ips),
                          "nodes": sorted(st["nodeName"] for st in sts), **probe,
                          "target_qps": 5000, "within_target": probe["qps"] >= 5000,
                          "start_to_first_answer_s": round(statistics.median(starts), 3), "rss_mb": rss}))
    finally:
        teardown.destroy(a.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
