"""The reachability matrix of a running lab: expected (the engine over the store) and measured (probes).

Pods are the lab's Running pods with an IP, named ``<namespace>/<pod>`` and sorted that way; ``-n NS`` keeps one
namespace. A cell is probed from the source pod's namespace either to the destination's pod IP (``via="pod"``)
or, as the upstream suite does, to the ClusterIP of a Service whose only endpoint is that pod, on the service
port whose target is the probed port (``via="service"``; a cell without such a Service is ``?``). The upstream
suite does not probe a pod to itself (``?`` on the diagonal). ``converge`` re-probes the cells that disagree
with the expectation (``attempts`` probes in all, ``pause`` apart; upstream probes the whole matrix again once):
by then every enforcer has applied the change (callers wait for that first), so a cell still wrong is wrong.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from emulator.lab.api import Lab
from emulator.netpol import engine, probe
from emulator.netpol.reader import ClusterReader
from emulator.netpol.engine import Cluster, PodInfo
from emulator.netpol.truthtable import TruthTable
from emulator.topology import names


@dataclass(frozen=True)
class PortSpec:
    port: int
    protocol: str = "TCP"

    @classmethod
    def parse(cls, text: str) -> "PortSpec":
        num, _, proto = text.partition("/")
        if not num.isdigit() or not 1 <= int(num) <= 65535:
            raise ValueError(f"port {text!r}: give NUMBER[/TCP|UDP|SCTP], e.g. 80/TCP")
        proto = (proto or "TCP").upper()
        if proto not in ("TCP", "UDP", "SCTP"):
            raise ValueError(f"port {text!r}: the protocol is TCP, UDP or SCTP")
        return cls(int(num), proto)

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


def pod_netns(lab: Lab, pod: PodInfo) -> str:
    """The network namespace of ``pod`` (``<lab>-<pod>``, ``<lab>-<pod>.<namespace>`` outside ``default``)."""
    return names.pod_ns(lab.name, pod.name, pod.namespace)


def cluster_of(lab: Lab) -> Cluster:
    return ClusterReader(lab.store).cluster()


def pods_of(c: Cluster, namespace: str | None = None) -> list[PodInfo]:
    return sorted((p for p in c.pods if p.ip and (namespace is None or p.namespace == namespace)),
                  key=lambda p: (p.namespace, p.name))


def service_targets(lab: Lab, c: Cluster) -> dict[tuple[str, int, str], tuple[str, int]]:
    """(pod ref, port, protocol) → (ClusterIP, service port), for Services whose one endpoint is that pod."""
    by_name = {(p.namespace, p.name): p for p in c.pods}
    eps = {(e["metadata"].get("namespace", "default"), e["metadata"]["name"]): e for e in lab.store.list("endpoints")}
    out: dict[tuple[str, int, str], tuple[str, int]] = {}
    for svc in lab.store.list("services"):
        meta, spec = svc["metadata"], svc.get("spec", {})
        ip = spec.get("clusterIP")
        ep = eps.get((meta.get("namespace", "default"), meta["name"]))
        if not ip or ip == "None" or ep is None:
            continue
        refs = {(a.get("targetRef", {}).get("namespace") or meta.get("namespace", "default"),
                 a.get("targetRef", {}).get("name")) for s in ep.get("subsets", []) for a in s.get("addresses", [])}
        if len(refs) != 1 or next(iter(refs)) not in by_name:
            continue
        pod = by_name[next(iter(refs))]
        for sp in spec.get("ports", []):
            proto, target = sp.get("protocol", "TCP"), sp.get("targetPort", sp["port"])
            number = pod.named_port(target, proto) if isinstance(target, str) else int(target)
            if number is not None:
                out.setdefault((pod.ref, number, proto), (ip, int(sp["port"])))
    return out


def serves(pod: PodInfo, spec: PortSpec, declared: dict[str, set[tuple[int, str]]]) -> bool:
    return (spec.port, spec.protocol) in declared.get(pod.ref, set())


def declared_ports(lab: Lab) -> dict[str, set[tuple[int, str]]]:
    """pod ref → the (port, protocol) its containers declare (named or not)."""
    out: dict[str, set[tuple[int, str]]] = {}
    for m in lab.store.list("pods"):
        meta = m.get("metadata", {})
        ref = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
        out[ref] = {(int(p["containerPort"]), p.get("protocol", "TCP")) for c in m.get("spec", {}).get("containers", [])
                    for p in c.get("ports", [])}
    return out


def expected(c: Cluster, pods: list[PodInfo], spec: PortSpec, tos: list[PodInfo] | None = None) -> TruthTable:
    """Rows ``pods``, columns ``tos`` (default the same pods)."""
    tos = pods if tos is None else tos
    t = TruthTable([p.ref for p in pods], [p.ref for p in tos])
    for s in pods:
        for d in tos:
            t.set(s.ref, d.ref, engine.evaluate(c, s, d, spec.port, spec.protocol).allowed)
    return t


@dataclass(frozen=True)
class Job:
    """One table to measure: a port/protocol, how to reach the destination, what is expected (if known), and its
    columns (default: the sources)."""
    spec: PortSpec
    via: str = "pod"
    want: TruthTable | None = None
    tos: tuple[PodInfo, ...] | None = None


def _targets(lab: Lab, pods: list[PodInfo], tos: list[PodInfo], job: Job, cells, services, tag) -> list[probe.Target]:
    by_ref = {p.ref: p for p in list(pods) + list(tos)}
    out = []
    for f, t in cells if cells is not None else [(f.ref, t.ref) for f in pods for t in tos if f.ref != t.ref]:
        src, dst = by_ref[f], by_ref[t]
        if job.via == "service":
            hit = (services or {}).get((dst.ref, job.spec.port, job.spec.protocol))
            if hit is None:
                continue
            ip, port = hit
        else:
            ip, port = dst.ip or "", job.spec.port
        out.append(probe.Target(pod_netns(lab, src), ip, port, job.spec.protocol, (tag, f, t)))
    return out


def measure_many(lab: Lab, pods: list[PodInfo], jobs: list[Job], cells: list | None = None,
                 timeout: float = probe.TIMEOUT, services: dict | None = None) -> list[tuple[TruthTable, dict]]:
    """Probe several tables in one batch (all their sockets at once); per job, its table and {cell: Result}.
    ``cells[k]`` limits job k to those cells (None: every pair but the diagonal)."""
    if services is None and any(j.via == "service" for j in jobs):
        services = service_targets(lab, cluster_of(lab))
    cols = [list(j.tos) if j.tos is not None else pods for j in jobs]
    targets = []
    for k, job in enumerate(jobs):
        targets += _targets(lab, pods, cols[k], job, cells[k] if cells is not None else None, services, k)
    out = [(TruthTable([p.ref for p in pods], [p.ref for p in cols[k]]), {}) for k in range(len(jobs))]
    for r in probe.run(targets, timeout):
        k, f, t = r.target.key
        out[k][0].set(f, t, r.connected)
        out[k][1][(f, t)] = r
    return out


def measure(lab: Lab, pods: list[PodInfo], spec: PortSpec, via: str = "pod", cells: list[tuple[str, str]] | None = None,
            timeout: float = probe.TIMEOUT, services: dict | None = None,
            tos: list[PodInfo] | None = None) -> tuple[TruthTable, dict]:
    """Probe ``cells`` (default: every pair but the diagonal); returns the table and {cell: probe.Result}."""
    job = Job(spec, via, None, tuple(tos) if tos is not None else None)
    return measure_many(lab, pods, [job], [cells], timeout, services)[0]


def converge_many(lab: Lab, pods: list[PodInfo], jobs: list[Job], attempts: int = 2, pause: float = 0.5,
                  timeout: float = probe.TIMEOUT, services: dict | None = None) -> list[tuple[TruthTable, dict]]:
    """Measure every job's table, then re-probe the cells that differ from its ``want``."""
    if services is None and any(j.via == "service" for j in jobs):
        services = service_targets(lab, cluster_of(lab))
    results = measure_many(lab, pods, jobs, None, timeout, services)
    for _ in range(attempts - 1):
        wrong = [j.want.differences(got) if j.want is not None else [] for j, (got, _) in zip(jobs, results)]
        if not any(wrong):
            break
        time.sleep(pause)
        again = measure_many(lab, pods, jobs, wrong, timeout, services)
        for (got, details), (new, more), cells in zip(results, again, wrong):
            for cell in cells:
                got.set(*cell, new.get(*cell))
            details.update(more)
    return results


def converge(lab: Lab, pods: list[PodInfo], spec: PortSpec, want: TruthTable, via: str = "pod", attempts: int = 2,
             pause: float = 0.5, timeout: float = probe.TIMEOUT, tos: list[PodInfo] | None = None,
             services: dict | None = None) -> tuple[TruthTable, dict]:
    job = Job(spec, via, want, tuple(tos) if tos is not None else None)
    return converge_many(lab, pods, [job], attempts, pause, timeout, services)[0]
