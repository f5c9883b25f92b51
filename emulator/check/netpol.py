"""``podlab check netpol``: the lab's NetworkPolicy, proven the way the upstream e2e suite proves a CNI's.

For every port the pods declare (the upstream model: 80 and 81, TCP and UDP), the expected truth table is
computed from the policies in the store (``netpol.engine``) over every Running pod (rows, sources) and the pods
serving that port (columns), then measured from inside the pods — to each pod IP and, where a Service has that
pod as its one endpoint, to its ClusterIP (policy acts after Service DNAT) — re-probing wrong cells as upstream
does. A cell that differs is a finding, with the tables printed as upstream prints them (``.``/``X``, the
differing cells marked ``*``) and a culprit: which policy and rule decide the cell, and what the kernel of the
nodes involved holds that the policies do not ask for, or lacks (a rule removed by hand, a pod missing from a
set), read back with ``nft -j list table`` and compared with the node's desired state, and what the kernel does
to the cell's packet: the NetworkPolicy rule ``trace`` finds dropping or admitting it in the nodes' tables (for
the first few cells). SCTP ports are skipped
when the kernel has no SCTP sockets, and the summary says so.
"""
from __future__ import annotations

from emulator.check.context import Context
from emulator.check.model import CheckResult, Finding
from emulator.check.registry import check
from emulator.netpol import component, engine, kernel, matrix, nodestate, probe
from emulator.netpol.engine import Cluster, PodInfo
from emulator.tools.trace import trace

MAX_TRACED = 6  # cells per check whose packet is traced through the kernel's rules (about 30 ms each)


def _enforced(ctx: Context) -> bool:
    return any(component.running(ctx.lab.paths, n.name) for n in ctx.lab.nodes)


def lab_pod(ctx: Context, ip: str | None, cache: dict) -> str | None:
    """The lab's name of the pod with address ``ip`` (what ``trace`` takes as its source)."""
    if "pods-by-ip" not in cache:
        cache["pods-by-ip"] = {(ctx.lab.store.get_status("pods", n) or {}).get("podIP"): n
                               for n in ctx.lab.store.names("pods")}
    return cache["pods-by-ip"].get(ip)


def kernel_words(ctx: Context, src: PodInfo, dst: PodInfo, spec: matrix.PortSpec, cache: dict) -> str:
    """What the nodes' rules do to the cell's first packet, from ``trace`` (the tables as the kernel holds them):
    the NetworkPolicy rule that drops or admits it, or what else stops it ('' past ``MAX_TRACED`` cells)."""
    cache["traced"] = cache.get("traced", 0) + 1
    name = lab_pod(ctx, src.ip, cache)
    if cache["traced"] > MAX_TRACED or name is None or dst.ip is None or spec.protocol not in ("TCP", "UDP"):
        return ""
    res = trace(ctx.lab, name, f"{dst.ip}:{spec.port}", spec.protocol.lower())
    if res.problem:
        return f"the kernel: {res.problem}"
    said = [h.text for h in res.hops if (h.detail or {}).get("netpol", {}).get("sides")]
    return "the kernel: " + ("; ".join(said) if said else "no rule stops it (delivered)")


def culprit(ctx: Context, c: Cluster, src: PodInfo, dst: PodInfo, spec: matrix.PortSpec, cache: dict) -> str:
    v = engine.evaluate(c, src, dst, spec.port, spec.protocol)
    nodes = sorted({src.node, dst.node})
    diffs = []
    for n in nodes:
        if n not in cache:
            cache[n] = kernel.differences(kernel.read(ctx.lab, n), nodestate.build(c, n))
        diffs += cache[n]
    tail = "; ".join(diffs[:4]) if diffs else f"the kernels of {', '.join(nodes)} hold what the policies ask"
    said = kernel_words(ctx, src, dst, spec, cache)
    return f"{v.text()}; {tail}" + (f"; {said}" if said else "")


@check("netpol", "NetworkPolicy: the probed truth tables equal the policies' (pod IPs and ClusterIPs)", order=95,
       applies=_enforced)
def netpol(ctx: Context) -> CheckResult:
    lab = ctx.lab
    c = matrix.cluster_of(lab)
    pods = matrix.pods_of(c)
    declared = matrix.declared_ports(lab)
    specs = sorted({matrix.PortSpec(port, proto) for ref in (p.ref for p in pods) for port, proto in
                    declared.get(ref, ())}, key=lambda s: (s.protocol, s.port))
    services = matrix.service_targets(lab, c)
    findings: list[Finding] = []
    notes: list[str] = []
    total = 0
    cache: dict = {}
    jobs: list[matrix.Job] = []
    for spec in specs:
        if spec.protocol == "SCTP" and not probe.sctp_available():
            notes.append(f"{spec}: not probed, this kernel has no SCTP sockets (CONFIG_IP_SCTP is not set)")
            continue
        tos = tuple(p for p in pods if matrix.serves(p, spec, declared))
        want = matrix.expected(c, pods, spec, list(tos))
        jobs.append(matrix.Job(spec, "pod", want, tos))
        if any((p.ref, spec.port, spec.protocol) in services for p in tos):
            jobs.append(matrix.Job(spec, "service", want, tos))
    for job, (got, details) in zip(jobs, matrix.converge_many(lab, pods, jobs, services=services)):
        want, spec = job.want, job.spec
        assert want is not None
        total += sum(v is not None for v in got.values.values())
        diff = want.differences(got)
        tables = ("expected:\n" + want.pretty("  ") + "\nobserved:\n" + got.pretty("  ", set(diff))
                  + "\ncomparison (. same, X different):\n" + want.compare(got).pretty("  "))
        for k, (f, t) in enumerate(diff):
            r = details.get((f, t))
            findings.append(Finding(
                f"{f} → {t} {spec} via {'ClusterIP' if job.via == 'service' else 'pod IP'}",
                "connected" if want.get(f, t) else "blocked",
                f"{'connected' if got.get(f, t) else 'blocked'} ({r.detail if r else '?'})",
                culprit=culprit(ctx, c, c.pod(f), c.pod(t), spec, cache), trace=tables if k == 0 else ""))
    npol = len(c.policies)
    summary = (f"{total - len(findings)}/{total} cells as expected over {len(specs)} ports, pod IPs and ClusterIPs, "
               f"{npol} {'policy' if npol == 1 else 'policies'}" + ("; " + "; ".join(notes) if notes else ""))
    return CheckResult("netpol", "", "FAIL" if findings else "PASS", summary, findings)
