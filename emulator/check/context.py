"""What the checks share for one lab: its Running pods and nodes, the probe plan, and its results measured once.

The probes are run in this process by ``engine.Prober``: its thread opens each socket inside the namespace it
belongs to (listeners in the target pods, connections in the sources) and one epoll loop drives them all, at most
``max_inflight`` at a time. No process is started in a pod or node, so there is nothing to record and nothing can
be left behind: the sockets close with the check. ``plan`` chooses the pairs (the full matrix up to 100 pods, a
spanning set above), and ``neighbours.Pacer`` keeps the neighbour entries the probes make within the kernel's
table (shared by every namespace), deleting the idle ones it made to make room and, at the end, all it made. The
table's ``table_fulls`` counter is read before and after; pairs that failed while it rose are retried once,
slower, then reported with the overflow as their cause.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

from emulator.check import engine, neighbours, plan as plan_mod
from emulator.check.engine import Ping, Tcp
from emulator.lab.api import Lab
from emulator.netlink import neightable


@dataclass(frozen=True)
class PodInfo:
    name: str  # the pod's reference: ``name`` in default, ``namespace/name`` elsewhere
    ip: str
    node: str
    netns: str
    namespace: str = "default"


@dataclass
class NeighReport:
    """What the neighbour table did while the probes ran."""

    limits: neightable.Limits | None = None
    in_use: int = 0
    budget: int = 0
    peak: int = 0  # most entries the probes held at once
    evictions: int = 0
    table_fulls: int = 0  # new overflows during the probes (all retries included)
    retried: int = 0
    still_failed_in_overflow: int = 0
    waited: float = 0.0

    def overflow_text(self) -> str:
        lim = self.limits
        t3 = lim.gc_thresh3 if lim else "?"
        fix = neightable.sysctl_command(neightable.suggested(2 * (lim.gc_thresh3 if lim else 1024), lim)) \
            if lim else "raise net.ipv4.neigh.default.gc_thresh3"
        return (f"the kernel's neighbour table overflowed during the probes (table_fulls +{self.table_fulls}, "
                f"gc_thresh3={t3}, shared by every namespace on this machine): failures are the machine's limit, "
                f"not the pod network's; raise it: {fix}")


@dataclass
class Context:
    lab: Lab
    full: bool | None = None
    seed: int | None = None
    # the listeners' port (and port + 1, a second thread's), below the ephemeral range (32768-60999): a pod's own
    # outgoing connections can never hold it when its listener opens
    port: int = field(default_factory=lambda: random.randint(20000, 32000))
    max_inflight: int = 128
    neigh: NeighReport = field(default_factory=NeighReport)
    probes_started: int = 0

    @cached_property
    def pods(self) -> list[PodInfo]:
        out = []
        for p in self.lab.pods:
            st = p.status
            if st.get("phase") == "Running" and st.get("podIP"):
                out.append(PodInfo(p.ref, st["podIP"], p.node, p.netns, p.namespace))
        return out

    @cached_property
    def routing(self) -> str:
        return self.lab.record.get("routing", "")

    @cached_property
    def plan(self) -> plan_mod.Plan:
        return plan_mod.make([(p.name, p.node) for p in self.pods], full=self.full, seed=self.seed)

    @cached_property
    def endpoints(self) -> dict[str, neighbours.Endpoint]:
        """Pods by name and nodes as ``node/<name>``, with what neighbour pacing needs to know of them."""
        nodes = {}
        for n in self.lab.nodes:
            gw = str(ipaddress.ip_network(n.pod_cidr).network_address + 1)
            nodes[n.name] = (n.netns, n.ip, gw)
        out = {f"node/{name}": neighbours.Endpoint(ns, gw, name, ns, ip) for name, (ns, ip, gw) in nodes.items()}
        for p in self.pods:
            ns, ip, gw = nodes.get(p.node, ("", "", ""))
            out[p.name] = neighbours.Endpoint(p.netns, p.ip, p.node, ns, ip, gw or "?")
        return out

    @cached_property
    def pacer(self) -> neighbours.Pacer | None:
        try:
            lim = neightable.read_limits()
        except (OSError, ValueError):
            return None
        stats = neightable.read_stats()
        self.neigh.limits = lim
        self.neigh.in_use = max(0, (stats.entries if stats else 0) - self._permanent_neighbours())
        self.neigh.budget = neighbours.budget(lim.gc_thresh3, self.neigh.in_use)
        return neighbours.Pacer(self.neigh.budget)

    @cached_property
    def forget(self) -> neightable.Forgetter:
        """Deletes the entries the pacer evicts: on a pod's eth0, on a node's cni0 (its pods) or eth0 (nodes)."""
        cidrs = {n.netns: ipaddress.ip_network(n.pod_cidr) for n in self.lab.nodes}

        def dev_of(ns: str, ip: str) -> str:
            if ns not in cidrs:
                return "eth0"
            return "cni0" if ipaddress.ip_address(ip) in cidrs[ns] else "eth0"
        return neightable.Forgetter(dev_of, keep=set(cidrs))

    def _permanent_neighbours(self) -> int:
        """Permanent entries of this lab (flannel's VTEP neighbours: one per other node in vxlan); they are in
        the table's count but not in its limit."""
        return len(self.lab.nodes) * (len(self.lab.nodes) - 1) if self.routing == "vxlan" else 0

    def run(self, jobs, max_inflight: int | None = None, wrap=lambda d: d, threads: int | None = None) -> list:
        """Run probe jobs with the lab's pacer, counting overflows of the neighbour table meanwhile.

        Large runs are split between ``THREADS`` threads (every other job each, so both stay in the same waves),
        each with its own epoll loop and listeners on its own port: the kernel's work for a connection happens
        inside its syscalls, which release the interpreter lock, so a second thread overlaps it with the first's
        Python work. The pacer and the neighbour deletions are shared under one lock."""
        pacer = self.pacer
        n = threads or (THREADS if len(jobs) >= 2000 else 1)
        before = neightable.read_stats()
        if n == 1:
            probers = [engine.Prober(max_inflight or self.max_inflight, pacer, self.forget, wrap=wrap)]
            results = probers[0].run(jobs)
        else:
            shared = _Locked(pacer, self.forget) if pacer is not None else None
            probers = [engine.Prober(max(1, (max_inflight or self.max_inflight) // n), shared, None, wrap=wrap)
                       for _ in range(n)]
            parts: list = [None] * n
            errors: list[BaseException] = []

            def work(k: int) -> None:
                try:
                    parts[k] = probers[k].run(_Slice(jobs, k, n))
                except BaseException as e:  # re-raised below, in the caller's thread
                    errors.append(e)
            ts = [threading.Thread(target=work, args=(k,), name=f"podlab-check-{k}") for k in range(n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            if errors:
                raise errors[0]
            results = [None] * len(jobs)
            for k, part in enumerate(parts):
                results[k::n] = part
        after = neightable.read_stats()
        for prober in probers:
            self.probes_started += prober.started
            self.neigh.waited += prober.paced / len(probers)
        if pacer is not None:
            self.neigh.peak, self.neigh.evictions = max(self.neigh.peak, pacer.peak), pacer.evictions
        if before and after and after.table_fulls > before.table_fulls:
            self.neigh.table_fulls += after.table_fulls - before.table_fulls
        return results

    def _tcp(self, src: str, dst: str) -> Tcp:
        s, d = self.endpoints[src], self.endpoints[dst]
        return Tcp(s.ns, d.ip, self.port, listener=d.ns, keys=neighbours.keys(s, d))

    @cached_property
    def matrix(self) -> dict[tuple[str, str], "Result"]:
        """(source, target pod) → probe result, for every probe of the plan; sources are pod names and
        ``node/<name>``. Jobs are built as they start (a 5,000-pod plan holds 250,000 of them)."""
        group = plan_mod.group_for(self.pacer.budget, len(self.lab.nodes)) if self.pacer is not None else 1
        probes = [(s, t) for s, t in self.plan.ordered(group) if s in self.endpoints and t in self.endpoints]
        fulls0 = self.neigh.table_fulls
        results = dict(zip(probes, self.run(_Lazy(probes, self._tcp), wrap=Result.of)))
        if self.neigh.table_fulls > fulls0:  # the table overflowed: retry what failed, slower, once
            failed = [k for k, r in results.items() if not _complete(r)]
            if failed:
                self.neigh.retried = len(failed)
                time.sleep(neighbours.GRACE + 5)
                if self.pacer is not None:
                    self.pacer.budget = max(1, self.pacer.budget // 2)
                fulls1 = self.neigh.table_fulls
                again = dict(zip(failed, self.run(_Lazy(failed, self._tcp), max_inflight=16, wrap=Result.of)))
                results.update(again)
                if self.neigh.table_fulls > fulls1:
                    self.neigh.still_failed_in_overflow = sum(1 for r in again.values() if not _complete(r))
        return results

    @property
    def overflowed(self) -> bool:
        """Whether failures may be the neighbour table's (it overflowed during the final probes)."""
        return self.neigh.still_failed_in_overflow > 0 or (self.neigh.table_fulls > 0 and not self.neigh.retried)

    def connect(self, ns: str, targets: list[tuple[str, int]], settle: float = 5.0) -> list[dict]:
        """Open a TCP connection from namespace ``ns`` to each (ip, port), all at once; one result per target.

        The targets are the lab's own containers (Service endpoints), which report Running once their process
        exists, a moment before a server such as netexec has bound its port (podlab has no readiness probes):
        a refused connection is tried again for up to ``settle`` seconds, as the e2e Service tests poll."""
        results = self.run([Tcp(ns, ip, port) for ip, port in targets])
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            again = [i for i, r in enumerate(results) if not r.get("connected")
                     and "refused" in str(r.get("error", "")).lower()]
            if not again:
                break
            time.sleep(0.2)
            for i, r in zip(again, self.run([Tcp(ns, *targets[i]) for i in again])):
                results[i] = r
        return results

    def ping(self, pairs: list[tuple[str, str]]) -> list[dict]:
        """One DF echo of the source's eth0 MTU from pod to pod, per (source, target) pair."""
        jobs = []
        for s, t in pairs:
            src, dst = self.endpoints[s], self.endpoints[t]
            jobs.append(Ping(src.ns, dst.ip, keys=neighbours.keys(src, dst)))
        return self.run(jobs)

    def notes(self) -> list[str]:
        out = []
        if "plan" in self.__dict__ and "matrix" in self.__dict__:
            out.append(self.plan.describe())
        n = self.neigh
        if n.limits and (n.waited >= 0.5 or n.evictions):
            out.append(f"probes kept within the kernel's neighbour table (gc_thresh3={n.limits.gc_thresh3}, "
                       f"{n.in_use} entries in use at the start): at most {n.peak} entries at once, "
                       f"{n.evictions} deleted to make room, held back {n.waited:.1f} s")
        if n.retried:
            out.append(f"the neighbour table overflowed (table_fulls +{n.table_fulls}); {n.retried} probes retried "
                       f"more slowly, {n.still_failed_in_overflow} still failed during an overflow")
        return out

    def close(self) -> None:
        """Delete the neighbour entries the probes made and still hold (sockets close with their prober)."""
        if "pacer" in self.__dict__ and self.pacer is not None:
            held = self.pacer.held()
            if held:
                self.pacer.evicted(held, self.forget(held))
        if "forget" in self.__dict__:
            self.forget.close()

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _complete(r) -> bool:
    return bool(r.get("connected")) and int(r.get("bulk") or 0) >= engine.BULK


THREADS = 2  # probing threads for large runs (this VM has 2 cores)


class _Slice:
    """Every ``n``-th job of ``jobs`` from ``k`` on; TCP jobs to a listener use port + k (each thread listens on
    a port of its own, so no connection can land on another thread's listener)."""

    def __init__(self, jobs, k: int, n: int) -> None:
        self.jobs, self.k, self.n = jobs, k, n
        self.len = len(range(k, len(jobs), n))

    def __len__(self) -> int:
        return self.len

    def __getitem__(self, i: int):
        job = self.jobs[self.k + i * self.n]
        if self.k and isinstance(job, Tcp) and job.listener:
            job = dataclasses.replace(job, port=job.port + self.k)
        return job

    def __iter__(self):
        return (self[i] for i in range(self.len))


class _Locked:
    """A pacer shared by the probing threads: every call under one lock, and an admission that needs room
    deletes its victims before the lock is let go (so no other thread can start using one in between)."""

    def __init__(self, pacer: neighbours.Pacer, forget) -> None:
        self.pacer, self.forget, self.lock = pacer, forget, threading.Lock()

    def admit(self, ks, now):
        with self.lock:
            while True:
                wait, victims = self.pacer.admit(ks, now)
                if not victims:
                    return wait, []
                self.pacer.evicted(victims, self.forget(victims))

    def finished(self, ks, now) -> None:
        with self.lock:
            self.pacer.finished(ks, now)


class _Lazy:
    """A sequence of probe jobs made when read (``make(src, dst)``), so a large plan holds no job objects."""

    def __init__(self, probes: list[tuple[str, str]], make) -> None:
        self.probes, self.make = probes, make

    def __len__(self) -> int:
        return len(self.probes)

    def __getitem__(self, i: int):
        return self.make(*self.probes[i])

    def __iter__(self):
        return (self.make(s, t) for s, t in self.probes)


class Result:
    """One matrix entry, compact (a 5,000-pod check keeps 250,000): read like the prober's dict."""

    __slots__ = ("target", "port", "connected", "seen", "bulk", "error", "ms")

    @classmethod
    def of(cls, d: dict) -> "Result":
        r = cls()
        r.target, r.port, r.connected = d.get("target"), d.get("port"), bool(d.get("connected"))
        r.seen = sys.intern(d["seen"]) if d.get("seen") else None
        r.bulk, r.error, r.ms = int(d.get("bulk") or 0), sys.intern(d.get("error") or ""), d.get("ms")
        return r

    def get(self, key: str, default=None):
        return getattr(self, key, default)

    def __getitem__(self, key: str):
        return getattr(self, key)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}
