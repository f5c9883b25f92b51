#!/usr/bin/env python3
"""Benchmark of the lab tools on a demo lab (run as root): how long trace, trace --verify, starting a 3-point
capture, drawing the lab and the Mininet CLI's pingall take, and how close tbf shaping gets to the asked rate.
With ``--services``, also trace through Services (services-demo.yaml, in each kube-proxy mode): client → the
ClusterIP of ``web`` (DNAT on client's node) and external → node-1's NodePort 30080 (DNAT + masquerade).

    sudo python3 scripts/bench_tools.py [--rates 1mbit,10mbit,100mbit] [--services]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emulator import plugins  # noqa: E402
from emulator.lab import teardown  # noqa: E402
from emulator.lab.api import Lab, popen_in  # noqa: E402
from emulator.tools import capture, graph, shaping, targets  # noqa: E402
from emulator.topology import units
from emulator.tools.trace import trace  # noqa: E402
from emulator.tools.trace_verify import verify  # noqa: E402
from emulator.topology.loader import load, loads  # noqa: E402

plugins.install()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def iperf(lab: Lab, client: str, server: str) -> float:
    srv = popen_in(lab.pod(server).netns, ["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        r = lab.pod(client).exec(["iperf3", "-c", lab.pod(server).ip, "-t", "4", "-O", "1", "-J"], timeout=30)
        return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]
    finally:
        srv.kill()
        srv.wait()


def service_traces() -> None:
    path = os.path.join(ROOT, "topologies/services-demo.yaml")
    text = open(path).read()
    for mode in ("iptables", "nftables"):
        name = f"sbench{os.getpid() % 10000}"
        lab = Lab.up(loads(text.replace("kubeProxy: {mode: iptables}", f"kubeProxy: {{mode: {mode}}}"),
                           source=path, name=name))
        try:
            cip = next(s["spec"]["clusterIP"] for s in lab.store.list("services") if s["metadata"]["name"] == "web")
            nodeport = f"{lab.node('node-1').ip}:30080"
            for src, dst in (("client", f"{cip}:80"), ("external", nodeport)):
                assert trace(lab, src, dst).delivered
                print(f"trace {src} → {dst} ({mode} mode): {timed(lambda: trace(lab, src, dst)):.1f} ms")
        finally:
            teardown.destroy(name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="1mbit,10mbit,100mbit")
    ap.add_argument("--services", action="store_true", help="also time traces through Services")
    a = ap.parse_args()
    if a.services:
        service_traces()
    name = f"gbench{os.getpid() % 10000}"
    lab = Lab.up(load(os.path.join(ROOT, "topologies/demo.yaml"), name=name))
    try:
        print(f"trace web-1 → web-3 (vxlan, 17 hops): {timed(lambda: trace(lab, 'web-1', 'web-3')):.1f} ms")
        print(f"trace --verify (3 pings):             "
              f"{timed(lambda: verify(lab, trace(lab, 'web-1', 'web-3')), 3):.1f} ms")
        pts = [targets.resolve(lab, t) for t in ("web-1", "underlay", "web-3")]

        def cap() -> None:
            with capture.Capture(pts, count=1):
                pass
        print(f"start + stop a 3-point capture:       {timed(cap, 3):.1f} ms")
        print(f"graph of the live lab to PNG:         {timed(lambda: graph.render(graph.from_lab(lab), 'png'), 3):.1f} ms")
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "emulator.cli.main", "--lab", name, "cli"], input="pingall\n",
                           capture_output=True, text=True)
        print(f"podlab cli pingall (12 pings):        {(time.perf_counter() - t) * 1000:.0f} ms "
              f"({r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip()})")
        src = targets.resolve(lab, "web-1")
        for text in a.rates.split(","):
            bps = units.parse_rate(text)
            shaping.apply(src, units.parse_shape({"rate": text}))
            got = iperf(lab, "web-1", "web-3")
            print(f"tbf {text:>8}: TCP goodput {got / 1e6:8.2f} Mbit/s = {100 * got / bps:5.1f}% of the rate")
        shaping.clear(src)
        print(f"unshaped:      TCP goodput {iperf(lab, 'web-1', 'web-3') / 1e6:8.2f} Mbit/s")
    finally:
        teardown.destroy(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
