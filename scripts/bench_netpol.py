#!/usr/bin/env python3
"""Benchmark: NetworkPolicy at scale; prints one JSON line. Not a test: the figures go to the README.

    sudo python3 scripts/bench_netpol.py --nodes 10 --pods 100 --policies 100 --rounds 20

One lab of N nodes × M pause pods spread over 10 namespaces and 20 app labels, with an enforcer per node and P
policies (each selects one app of its namespace; ingress from an app of the same namespace, or a pod set of
another namespace, on 80/TCP; every fifth also restricts egress to an ipBlock and 53/UDP). Measured:

- ``change_ms``: one policy updated (its port toggled between 80 and 81) until every node's enforcer reports it
  applied (``component.wait_synced``: the store versions in each status file) — the policy is live everywhere;
- ``pod_ms``: a new pause pod, ``apply`` → Running (as ``bench_pod.py``), with 0 policies and with P policies,
  alternating phases; ``pod_added_ms`` is the difference of the medians (the cost of the policies to a pod's start);
  ``pod_ms_no_enforcer``: the same in a lab of the same size without NetworkPolicy enforcement (first, in a lab
  of its own); ``pod_live_ms``: apply → the new pod is in every node's sets (all enforcers applied it);
- ``tcp_mbps``: iperf3 TCP goodput (3 s per run) between two pods on different nodes with no policy and between
  an identical pair whose server a policy selects and admits the client, measured side by side, alternating;
  ``tcp_ratio`` = with / without;
- ``trace_admitted_ms`` / ``trace_dropped_ms``: ``trace`` of the admitted pair and of the other client to the same
  server (dropped by the policy), every policy in force (each reads every ruleset on the path, the nodes' policy
  tables included); ``nftrace_start_stop_ms``: the capture's rule watch on those two nodes started and stopped
  (counters read, trace table added, ``nft monitor`` started, then all undone).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emulator import plugins  # noqa: E402
from emulator.lab import builder, teardown  # noqa: E402
from emulator.lab.api import Lab, popen_in, run_in  # noqa: E402
from emulator.netpol import cluster, component, probe  # noqa: E402
from emulator.netpol.parse import parse_manifest  # noqa: E402
from emulator.tools import capture_rules, targets  # noqa: E402
from emulator.tools.trace import trace  # noqa: E402
from emulator.topology.loader import loads  # noqa: E402

plugins.install()
NS, APPS = 10, 20


def topology(name: str, nodes: int, pods: int, enforced: bool = True) -> str:
    lines = ["version: 1", f"name: {name}", "routing: vxlan"] + (["networkPolicies: []"] if enforced else []) + [
        "nodes:"]
    lines += [f"  - name: n{i}" for i in range(1, nodes + 1)]
    lines.append("pods:")
    k = 0
    for i in range(1, nodes + 1):
        for j in range(1, pods + 1):
            lines += [f"  - name: p{i}-{j}", f"    node: n{i}", f"    namespace: ns-{k % NS}",
                      f"    labels: {{app: a{k % APPS}}}", "    containers: [{name: c, image: pause}]"]
            k += 1
    for role, node in (("srv-open", "n2"), ("cli-open", "n1"), ("srv-pol", "n2"), ("cli-pol", "n1")):
        lines += [f"  - name: {role}", f"    node: {node}", f"    labels: {{role: {role}}}",
                  "    containers: [{name: c, image: pause}]"]
    return "\n".join(lines) + "\n"


def policy(k: int, port: int = 80) -> dict:
    ns = f"ns-{k % NS}"
    spec: dict = {"podSelector": {"matchLabels": {"app": f"a{k % APPS}"}},
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": f"a{(k + 1) % APPS}"}}},
                                        {"namespaceSelector": {"matchLabels": {
                                            "kubernetes.io/metadata.name": f"ns-{(k + 3) % NS}"}},
                                         "podSelector": {"matchLabels": {"app": f"a{k % 7}"}}}],
                               "ports": [{"port": port, "protocol": "TCP"}]}],
                  "policyTypes": ["Ingress"]}
    if k % 5 == 0:
        spec["egress"] = [{"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.9.0/24"]}}],
                           "ports": [{"port": 53, "protocol": "UDP"}]}]
        spec["policyTypes"].append("Egress")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"pol-{k}", "namespace": ns}, "spec": spec}


TPUT_POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "tput"},
               "spec": {"podSelector": {"matchLabels": {"role": "srv-pol"}},
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "cli-pol"}}}],
                                     "ports": [{"port": 5201}]}]}}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(int(len(xs) * p), len(xs) - 1)]


def stats(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 1), "p90": round(pct(xs, 0.9), 1), "max": round(max(xs), 1)}


def iperf(lab: Lab, server: str, client: str, seconds: int) -> float:
    srv = popen_in(lab.pod(server).netns, ["iperf3", "-s", "-1", "-p", "5201"], f"iperf3 server in {server}",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        r = run_in(lab.pod(client).netns, ["iperf3", "-c", lab.pod(server).ip or "", "-p", "5201", "-t",
                                           str(seconds), "-J"], timeout=seconds + 20)
        out = json.loads(r.stdout)
        return out["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        srv.kill()
        srv.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--policies", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--tput-runs", type=int, default=3)
    ap.add_argument("--trace-rounds", type=int, default=5)
    ap.add_argument("--name", default="netpbench")
    a = ap.parse_args()
    topo = loads(topology(a.name, a.nodes, a.pods), source="<bench>")
    out: dict = {"nodes": a.nodes, "pods": a.nodes * a.pods, "policies": a.policies, "rounds": a.rounds}
    base = loads(topology(a.name + "0", a.nodes, a.pods, enforced=False), source="<bench>")
    try:
        builder.up(base)
        blab, xs = Lab(base.name), []
        for i in range(a.rounds):
            t = time.perf_counter()
            blab.apply_pod({"name": f"extra-{i}", "node": f"n{1 + i % a.nodes}", "namespace": f"ns-{i % NS}"})
            blab.wait_pod(f"extra-{i}")
            xs.append((time.perf_counter() - t) * 1000)
            blab.delete_pod(f"extra-{i}")
        out["pod_ms_no_enforcer"] = stats(xs)
    finally:
        teardown.destroy(base.name)
    try:
        t0 = time.perf_counter()
        builder.up(topo)
        out["up_s"] = round(time.perf_counter() - t0, 2)
        lab = Lab(a.name)
        nodes = [n.name for n in lab.nodes]
        sync = lambda: component.wait_synced(lab.paths, lab.store, nodes, timeout=60)  # noqa: E731
        pols = [parse_manifest(policy(k)) for k in range(a.policies)]

        def put_all() -> float:
            t = time.perf_counter()
            for p in pols:
                cluster.put_policy(lab.store, p)
            sync()
            return (time.perf_counter() - t) * 1000

        def pod_rounds(tag: str, n: int, lives: list[float] | None = None) -> list[float]:
            xs = []
            for i in range(n):
                name = f"extra-{tag}-{i}"
                t = time.perf_counter()
                lab.apply_pod({"name": name, "node": f"n{1 + i % a.nodes}", "namespace": f"ns-{i % NS}",
                               "labels": {"app": f"a{(i + 1) % APPS}"}})
                lab.wait_pod(name)
                xs.append((time.perf_counter() - t) * 1000)
                if lives is not None:
                    sync()
                    lives.append((time.perf_counter() - t) * 1000)
                lab.delete_pod(name)
                sync()
            return xs

        without, with_, lives = [], [], []
        half = max(a.rounds // 2, 1)
        for phase in range(2):  # alternate: none, P, none, P
            cluster.delete_all_policies(lab.store)
            sync()
            without += pod_rounds(f"a{phase}", half)
            out.setdefault("put_all_ms", round(put_all(), 1))
            if phase:
                put_all()
            with_ += pod_rounds(f"b{phase}", half, lives)
        out["pod_ms_without"] = stats(without)
        out["pod_ms_with"] = stats(with_)
        out["pod_added_ms"] = round(statistics.median(with_) - statistics.median(without), 1)
        out["pod_live_ms"] = stats(lives)

        changes = []
        for i in range(a.rounds):
            k = i % a.policies
            p = parse_manifest(policy(k, 81 if i % 2 == 0 else 80))
            t = time.perf_counter()
            cluster.put_policy(lab.store, p)
            sync()
            changes.append((time.perf_counter() - t) * 1000)
        out["change_ms"] = stats(changes)
        status = [json.load(open(lab.paths.node_root(n) / "var/lib/kube-network-policies/status.json")) for n in nodes]
        out["rules_per_node"] = max(s["rules"] for s in status)

        cluster.put_policy(lab.store, parse_manifest(TPUT_POLICY))
        sync()
        open_, pol = [], []
        for _ in range(a.tput_runs):
            open_.append(iperf(lab, "srv-open", "cli-open", 3))
            pol.append(iperf(lab, "srv-pol", "cli-pol", 3))
        out["tcp_mbps_without"] = round(statistics.median(open_), 1)
        out["tcp_mbps_with"] = round(statistics.median(pol), 1)
        out["tcp_ratio"] = round(statistics.median(pol) / statistics.median(open_), 3)
        # the policy is in force: an unadmitted client times out (an admitted one is refused: no server now)
        res = probe.run([probe.Target(lab.pod(c).netns, lab.pod("srv-pol").ip or "", 5201) for c in
                         ("cli-open", "cli-pol")])
        out["tput_policy_in_force"] = [r.detail for r in res] == ["timeout", "refused"]

        traces, dropped, watches = [], [], []
        for _ in range(a.trace_rounds):  # the kernel's account, with every policy in force
            t = time.perf_counter()
            res_ok = trace(lab, "cli-pol", f"{lab.pod('srv-pol').ip}:5201")
            traces.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            res_drop = trace(lab, "cli-open", f"{lab.pod('srv-pol').ip}:5201")
            dropped.append((time.perf_counter() - t) * 1000)
            points = [targets.resolve(lab, p) for p in ("cli-pol", "srv-pol")]
            t = time.perf_counter()
            with capture_rules.RuleWatch.for_points(lab, points, None):
                pass
            watches.append((time.perf_counter() - t) * 1000)
        out["trace_admitted_ms"] = stats(traces)
        out["trace_dropped_ms"] = stats(dropped)
        out["trace_names_policy"] = (res_ok.delivered and res_drop.problem is not None
                                     and "default/tput" in (res_drop.problem or ""))
        out["nftrace_start_stop_ms"] = stats(watches)
    finally:
        teardown.destroy(a.name)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
