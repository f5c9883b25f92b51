#!/usr/bin/env python3
"""Benchmark two source trees against each other: bring-up and teardown of one N nodes × M pods lab, alternating.

    sudo python3 scripts/bench_trees.py --tree old=/work/wt/pre11 --tree new=. --nodes 10 --pods 100 --runs 5

"Within 5 % of the previous tree" is only meaningful when both trees are measured in one session, by one method,
on a machine in the same state: figures of this VM drift ±15 % from hour to hour. So each run is one child process
per tree, with ``PYTHONPATH`` pointing at that tree only, that imports nothing of podlab but what every tree has
had (``topology.loader.loads``, ``lab.builder.up``, ``lab.teardown.destroy``, and ``plugins.install`` where it
exists), measures with code of this file that does not depend on either tree, and prints one JSON line. The trees
alternate, the order flipping every round (A B, B A, A B, ...), so neither gains from going first after a pause.

- ``up_s``: from the start of ``up`` (topology already validated) until every pod reports Running;
- ``down_returned_s``: until ``destroy`` returns;
- ``down_s``: until the kernel has released every namespace of the lab: after ``destroy`` a sentinel namespace is
  deleted and we wait until its veth peer, kept in an observer namespace, has vanished (the kernel frees
  namespaces in one ordered worker, so once the sentinel is gone so is every namespace released before it).

Before each run the child waits until the kernel's netns cleanup worker has gone idle (``wait_quiet``). The
sentinel is made and polled with ``ip`` and a raw rtnetlink socket of this file, the same for both trees. Not a
test: figures go to the README.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
RTM_NEWLINK, RTM_GETLINK, NLMSG_ERROR, NLM_F_REQUEST = 16, 18, 2, 1
IFLA_IFNAME = 3


def topology_text(name: str, nodes: int, pods: int, routing: str, image: str) -> str:
    lines = ["version: 1", f"name: {name}", f"routing: {routing}", "nodes:"]
    lines += [f"  - name: n{i}" for i in range(1, nodes + 1)]
    lines.append("pods:")
    for i in range(1, nodes + 1):
        for j in range(1, pods + 1):
            lines += [f"  - name: p{i}-{j}", f"    node: n{i}", "    containers:",
                      f"      - {{name: c, image: {image}}}"]
    return "\n".join(lines) + "\n"


def netns_objects() -> int | None:
    """Network namespaces the kernel still holds (live and being freed), from /proc/slabinfo."""
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def wait_quiet(max_s: float = 60.0, stable_s: float = 3.0) -> None:
    """Wait until the kernel has finished freeing earlier namespaces."""
    deadline, last, since = time.monotonic() + max_s, netns_objects(), time.monotonic()
    while last is not None and time.monotonic() < deadline:
        time.sleep(0.5)
        now = netns_objects()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= stable_s:
            return


def _socket_in(ns_path: str) -> socket.socket:
    """A NETLINK_ROUTE socket inside the namespace at ``ns_path`` (made by a thread that enters it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    out: list = []

    def enter() -> None:
        fd = os.open(ns_path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                out.append(OSError(ctypes.get_errno(), f"setns {ns_path}"))
                return
            out.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
        finally:
            os.close(fd)

    t = threading.Thread(target=enter)  # the thread ends inside the namespace; the socket stays bound to it
    t.start()
    t.join()
    if isinstance(out[0], Exception):
        raise out[0]
    return out[0]


def _link_exists(sock: socket.socket, name: str, seq: int) -> bool:
    ifname = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(ifname), IFLA_IFNAME) + ifname
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + attr
    sock.send(struct.pack("=IHHII", 16 + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + body)
    while True:
        data = sock.recv(1 << 16)
        _len, mtype, _flags, rseq, _pid = struct.unpack_from("=IHHII", data)
        if rseq != seq:
            continue
        if mtype == NLMSG_ERROR:
            return struct.unpack_from("=i", data, 16)[0] == 0
        return mtype == RTM_NEWLINK


class Sentinel:
    """An observer namespace holding one end of a veth whose other end is in a sentinel namespace."""

    def __init__(self, prefix: str) -> None:
        self.obs, self.sen = f"{prefix}-obs", f"{prefix}-sen"
        for ns in (self.obs, self.sen):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", self.obs, "link", "add", "s-obs", "type", "veth", "peer", "name", "s-sen",
                        "netns", self.sen], check=True)
        self.sock = _socket_in(f"/run/netns/{self.obs}")
        self.seq = 0

    def release_and_wait(self, timeout: float = 120.0) -> None:
        subprocess.run(["ip", "netns", "del", self.sen], check=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.seq += 1
            if not _link_exists(self.sock, "s-obs", self.seq):
                return
            time.sleep(0.002)

    def close(self) -> None:
        self.sock.close()
        for ns in (self.sen, self.obs):
            if os.path.exists(f"/run/netns/{ns}"):
                subprocess.run(["ip", "netns", "del", ns], check=False)


def one(a: argparse.Namespace) -> dict:
    """One run of the tree on ``sys.path`` (the child's side)."""
    from emulator.lab import builder, teardown
    from emulator.topology.loader import loads
    try:
        from emulator import plugins
    except ImportError:
        plugins = None  # a tree from before the composition root: its components register at import
    if plugins is not None:
        plugins.install()
    topo = loads(topology_text(a.name, a.nodes, a.pods, a.routing, a.image), source="<bench>")
    wait_quiet()
    sen = Sentinel(f"{a.name}s")
    out: dict = {}
    try:
        t0 = time.perf_counter()
        try:
            builder.up(topo)
            out["up_s"] = round(time.perf_counter() - t0, 3)
        finally:
            t1 = time.perf_counter()
            teardown.destroy(a.name)
            out["down_returned_s"] = round(time.perf_counter() - t1, 3)
            sen.release_and_wait()
            out["down_s"] = round(time.perf_counter() - t1, 3)
    finally:
        sen.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR", help="a tree to measure (twice)")
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=100, help="pods per node")
    ap.add_argument("--routing", default="vxlan")
    ap.add_argument("--image", default="pause")
    ap.add_argument("--name", default="benchtree")
    ap.add_argument("--runs", type=int, default=5, help="runs per tree")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a)), flush=True)
        return 0
    trees = [t.split("=", 1) for t in a.tree]
    if len(trees) < 1 or any(len(t) != 2 for t in trees):
        ap.error("give each tree as --tree LABEL=DIR")
    rows: dict[str, list[dict]] = {label: [] for label, _ in trees}
    for i in range(a.runs):
        for label, tree in (trees if i % 2 == 0 else trees[::-1]):
            env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
            argv = [a.python, os.path.abspath(__file__), "--one", "--nodes", str(a.nodes), "--pods", str(a.pods),
                    "--routing", a.routing, "--image", a.image, "--name", a.name]
            r = subprocess.run(argv, env=env, cwd=os.path.abspath(tree), capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                raise SystemExit(f"run {i + 1} of {label} failed")
            row = {"run": i + 1, "tree": label, **json.loads(r.stdout.strip().splitlines()[-1])}
            rows[label].append(row)
            print(json.dumps(row), flush=True)
    for label, rs in rows.items():
        summary: dict = {"summary": label, "runs": len(rs), "pods": a.nodes * a.pods}
        for k in ("up_s", "down_returned_s", "down_s"):
            v = [r[k] for r in rs]
            summary[k] = {"median": round(statistics.median(v), 3), "min": min(v), "max": max(v)}
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
