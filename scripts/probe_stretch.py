#!/usr/bin/env python3
"""Where vxlan traffic across hosts spends its time: 2 emulated hosts, per-hop counters around one iperf3 run.

    sudo flock /tmp/podlab-integration.lock python3 scripts/probe_stretch.py [--routing vxlan] [--set STEP ...]

A lab of three nodes (node-1 and node-3 on host 1, node-2 on host 2) with a pod each (a, b, c). For one pod pair on
one host (a -> c) and one across hosts (a -> b, one stream and four), iperf3 runs 3 s while the script reads, before
and after: the packets and bytes of every device on the path (so the average size shows where GSO bursts are cut
into frames and where GRO merges them again), the IP, UDP and TCP counters of every namespace on it
(fragmentation, UDP errors, retransmits, out-of-order), and the CPUs' time from ``/proc/stat`` (softirq, system,
idle). ``--set`` changes something first, to compare within one run; steps apply in order and accumulate:
``ethtool:HOST:NS:DEV:FEATURE=on|off`` (HOST ``*`` for both, ``sw`` for the emulated switch; NS ``-`` for the host's
own namespace, else the lab namespace's suffix: ``underlay``, ``node-1``, ``a``) and
``sysctl:HOST:NS:KEY=VALUE``, ``threaded:HOST:NS:DEV=1`` (NAPI in a kernel thread); several steps joined by ``+`` make one configuration. Needs ``ethtool`` on the
machine for the feature listing (and ``ethtool:`` steps). Not a test: the figures go to docs/multihost.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.hosts.emulated import EmulatedHosts, podlab_command  # noqa: E402

PY = sys.executable
LAB = "mult-probe"
HOPS = {
    "mult1": [("a", "eth0"), ("node-1", "flannel.1"), ("node-1", "eth0"), ("underlay", "lan0"),
              ("underlay", "stretch0"), (None, "eth1")],
    "mult2": [(None, "eth1"), ("underlay", "stretch0"), ("underlay", "lan0"), ("node-2", "eth0"),
              ("node-2", "flannel.1"), ("node-2", "cni0"), ("b", "eth0")],
}
COUNTERS = ["Ip:FragCreates", "Ip:FragFails", "Ip:ReasmReqds", "Ip:ReasmFails", "Tcp:RetransSegs", "Udp:InErrors",
            "Udp:RcvbufErrors", "Udp:SndbufErrors", "TcpExt:TCPSackRecovery", "TcpExt:TCPOFOQueue"]
FEATURES = ("generic-segmentation-offload", "generic-receive-offload", "tx-udp_tnl-segmentation",
            "tx-udp_tnl-csum-segmentation", "rx-udp-gro-forwarding", "rx-gro-list")


def topology(path: Path, routing: str) -> Path:
    lines = ["version: 1", f"name: {LAB}", f"routing: {routing}", "nodes: [{name: node-1, host: mult1}, "
             "{name: node-2, host: mult2}, {name: node-3, host: mult1}]", "pods:"]
    lines += [f"  - {{name: {p}, node: {n}, containers: [{{name: c, image: busybox}}]}}"
              for p, n in (("a", "node-1"), ("b", "node-2"), ("c", "node-3"))]
    path.write_text("\n".join(lines) + "\n")
    return path


class Probe:
    def __init__(self, hs: EmulatedHosts) -> None:
        self.hs = hs

    def run(self, host: str, ns: str | None, argv: list[str]) -> subprocess.CompletedProcess:
        if host == "sw":
            return subprocess.run(["nsenter", "-t", str(self.hs.holders["switch"].pid), "-n", "--", *argv],
                                  capture_output=True, text=True)
        return self.hs.host_run(host, (["ip", "netns", "exec", f"{LAB}-{ns}"] if ns else []) + argv)

    def links(self) -> dict:
        out = {}
        for h, hops in HOPS.items():
            for ns, dev in hops:
                s = (json.loads(self.run(h, ns, ["ip", "-s", "-j", "link", "show", dev]).stdout or "[{}]")[0]
                     .get("stats64", {}))
                out[(h, ns, dev)] = [s.get(d, {}).get(k, 0) for d in ("tx", "rx") for k in ("packets", "bytes")]
        return out

    def counters(self) -> dict:
        out = {}
        for h, hops in HOPS.items():
            for ns in dict.fromkeys(ns for ns, _ in hops):
                text = self.run(h, ns, ["sh", "-c", "cat /proc/net/snmp /proc/net/netstat"]).stdout.splitlines()
                vals = {}
                for i in range(0, len(text) - 1, 2):
                    keys, nums = text[i].split(), text[i + 1].split()
                    vals.update({keys[0] + k: int(v) for k, v in zip(keys[1:], nums[1:])})
                out[(h, ns)] = vals
        return out

    def apply(self, step: str) -> None:
        kind, host, ns, rest = step.split(":", 3)
        for h in (["mult1", "mult2"] if host == "*" else [host]):
            where = None if ns == "-" else ns
            if kind == "ethtool":
                dev, kv = rest.split(":")
                feat, val = kv.split("=")
                r = self.run(h, where, ["ethtool", "-K", dev, feat, val])
            elif kind == "threaded":  # NAPI in a kernel thread of its own (the veth needs GRO on for NAPI)
                dev, val = rest.split("=")
                r = self.run(h, where, ["sh", "-c", f"echo {val} > /sys/class/net/{dev}/threaded"])
            else:
                r = self.run(h, where, ["sysctl", "-q", "-w", rest])
            print(f"set {h} {ns} {rest}: {'ok' if r.returncode == 0 else r.stderr.strip()}", flush=True)


def cpu() -> dict[str, list[int]]:
    return {f[0]: list(map(int, f[1:8])) for f in (line.split() for line in open("/proc/stat"))
            if f[0].startswith("cpu") and f[0] != "cpu"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routing", default="vxlan")
    ap.add_argument("--set", action="append", default=[], help="a configuration to measure after the first")
    a = ap.parse_args()
    with EmulatedHosts(2) as hs:
        p = Probe(hs)
        ctl = hs.controller_argv(["env", f"PYTHONPATH={ROOT}", PY, "-m", "emulator"])
        r = subprocess.run([*ctl, "up", str(topology(hs.dir / "t.yaml", a.routing)), "--hosts",
                            str(hs.inventory(podlab_command(ROOT)))], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        try:
            for h, hops in HOPS.items():
                for ns, dev in hops:
                    k = p.run(h, ns, ["ethtool", "-k", dev]).stdout.splitlines()
                    feats = {x.split(":")[0].strip(): x.split(":", 1)[1].strip() for x in k[1:] if ":" in x}
                    print(f"features {h} {ns or '-'} {dev}: " + ", ".join(f"{f} {feats.get(f)}" for f in FEATURES))
            ip = {pod: p.run(h, pod, ["ip", "-4", "-o", "addr", "show", "eth0"]).stdout.split()[3].split("/")[0]
                  for pod, h in (("b", "mult2"), ("c", "mult1"))}
            for config in ["as built", *a.set]:
                if config != "as built":
                    for step in config.split("+"):
                        p.apply(step)
                for label, host, pod, streams in (("one host", "mult1", "c", "1"), ("across hosts", "mult2", "b", "1"),
                                                  ("across hosts -P 4", "mult2", "b", "4")):
                    p.run(host, pod, ["iperf3", "-s", "-1", "-D"])
                    time.sleep(0.3)
                    l0, n0, c0 = p.links(), p.counters(), cpu()
                    r = p.run("mult1", "a", ["iperf3", "-c", ip[pod], "-t", "3", "-J", "-P", streams])
                    l1, n1, c1 = p.links(), p.counters(), cpu()
                    end = json.loads(r.stdout)["end"] if r.returncode == 0 else {}
                    gbit = end.get("sum_received", {}).get("bits_per_second", float("nan")) / 1e9
                    print(f"[{config}] {label}: {gbit:.2f} Gbit/s, retransmits "
                          f"{end.get('sum_sent', {}).get('retransmits')}", flush=True)
                    ticks = {k: [b - x for x, b in zip(c0[k], c1[k])] for k in c0}
                    print("  cpu " + ", ".join(f"{k}: softirq {v[6]} system {v[2]} idle {v[3]} ticks"
                                               for k, v in ticks.items()))
                    if label == "one host":
                        continue
                    for key, before in l0.items():
                        d = [y - x for x, y in zip(before, l1[key])]
                        print(f"  {key[0]} {key[1] or '-'} {key[2]}: tx {d[0]} avg {d[1] // max(d[0], 1)} B, "
                              f"rx {d[2]} avg {d[3] // max(d[2], 1)} B")
                    for key, before in n0.items():
                        d = {c: n1[key].get(c, 0) - before.get(c, 0) for c in COUNTERS
                             if n1[key].get(c, 0) != before.get(c, 0)}
                        if d:
                            print(f"  counters {key[0]} {key[1] or '-'}: {d}")
        finally:
            subprocess.run([*ctl, "down", LAB], capture_output=True, text=True)


if __name__ == "__main__":
    main()
