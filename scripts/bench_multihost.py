#!/usr/bin/env python3
"""Benchmark: one lab over 3 emulated hosts against the same lab on one host, in one run; one JSON line.

    sudo flock /tmp/podlab-integration.lock python3 scripts/bench_multihost.py --nodes 30 --pods 20 [--hosts 3]
        [--routing host-gw] [--tree DIR] [--services] [--nic-mtu 9000]   # --tree: another checkout's podlab

The hosts are ``emulator.hosts.emulated`` holders (own netns/mount/pid namespaces and sshd, a LAN namespace,
the CLI run in a controller namespace): on this one machine they share its CPUs, so the figures show podlab's
own cost of going multi-host (SSH, one ``host serve`` per host, the plans, the stretch, the DF proof), not the
speed-up real machines would bring.

- ``local_up_s``/``local_down_s``: ``podlab up``/``down`` of the topology without hosts (the CLI, end to end);
- ``multi_up_s``/``multi_down_s``: the same with ``--hosts`` over ``--hosts`` hosts (CLI end to end, pods
  Running on every host and the stretch proven);
- ``up_s_by_hosts``: the multi-host ``up`` of the same lab over 1, 2, ... hosts (the cost of adding one);
- ``tcp_*_mbit``: iperf3 TCP goodput (3 s) between two pods on different nodes of one host, and on different
  hosts (through the stretch's VXLAN, and flannel.1's in vxlan mode), in the multi-host lab.
Not a test: the figures go to the README.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.hosts.emulated import EmulatedHosts, podlab_command  # noqa: E402

PY = sys.executable
CLI = ["env", f"PYTHONPATH={ROOT}", PY, "-m", "emulator"]
TREE = ROOT  # the podlab tree measured (--tree): its CLI on the controller and its `host serve` on the hosts


def topology(path: Path, name: str, nodes: int, pods: int, routing: str, services: bool = False) -> Path:
    lines = ["version: 1", f"name: {name}", f"routing: {routing}", "nodes:"]
    lines += [f"  - {{name: n{i}}}" for i in range(1, nodes + 1)]
    lines.append("pods:")
    for i in range(1, nodes + 1):
        lines += [f"  - {{name: p{i}-{j}, node: n{i}}}" for j in range(1, pods + 1)]
    lines += [f"  - {{name: perf-{i}, node: n{i}, labels: {{app: perf}}, containers: [{{name: c, image: netexec}}]}}"
              for i in (1, 2, 4) if i <= nodes]
    if services:  # a lab on one machine has kube-proxy anyway; across hosts a services section asks for it
        lines += ["services:", "  - {name: perf, selector: {app: perf}, ports: [{port: 80, targetPort: 8080}]}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(argv: list[str], timeout: float = 600) -> float:
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-6:])} failed ({r.returncode}): {r.stdout[-500:]} {r.stderr[-1500:]}")
    return time.monotonic() - t


def iperf(run: list[str], server: str, client: str, server_ip: str) -> float:
    """Goodput in Mbit/s from ``client`` to ``server`` (both pods), via ``podlab exec``."""
    subprocess.run([*run, "exec", server, "--", "iperf3", "-s", "-1", "-D"], check=True, capture_output=True,
                   cwd=ROOT)
    time.sleep(0.3)
    r = subprocess.run([*run, "exec", client, "--", "iperf3", "-c", server_ip, "-t", "3", "-J"],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        return float("nan")
    return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6


def pod_ip(run: list[str], pod: str) -> str:
    out = subprocess.run([*run, "get", "pods", "-o", "json"], capture_output=True, text=True, cwd=ROOT).stdout
    items = json.loads(out)["items"]
    for p in items:
        name = p.get("name") or p.get("metadata", {}).get("name")
        if name == pod:
            return p.get("ip") or p["status"]["podIP"]
    raise SystemExit(f"pod {pod} not found")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--routing", default="vxlan")
    ap.add_argument("--tree", help="measure the podlab of this source tree (the harness stays this one's)")
    ap.add_argument("--services", action="store_true", help="a services section in both labs (kube-proxy, DNS and "
                    "the Services push across hosts); adds apply_pod_s/delete_pod_s: one pod applied and deleted on "
                    "the multi-host lab, each with its Endpoints pushed to every host")
    ap.add_argument("--nic-mtu", type=int, default=1500, help="the emulated hosts' NIC MTU (their underlay gets "
                    "50 bytes less, vxlan pods another 50 less): 9000 for jumbo frames")
    a = ap.parse_args()
    global CLI, TREE
    if a.tree:
        TREE = Path(a.tree).resolve()
        CLI = ["env", f"PYTHONPATH={TREE}", PY, "-m", "emulator"]
    tmp = Path(tempfile.mkdtemp(prefix="mult-bench-"))
    out: dict = {"nodes": a.nodes, "pods_per_node": a.pods, "hosts": a.hosts, "routing": a.routing,
                 "services": a.services, "nic_mtu": a.nic_mtu, "tree": str(TREE)}

    local = topology(tmp / "local.yaml", "mult-bl", a.nodes, a.pods, a.routing, a.services)
    out["local_up_s"] = round(timed([*CLI, "up", str(local)]), 2)
    out["local_down_s"] = round(timed([*CLI, "down", "mult-bl"]), 2)

    with EmulatedHosts(a.hosts, mtu=a.nic_mtu) as hs:
        run = hs.controller_argv(CLI)
        full = hs.inventory(podlab_command(TREE))
        inv_text = json.loads(full.read_text())
        by_hosts = {}
        for k in range(1, a.hosts + 1):
            inv = tmp / f"inv{k}.yaml"
            inv.write_text(json.dumps({"hosts": inv_text["hosts"][:k]}))
            topo = topology(tmp / f"multi{k}.yaml", f"mult-bm{k}", a.nodes, a.pods, a.routing, a.services)
            t_up = timed([*run, "up", str(topo), "--hosts", str(inv)])
            by_hosts[k] = round(t_up, 2)
            if k == a.hosts:
                out["multi_up_s"] = round(t_up, 2)
                # round-robin: n1 on host 1, n2 on host 2, n4 on host 1 (with 3 hosts)
                ip1 = pod_ip(run, "perf-1")
                out["tcp_same_host_mbit"] = round(iperf(run, "perf-1", "perf-4", ip1), 0)
                out["tcp_cross_host_mbit"] = round(iperf(run, "perf-1", "perf-2", ip1), 0)
                out["tcp_cross_vs_same"] = round(out["tcp_cross_host_mbit"] / out["tcp_same_host_mbit"], 2)
                if a.services:
                    extra = tmp / "extra.yaml"
                    extra.write_text("name: perf-x\nnode: n3\nlabels: {app: perf}\n"
                                     "containers: [{name: c, image: netexec}]\n")
                    out["apply_pod_s"] = round(timed([*run, "apply", "-f", str(extra)]), 2)
                    out["delete_pod_s"] = round(timed([*run, "delete", "pod", "perf-x"]), 2)
            t_down = timed([*run, "down", f"mult-bm{k}"])
            if k == a.hosts:
                out["multi_down_s"] = round(t_down, 2)
        out["up_s_by_hosts"] = by_hosts
    shutil.rmtree(tmp, ignore_errors=True)
    out["up_ratio"] = round(out["multi_up_s"] / out["local_up_s"], 2)
    out["down_ratio"] = round(out["multi_down_s"] / out["local_down_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
