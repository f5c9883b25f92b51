#!/usr/bin/env python3
"""Benchmark: bring up and tear down a lab of N nodes × M pods (pause containers), and beside it, in the same run,
a plain ``ip -batch`` build of the same namespaces and veths (the reference); print one JSON line per run.

    sudo python3 scripts/bench_up.py --nodes 10 --pods 100 [--runs 5] [--memory] [--routing vxlan] [--name procb]

up_s runs from the start of ``up`` (topology already validated) until every pod reports Running. The reference
(``ref_up_s``) is ``ip -batch`` making the same kernel objects as the lab (``ref_up``): one ``ip -batch`` of
``netns add`` for every namespace, one for the underlay (bridge lan0, the node uplinks), one per node (lo, eth0,
cni0 and flannel.1 with their addresses, the neighbour/FDB entry/route per remote node, one veth per pod with
one queue each way, port hairpin on and mcast_flood off) and one per pod (lo, eth0 with its address, default
route), each run inside its namespace with ``nsenter --net``, four at a time. No processes, no files: what
podlab adds on top of that is its own cost.

down_s and ref_down_s run until the kernel has released every namespace: ``down`` (or one ``ip -batch`` of
``netns del``, nodes first), then a sentinel namespace is deleted and we wait until its veth peer, kept in an observer
namespace, disappears. The kernel frees namespaces in one ordered worker, batch after batch in the order their
last reference went, so once the sentinel (deleted after everything else was released) is gone, so is every
namespace before it. Both figures include the sentinel's own batch.

--kube-proxy MODE adds ``kubeProxy: {mode: MODE}`` to the topology, ``--kube-proxy none`` adds ``kubeProxy: none``
(no kube-proxy, service controllers or cluster DNS); without it the lab has the default (kube-proxy in iptables
mode). --cpu adds the CPU seconds each kind of lab process used until every pod was Running.

--memory adds, at the moment every pod is Running: podlab's processes' PSS (agents and daemons, named by the
lab's process journal; containers apart), and the growth of the kernel's memory since before ``up``
(/proc/meminfo Slab, SUnreclaim, Percpu, KernelStack, PageTables; Shmem is the lab's tmpfs files), per pod; and
the same kernel growth for the reference. --memory-detail also prints the growth of each slab cache (top ones,
kB per pod), of more meminfo fields, and the lab's processes' Pss/Rss/Private_Dirty/Shared_Dirty grouped by what
the journal calls them (agents, kube-proxy, ...), for both. Not a test: figures go to the README.
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
from emulator.lab.teardown import _ports  # noqa: E402
from emulator.netlink import msgs, netns  # noqa: E402
from emulator.netlink.rtnl import Rtnl  # noqa: E402
from emulator.proc.lifecycle import alive  # noqa: E402
from emulator.state import record  # noqa: E402
from emulator.state.store import Store  # noqa: E402
from emulator.state.paths import LabPaths  # noqa: E402
from emulator.topology.loader import loads  # noqa: E402
from bench_trees import topology_text, wait_quiet  # noqa: E402  (also for bench_pod and bench_check)

plugins.install()

MEMINFO_KEYS = ("Slab", "SUnreclaim", "Percpu", "KernelStack", "PageTables", "Shmem", "MemAvailable")
#: the further /proc/meminfo fields ``--memory-detail`` prints the growth of (kB)
DETAIL_KEYS = ("SReclaimable", "AnonPages", "Cached", "Mapped", "VmallocUsed", "MemFree")


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


def meminfo() -> dict[str, int]:
    """The /proc/meminfo fields we compare, in kB."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in MEMINFO_KEYS or k in DETAIL_KEYS:
                out[k] = int(v.split()[0])
    return out


def slabinfo() -> dict[str, int]:
    """Bytes held by each slab cache (its slabs × pages per slab), from /proc/slabinfo."""
    out = {}
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/slabinfo") as f:
        for line in f:
            if line.startswith(("slabinfo", "#")):
                continue
            name, rest = line.split(None, 1)
            head, _, data = rest.partition(": slabdata")
            pages_per_slab = int(head.split()[4])
            out[name] = int(data.split()[1]) * pages_per_slab * page
    return out


def slab_growth(before: dict[str, int], pods: int, top: int = 45) -> dict[str, float]:
    """The caches that grew most since ``before``, in kB per pod (the rest summed as ``other``)."""
    after = slabinfo()
    d = sorted(((after.get(k, 0) - before.get(k, 0), k) for k in set(after) | set(before)), reverse=True)
    out = {k: round(v / 1024 / pods, 1) for v, k in d[:top]}
    out["other"] = round(sum(v for v, _ in d[top:]) / 1024 / pods, 1)
    return out


def smaps(pid: int) -> dict[str, int]:
    """The Pss/Rss/Private/Shared fields of /proc/PID/smaps_rollup (kB)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Dirty", "Private_Dirty", "Private_Clean"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


# -- the sentinel: "the kernel has released every namespace" -------------------------------------------------------
class Sentinel:
    """An observer namespace holding one end of a veth whose other end is in a sentinel namespace."""

    def __init__(self, prefix: str) -> None:
        self.obs, self.sen = f"{prefix}-obs", f"{prefix}-sen"
        netns.create(self.obs)
        netns.create(self.sen)
        self.obs_fd = netns.open_fd(self.obs)
        sen_fd = netns.open_fd(self.sen)
        try:
            with Rtnl.in_ns(self.obs_fd) as rt:
                rt.batch([msgs.link_add_veth("s-obs", "s-sen", sen_fd, 1500)])
        finally:
            os.close(sen_fd)

    def release_and_wait(self, timeout: float = 120.0) -> None:
        """Delete the sentinel namespace and wait until the kernel has freed it (its peer vanished)."""
        netns.delete(self.sen)
        deadline = time.monotonic() + timeout
        while _ports(self.obs_fd, set()) and time.monotonic() < deadline:
            time.sleep(0.002)

    def close(self) -> None:
        os.close(self.obs_fd)
        netns.delete(self.sen)
        netns.delete(self.obs)


# -- the reference: plain ip -batch ---------------------------------------------------------------------------------
def ref_names(prefix: str, nodes: int, pods: int) -> tuple[str, list[str], list[list[str]]]:
    return (f"{prefix}-ul", [f"{prefix}-n{i}" for i in range(1, nodes + 1)],
            [[f"{prefix}-p{i}-{j}" for j in range(1, pods + 1)] for i in range(1, nodes + 1)])


def _ip_batch(lines: list[str], ns: str | None = None, tool: str = "ip") -> subprocess.Popen:
    """``ip -batch -`` (or ``bridge -batch -``) of ``lines``, inside namespace ``ns`` if given (entered with
    ``nsenter --net``: unlike ``ip -n``, no mount-namespace copy, whose cost grows with the namespaces)."""
    argv = [tool, "-batch", "-"]
    if ns:
        argv = ["nsenter", f"--net={netns.path(ns)}", "--", *argv]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None
    p.stdin.write("\n".join(lines) + "\n")
    p.stdin.close()
    return p


def _done(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        err = p.stderr.read() if p.stderr else ""
        if p.wait() != 0:
            raise RuntimeError(f"ip -batch failed: {err.strip()}")


def _run_batches(batches: list[tuple[list[str], str, str]], parallel: int) -> None:
    running: list[subprocess.Popen] = []
    for lines, ns, tool in batches:
        if len(running) >= parallel:
            _done([running.pop(0)])
        running.append(_ip_batch(lines, ns, tool))
    _done(running)


def _vtep_mac(i: int) -> str:
    return f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"


def ref_up(prefix: str, nodes: int, pods: int, parallel: int = 4) -> None:
    """The same kernel objects as a vxlan lab of podlab, made by ip -batch: the underlay bridge and the node
    uplinks; per node lo, eth0 and cni0 with their addresses, flannel.1 with its address, and per remote node
    the neighbour, FDB entry and route; per pod a one-queue veth on cni0 (hairpin, mcast_flood off) and, in
    the pod, lo, eth0 with its address and the default route."""
    ul, node_ns, pod_ns = ref_names(prefix, nodes, pods)
    _done([_ip_batch([f"netns add {n}" for n in [ul, *node_ns, *(p for row in pod_ns for p in row)]])])
    q = "numtxqueues 1 numrxqueues 1"
    lines = ["link add lan0 type bridge", "link set lan0 up"]
    for i, n in enumerate(node_ns, 1):
        lines += [f"link add u{i} {q} master lan0 type veth peer name eth0 {q} netns {n}", f"link set u{i} up"]
    _done([_ip_batch(lines, ul)])
    node_batches, fdb_batches = [], []
    for i, (n, row) in enumerate(zip(node_ns, pod_ns), 1):
        lines = ["link set lo up", f"addr add 192.168.56.{10 + i}/24 dev eth0", "link set eth0 up",
                 "link add cni0 mtu 1450 type bridge", f"addr add 10.244.{i}.1/24 dev cni0", "link set cni0 up",
                 f"link add flannel.1 mtu 1450 address {_vtep_mac(i)} type vxlan id 1 local 192.168.56.{10 + i} "
                 "dev eth0 dstport 8472 nolearning", f"addr add 10.244.{i}.0/32 dev flannel.1", "link set flannel.1 up"]
        fdb = []
        for k in range(1, nodes + 1):
            if k != i:
                lines += [f"neigh add 10.244.{k}.0 lladdr {_vtep_mac(k)} dev flannel.1 nud permanent",
                          f"route add 10.244.{k}.0/24 via 10.244.{k}.0 dev flannel.1 onlink"]
                fdb.append(f"fdb append {_vtep_mac(k)} dev flannel.1 dst 192.168.56.{10 + k}")
        for j, _p in enumerate(row, 1):
            lines += [f"link add v{j} mtu 1450 {q} master cni0 type veth peer name eth0 mtu 1450 {q} netns {_p}",
                      f"link set v{j} type bridge_slave hairpin on mcast_flood off", f"link set v{j} up"]
        node_batches.append((lines, n, "ip"))
        if fdb:
            fdb_batches.append((fdb, n, "bridge"))
    _run_batches(node_batches, parallel)
    _run_batches(fdb_batches, parallel)
    _run_batches([(["link set lo up", f"addr add 10.244.{i}.{j + 1}/24 dev eth0", "link set eth0 up",
                    f"route add default via 10.244.{i}.1"], p, "ip")
                  for i, row in enumerate(pod_ns, 1) for j, p in enumerate(row, 1)], parallel)


def ref_down(prefix: str, nodes: int, pods: int) -> None:
    """One ip -batch of ``netns del``, nodes first (as ``down``: a node's devices go with it in one batch)."""
    ul, node_ns, pod_ns = ref_names(prefix, nodes, pods)
    _done([_ip_batch([f"netns del {n}" for n in [*node_ns, *(p for row in pod_ns for p in row), ul]])])


# -- memory ---------------------------------------------------------------------------------------------------------
def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def lab_memory(lab: str, before: dict[str, int], pods: int, slab_before: dict[str, int] | None = None) -> dict:
    after = meminfo()
    caches = slab_growth(slab_before, pods) if slab_before is not None else {}  # before reading any /proc/PID
    # file below (each read makes /proc inodes and dentries that would show as the lab's slab)
    daemons = [e for e in record.processes(lab) if alive(e.pid, e.start)]
    pss_daemons = sum(pss_kb(e.pid) for e in daemons)
    containers = [c["pid"] for st in Store(LabPaths(lab).store).list("pods", status=True)
                  for c in st.get("containerStatuses", []) if c.get("pid")]
    pss_containers = sum(pss_kb(p) for p in containers)
    kernel = {k: after[k] - before[k] for k in MEMINFO_KEYS}
    detail = {}
    if slab_before is not None:
        groups: dict[str, dict[str, int]] = {}
        for e in daemons:  # by what the journal calls them, node names dropped ("agent of n3" -> "agent")
            g = groups.setdefault(e.what.split(" of ")[0], {"n": 0})
            g["n"] += 1
            for k, v in smaps(e.pid).items():
                g[k] = g.get(k, 0) + v
        detail = {"processes_by_kind_kB": groups,
                  "meminfo_delta_per_pod_kB": {k: round((after[k] - before[k]) / pods, 1) for k in after},
                  "slab_caches_per_pod_kB": caches}
    per = lambda kb: round(kb / pods, 1)  # noqa: E731
    issue_kb = pss_daemons + kernel["Slab"]
    all_kb = (pss_daemons + pss_containers + kernel["Slab"] + kernel["Percpu"] + kernel["KernelStack"]
              + kernel["PageTables"] + kernel["Shmem"])
    return {"pss_agents_daemons_kB": pss_daemons, "processes": len(daemons), "pss_containers_kB": pss_containers,
            "kernel_delta_kB": kernel, "per_pod_kB": {
                "podlab_pss_plus_slab": per(issue_kb), "everything": per(all_kb),
                "slab": per(kernel["Slab"]), "sunreclaim": per(kernel["SUnreclaim"]), "percpu": per(kernel["Percpu"]),
                "agents_daemons_pss": per(pss_daemons), "containers_pss": per(pss_containers),
                "kernelstack+pagetables": per(kernel["KernelStack"] + kernel["PageTables"]),
                "shmem": per(kernel["Shmem"]), "memavailable_drop": per(-kernel["MemAvailable"])}, **detail}


def ref_memory(before: dict[str, int], pods: int, slab_before: dict[str, int] | None = None) -> dict:
    after = meminfo()
    d = {k: after[k] - before[k] for k in MEMINFO_KEYS}
    out = {"slab_per_pod_kB": round(d["Slab"] / pods, 1), "percpu_per_pod_kB": round(d["Percpu"] / pods, 1),
           "memavailable_drop_per_pod_kB": round(-d["MemAvailable"] / pods, 1)}
    if slab_before is not None:
        out["meminfo_delta_per_pod_kB"] = {k: round((after[k] - before[k]) / pods, 1) for k in after}
        out["slab_caches_per_pod_kB"] = slab_growth(slab_before, pods)
    return out


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process and its reaped children, in seconds (fields 14-17 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def lab_cpu(lab: str) -> dict[str, float]:
    """CPU seconds used so far by the lab's recorded processes, by what they are (kube-proxy of every node
    summed as "kube-proxy", the agents as "agent", ...)."""
    out: dict[str, float] = {}
    for e in record.processes(lab):
        if not alive(e.pid, e.start):
            continue
        what = e.what.split(" of ")[0] if e.what.startswith("kube-proxy") else ("agent" if e.kind == "agent"
                                                                                  else e.what)
        out[what] = round(out.get(what, 0.0) + proc_cpu_s(e.pid), 2)
    return out


# -- one run --------------------------------------------------------------------------------------------------------
def run_podlab(a: argparse.Namespace, sentinel_prefix: str) -> dict:
    text = topology_text(a.name, a.nodes, a.pods, a.routing, a.image)
    if a.kube_proxy == "none":
        text += "kubeProxy: none\n"
    elif a.kube_proxy:
        text += f"kubeProxy: {{mode: {a.kube_proxy}}}\n"
    topo = loads(text, source="<bench>")
    npods = a.nodes * a.pods
    wait_quiet()
    sen = Sentinel(sentinel_prefix)
    out: dict = {}
    try:
        s0 = slabinfo() if a.memory_detail else None
        m0 = meminfo()
        t0 = time.perf_counter()
        c0 = cpu_times()
        try:
            builder.up(topo, progress=lambda s: print(f"  {time.perf_counter() - t0:6.3f}s {s}", file=sys.stderr))
            out["up_s"] = round(time.perf_counter() - t0, 3)
            c1 = cpu_times()
            out["cpu_busy_during_up"] = round((c1[0] - c0[0]) / max(c1[1] - c0[1], 1), 2)
            if a.cpu:
                out["cpu_s_by_process"] = lab_cpu(a.name)
            if a.memory:
                out["memory"] = lab_memory(a.name, m0, npods, s0)
        finally:
            t1 = time.perf_counter()
            teardown.destroy(a.name)
            out["down_returned_s"] = round(time.perf_counter() - t1, 3)
            sen.release_and_wait()
            out["down_s"] = round(time.perf_counter() - t1, 3)
    finally:
        sen.close()
    return out


def run_ref(a: argparse.Namespace, prefix: str, sentinel_prefix: str) -> dict:
    npods = a.nodes * a.pods
    wait_quiet()
    sen = Sentinel(sentinel_prefix)
    out: dict = {}
    try:
        s0 = slabinfo() if a.memory_detail else None
        m0 = meminfo()
        t0 = time.perf_counter()
        try:
            ref_up(prefix, a.nodes, a.pods)
            out["ref_up_s"] = round(time.perf_counter() - t0, 3)
            if a.memory:
                out["ref_memory"] = ref_memory(m0, npods, s0)
        finally:
            t1 = time.perf_counter()
            ref_down(prefix, a.nodes, a.pods)
            sen.release_and_wait()
            out["ref_down_s"] = round(time.perf_counter() - t1, 3)
    finally:
        sen.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=100, help="pods per node")
    ap.add_argument("--routing", default="vxlan")
    ap.add_argument("--image", default="pause")
    ap.add_argument("--name", default="procbench")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--memory", action="store_true", help="also measure memory per pod (see above)")
    ap.add_argument("--memory-detail", action="store_true",
                    help="with --memory: also the growth of every slab cache and meminfo field, and PSS by process kind")
    ap.add_argument("--no-ref", action="store_true", help="skip the ip -batch reference")
    ap.add_argument("--cpu", action="store_true", help="also report the CPU seconds each kind of lab process "
                                                        "(agents, kube-proxy, controller-manager, ...) used in up")
    ap.add_argument("--kube-proxy", default="", metavar="MODE|none",
                    help="add `kubeProxy: {mode: MODE}` (iptables, nftables) or `kubeProxy: none` to the topology "
                         "(default: neither, the lab's default)")
    a = ap.parse_args()
    a.memory = a.memory or a.memory_detail
    ref_prefix, sen_prefix = f"{a.name}r", f"{a.name}s"
    taken = [n for n in netns.list_names() if n.startswith((f"{a.name}-", f"{ref_prefix}-", f"{sen_prefix}-"))]
    if taken:
        raise SystemExit(f"namespaces {taken[:3]} exist; choose another --name")
    rows = []
    for i in range(a.runs):
        row = {"run": i + 1, "nodes": a.nodes, "pods": a.nodes * a.pods, "routing": a.routing,
               "kube_proxy": a.kube_proxy or "default",
               **run_podlab(a, sen_prefix)}
        if not a.no_ref:
            row.update(run_ref(a, ref_prefix, sen_prefix))
            row["up_ratio"] = round(row["up_s"] / row["ref_up_s"], 2)
            row["down_ratio"] = round(row["down_s"] / row["ref_down_s"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.runs > 1:
        summary: dict = {"summary": True, "runs": a.runs, "pods": a.nodes * a.pods}
        for k in ("up_s", "ref_up_s", "up_ratio", "down_s", "ref_down_s", "down_ratio", "down_returned_s"):
            v = [r[k] for r in rows if k in r]
            if v:
                summary[k] = {"median": round(statistics.median(v), 3), "min": min(v), "max": max(v)}
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
