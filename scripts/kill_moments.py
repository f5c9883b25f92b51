#!/usr/bin/env python3
"""Acceptance run of issue 16: SIGKILL ``podlab up`` (and ``capture``, ``exec``) at many random moments and count
what ``cleanup``/``down`` leave behind; print one JSON line per command.

    sudo python3 scripts/kill_moments.py [--up 100] [--capture 100] [--exec 100] [--seed N] [--up-lab 6x20]

``up``: a 2-node lab with Services, a Deployment and the external host (the integration test's topology), killed
at a moment drawn uniformly over an undisturbed bring-up, then ``podlab cleanup`` (``down`` if it had finished).
``capture``/``exec``: killed at random moments on one running lab (every third left running), each kill followed
by a check that every tool process in the lab's namespaces is named by the journal (or descends from one it
names), then ``down``. "Left" is defined in tests/integration/killing.py: namespaces, state, recorded processes
alive, processes inside the lab's namespaces, descendants (we are their subreaper). Run it under the machine's
integration lock; lab names start with ``prockill``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.lab import teardown  # noqa: E402
from tests.integration import killing  # noqa: E402
from tests.integration import test_kill_moments as tkm  # noqa: E402


def _summary(what: str, results: list[killing.Leftovers], extra: dict) -> dict:
    return {"command": what, "kills": len(results), "dirty": sum(1 for r in results if not r.clean),
            "namespaces_left": sum(len(r.namespaces) for r in results),
            "state_left": sum(1 for r in results if r.state),
            "recorded_alive": sum(len(r.recorded) for r in results),
            "in_lab_namespaces": sum(len(r.in_lab_ns) for r in results),
            "descendants_left": sum(len(r.descendants) for r in results),
            "transient_helpers": sum(len(r.transient) for r in results), **extra}


def services_lab(nodes: int, pods: int) -> str:
    """A lab of ``nodes`` × ``pods`` (pause pods, each node's pods behind one Service), with the external host
    and a Deployment: every kind of process ``up`` starts (agents, kube-proxy, DNS, controller-manager, the
    external host's netexec, containers)."""
    lines = ["version: 1", "name: x", "nodes:"] + [f"  - {{name: node-{i}}}" for i in range(1, nodes + 1)]
    lines += ["kubeProxy: {mode: iptables}", "external: {}", "pods:"]
    for i in range(1, nodes + 1):
        for j in range(1, pods + 1):
            lines.append(f"  - {{name: p{i}-{j}, node: node-{i}, labels: {{tier: n{i}}}, "
                         f"containers: [{{name: c, image: pause}}]}}")
    lines += ["deployments:", "  - name: web", "    replicas: 2", "    labels: {app: web}",
              "    containers: [{name: web, image: netexec, ports: [{containerPort: 8080, name: http}]}]",
              "services:", "  - name: web", "    selector: {app: web}",
              "    ports: [{name: http, port: 80, targetPort: http}]"]
    lines += [f"  - {{name: tier-{i}, selector: {{tier: n{i}}}, ports: [{{port: 80, targetPort: 8080}}]}}"
              for i in range(1, nodes + 1)]
    return "\n".join(lines) + "\n"


def run_up(n: int, seed: int, tmp: Path, prefix: str = "prockill", lab: str = "") -> dict:
    topo = tmp / "lab.yaml"
    topo.write_text(lab or tkm.LAB)
    full = killing.kill_up_once(topo, f"{prefix}{os.getpid() % 1000}u0", at=tkm.UNDISTURBED)
    span = full.exited_at or 1.0
    start = max((full.record_at or 0.0) - 0.05, 0.0)
    results, finished, details = [full.left], 0, []
    for i, at in enumerate(killing.moments(n, start, span, seed)):
        name = f"{prefix}{os.getpid() % 1000}u{i + 1}"
        try:
            res = killing.kill_up_once(topo, name, at)
        finally:
            teardown.destroy(name)
        results.append(res.left)
        finished += res.finished
        if not res.left.clean:
            details.append({"at": round(at, 3), "left": tkm._describe(res.left)})
        print(f"  up kill {i + 1}/{n} at {at:.3f}s: {'clean' if res.left.clean else 'DIRTY'}"
              f"{' (had finished)' if res.finished else ''}", file=sys.stderr)
    return _summary("up", results[1:], {"span_s": [round(start, 2), round(span, 2)], "finished_before_kill": finished,
                                        "seed": seed, "dirty_details": details})


def run_tool(what: str, n: int, seed: int, tmp: Path) -> dict:
    name = f"prockill{os.getpid() % 1000}{what[0]}"
    topo = tmp / "lab.yaml"
    topo.write_text(tkm.LAB)
    r = killing.podlab("up", str(topo), "--name", name)
    if r.returncode != 0:
        raise SystemExit(r.stdout + r.stderr)
    before = {pid for pid, _ in killing.descendants()}
    try:
        tkm.SEED = seed
        if what == "capture":
            out = tmp / "c.pcapng"
            argv = lambda i: ["capture", "client", "node/node-1:cni0", "underlay", "-w", str(out), "-d", "30"]  # noqa
            problems = tkm._kill_loop(name, argv, n, span=1.5, leave_some=True)
        else:
            cmds = [["exec", "client", "--", "sleep", "60"], ["exec", "node/node-2", "--", "sleep", "60"],
                    ["exec", "p2", "--", "sh", "-c", "sleep 60 & sleep 61; wait"]]
            problems = tkm._kill_loop(name, lambda i: cmds[i % len(cmds)], n, span=1.2, leave_some=True)
        running = len(tkm._tool_procs(name))
        left = tkm._down_leaves_nothing(name, before)
    finally:
        teardown.destroy(name)
    return _summary(what, [left], {"kills": n, "unrecorded_after_kill": len(problems), "problems": problems[:5],
                                   "tools_running_at_down": running, "seed": seed})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--up", type=int, default=100)
    ap.add_argument("--capture", type=int, default=100)
    ap.add_argument("--exec", type=int, default=100)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--up-lab", metavar="NODESxPODS", default="",
                    help="kill `up` of a NODES x PODS lab with Services (e.g. 6x20) instead of the test's 2-node lab")
    ap.add_argument("--prefix", default="prockill", help="lab names start with this")
    a = ap.parse_args()
    lab = services_lab(*map(int, a.up_lab.split("x"))) if a.up_lab else ""
    killing.subreaper(True)
    ok = True
    with tempfile.TemporaryDirectory(prefix="prockill-") as d:
        for what, n in (("up", a.up), ("capture", a.capture), ("exec", a.exec)):
            if n <= 0:
                continue
            t0 = time.monotonic()
            res = (run_up(n, a.seed, Path(d), a.prefix, lab) if what == "up"
                   else run_tool(what, n, a.seed, Path(d)))
            res["seconds"] = round(time.monotonic() - t0, 1)
            ok = ok and res["dirty"] == 0 and not res.get("unrecorded_after_kill")
            print(json.dumps(res), flush=True)
    killing.reap()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
