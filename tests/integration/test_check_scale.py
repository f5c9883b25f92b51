"""Issue 16 acceptance: `podlab check` of a few hundred pods fits a memory ceiling the per-pod design cannot, probes
a spanning set (and says so), stays within the kernel's neighbour table, and leaves nothing running.

The per-pod design started a Python server in every pod and a prober per pod (a thread per connection): measured
with ``scripts/bench_check.py --tree`` on a 2 × 20 lab, 3.1 GB of resident memory summed over its process tree
(about 75 MB per pod) and 3,371 processes and threads. The ceiling here is 200 MB for 520 pods, sampled over the
check's whole process tree, which that design would exceed at its third pod.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter

from emulator.lab.api import Lab
from emulator.netlink import neightable
from tests.integration.conftest import ROOT, podlab, podlab_argv, podlab_env, unique_name

NODES, PODS = 4, 130
CEILING = 200 * 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")


def topology(name: str) -> str:
    lines = ["version: 1", f"name: {name}", "nodes:"] + [f"  - name: n{i}" for i in range(1, NODES + 1)] + ["pods:"]
    for i in range(1, NODES + 1):
        lines += [f"  - {{name: p{i}-{j}, node: n{i}, containers: [{{name: c, image: pause}}]}}"
                  for j in range(1, PODS + 1)]
    return "\n".join(lines) + "\n"


def _stat(pid: str) -> tuple[int, int] | None:
    """(ppid, start time) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def run_sampled(argv: list[str], interval: float = 0.1) -> tuple[subprocess.CompletedProcess, int, set]:
    """Run argv; every ``interval`` sum the resident memory of its process tree. Returns (result, peak bytes,
    every (pid, start time) seen in the tree)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=podlab_env())
    peak, seen = 0, set()
    out: list[str] = []
    import threading
    reader = threading.Thread(target=lambda: out.append(proc.communicate()[0]))
    reader.start()
    while proc.poll() is None:
        children: dict[int, list[tuple[int, int]]] = {}
        for p in os.listdir("/proc"):
            if p.isdigit():
                st = _stat(p)
                if st:
                    children.setdefault(st[0], []).append((int(p), st[1]))
        tree, todo = [], [proc.pid]
        while todo:
            for pid, start in children.get(todo.pop(), []):
                tree.append((pid, start))
                todo.append(pid)
        me = _stat(str(proc.pid))
        if me:
            seen.add((proc.pid, me[1]))
        seen.update(tree)
        peak = max(peak, _rss(proc.pid) + sum(_rss(pid) for pid, _ in tree))
        time.sleep(interval)
    reader.join()
    return subprocess.CompletedProcess(argv, proc.returncode, out[0] if out else "", ""), peak, seen


def test_check_of_520_pods_fits_the_ceiling_and_leaves_nothing(tmp_path) -> None:
    name = unique_name("scale")
    path = tmp_path / "scale.yaml"
    path.write_text(topology(name))
    fulls0 = neightable.read_stats().table_fulls
    up = podlab("up", str(path))
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        lim = neightable.read_limits()
        need = neightable.lab_estimate(NODES, NODES * PODS)
        if need + neightable.read_stats().entries > lim.gc_thresh3:  # 1,052 entries: more than the default 1,024
            assert "neighbour (ARP) entries" in up.stderr and "sudo sysctl -w net.ipv4.neigh.default" in up.stderr
        r, peak, seen = run_sampled(podlab_argv("check", "-o", "json", "--seed", "16", lab=name))
        report = json.loads(r.stdout)
        mode = report["modes"][0]
        assert r.returncode == 0 and report["ok"], json.dumps(mode, indent=1)[-3000:]
        assert peak < CEILING, f"the check's process tree peaked at {peak / 2**20:.0f} MB"
        plan = mode["plan"]
        # the topology's 520 pods and kube-system's 2 coredns pods: every pod of the pod network is checked
        per_node = Counter(p.node for p in Lab(name).pods)
        total = sum(per_node.values())
        assert total == 522 and sorted(per_node.values()) == [130, 130, 131, 131], per_node
        assert plan["mode"] == "spanning" and plan["seed"] == 16 and plan["of"] == total * (total - 1)
        # max(k_a, k_b) per ordered node pair (12 of them) + the same-node pairs (k per node, k + 1 when k is odd)
        # + the sample (100)
        cross = sum(max(per_node[a], per_node[b]) for a in per_node for b in per_node if a != b)
        same = sum(k + k % 2 for k in per_node.values())
        assert plan["pairs"] == cross + same + 100, (plan, per_node)
        assert any("spanning set" in n and "seed 16" in n for n in mode["notes"])
        checks = {c["name"]: c for c in mode["checks"]}
        assert f"{plan['pairs']}/{plan['pairs']} pairs connected" in checks["pod-to-pod"]["summary"]
        assert f"{total}/{total} node→pod" in checks["node-to-pod"]["summary"]
        assert neightable.read_stats().table_fulls == fulls0, "the neighbour table overflowed during the check"
        time.sleep(0.2)
        left = [(pid, start) for pid, start in seen if (_stat(str(pid)) or (0, -1))[1] == start]
        assert not left, f"processes of the check still running: {left}"
    finally:
        podlab("down", name)
