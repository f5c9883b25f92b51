#!/usr/bin/env python3
"""Benchmark: ``podlab check`` on a lab of N nodes × M pause pods: time, peak memory, processes started.

    sudo python3 scripts/bench_check.py --nodes 10 --pods 100 [--routing vxlan] [--full] [--raise-neigh-limits]

The lab is brought up (not timed), then ``python -m emulator --lab NAME check -o json`` runs in a PID namespace
of its own (``unshare --pid --fork --mount-proc``) under a small sampler that is PID 1 there: every 50 ms it sums
the resident memory of every process in that namespace except itself (the check and whatever it started), and
at the end the namespace's last PID tells how many processes the check started in all (short-lived ones
included). The lab's own processes (agents, containers) are measured once before the check, for comparison.
One JSON line: check_s, check_peak_rss_mb (sum over the check's process tree, sampled), check_maxrss_mb (the
check process's own peak, from the kernel), processes_started, lab_rss_mb, the plan, and ok.

The kernel's neighbour table (``gc_thresh3``) limits how fast a check of a large lab may go; the check paces
itself to stay under it. ``--raise-neigh-limits`` raises the root namespace's limits for the run (an explicit
change of the machine's settings, printed, and put back at the end); without it nothing is changed.
Not a test: figures go to the README.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def inner(argv: list[str]) -> int:
    """PID 1 of the check's PID namespace: run argv, sample the namespace's memory, report on stderr."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    peak = 0
    out_chunks: list[str] = []
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while True:
        for _ in sel.select(0.05):
            chunk = os.read(proc.stdout.fileno(), 1 << 16).decode()
            if chunk:
                out_chunks.append(chunk)
            else:
                sel.unregister(proc.stdout)
        total = sum(rss_of(int(p)) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid())
        peak = max(peak, total)
        if proc.poll() is not None and not sel.get_map():
            break
    import resource
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    with open("/proc/loadavg") as f:
        last_pid = int(f.read().split()[4])
    sys.stdout.write("".join(out_chunks))
    print(json.dumps({"peak_rss": peak, "maxrss": maxrss, "started": last_pid - 1, "rc": proc.returncode}),
          file=sys.stderr)
    return 0


def lab_rss(lab: str) -> int:
    """Resident memory of the lab's processes: its agents/daemons from its process journal, and every process
    they started (the containers)."""
    from emulator.proc.lifecycle import alive
    from emulator.state import record
    pids = [e.pid for e in record.processes(lab) if alive(e.pid, e.start)]
    seen = set(pids)
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(p))
    todo = list(pids)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return sum(rss_of(p) for p in seen)


def main() -> int:
    if sys.argv[1:2] == ["--inner"]:
        return inner(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=100, help="pods per node")
    ap.add_argument("--routing", default="vxlan")
    ap.add_argument("--name", default="scalbench")
    ap.add_argument("--full", action="store_true", help="check every pod pair (podlab check --full)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tree", default=os.path.join(HERE, ".."),
                    help="run the check of another checkout (e.g. the per-pod design before issue 16), for comparison")
    ap.add_argument("--raise-neigh-limits", action="store_true",
                    help="raise net.ipv4.neigh.default.gc_thresh2/3 of the root namespace for the run (restored after)")
    a = ap.parse_args()
    from bench_up import topology_text, wait_quiet
    from emulator.lab import builder, teardown
    from emulator.netlink import neightable
    from emulator.topology.loader import loads
    topo = loads(topology_text(a.name, a.nodes, a.pods, a.routing, "pause"), source="<bench>")
    changes: list[tuple[str, int, int]] = []
    before = neightable.read_limits()
    if a.raise_neigh_limits:
        need = neightable.lab_estimate(a.nodes, a.nodes * a.pods, same_node_pairs=a.nodes * a.pods)
        changes = neightable.raise_limits(neightable.suggested(need, before))
        for key, old, new in changes:
            print(f"bench: raised {key} {old} → {new} (--raise-neigh-limits; restored at the end)", file=sys.stderr)
    wait_quiet()
    out: dict = {"nodes": a.nodes, "pods": a.nodes * a.pods, "routing": a.routing,
                 "gc_thresh3": neightable.read_limits().gc_thresh3}
    try:
        t0 = time.perf_counter()
        builder.up(topo)
        out["up_s"] = round(time.perf_counter() - t0, 2)
        out["lab_rss_mb"] = round(lab_rss(a.name) / 2**20, 1)
        env = dict(os.environ, PYTHONPATH=os.path.abspath(a.tree))
        argv = [sys.executable, "-m", "emulator", "--lab", a.name, "check", "-o", "json"]
        if os.path.abspath(a.tree) == os.path.abspath(os.path.join(HERE, "..")):
            argv += ["--seed", str(a.seed)] + (["--full"] if a.full else [])
        t0 = time.perf_counter()
        r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, os.path.abspath(__file__),
                            "--inner", "--", *argv], capture_output=True, text=True, env=env, cwd=a.tree)
        out["check_s"] = round(time.perf_counter() - t0, 2)
        meas = json.loads(r.stderr.strip().splitlines()[-1])
        rep = json.loads(r.stdout)
        mode = rep["modes"][0]
        out.update(ok=rep["ok"], check_peak_rss_mb=round(meas["peak_rss"] / 2**20, 1),
                   check_maxrss_mb=round(meas["maxrss"] / 2**20, 1), processes_started=meas["started"],
                   plan=mode.get("plan"), notes=mode.get("notes", []),
                   checks={c["name"]: [c["status"], round(c["seconds"], 2)] for c in mode["checks"]})
        if not rep["ok"]:
            out["failed"] = [(c["name"], c["summary"][:300], c["findings"][:3]) for c in mode["checks"]
                             if c["status"] == "FAIL"]
    finally:
        teardown.destroy(a.name)
        for key, old, new in reversed(changes):
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(str(old))
            print(f"bench: restored {key} {new} → {old}", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
