"""The network model's rules as checks, each proven by what the kernel holds or what a receiver observed.

- ``unique-pod-ips``: every Running pod's eth0 (read from its namespace, not from the store) holds one address,
  unique in the cluster and inside its node's slice;
- ``pod-to-pod``: every pod opens a TCP connection to every other pod, on any node (above 100 pods: to a
  spanning set of them, see ``plan``; ``--full`` for every pair);
- ``no-nat``: the receiving pod saw the sender's own pod IP (the source its kernel reported for the connection);
- ``path-mtu``: each of those connections carries 48 KiB back in full-size segments (a pod whose MTU is larger
  than the path's — 1500 over a 1450 VXLAN path — stalls here, while pings and handshakes still pass);
- ``node-to-pod``: each node's own namespace (where its agents live) reaches every pod on it.
Failures name the culprit when the evidence allows: the node missing a route, the node that NATs, the pod with
the wrong MTU, the pods sharing an address, or the kernel's neighbour table when it overflowed meanwhile. A
failing pair of ``pod-to-pod`` and ``no-nat`` carries the trace of that pair (``tools.trace``, the matrix's TCP
port): the path hop by hop from the kernel's state, where it breaks, and any rule that translates the source on
the way; when the way there looks whole, the way back too.
"""
from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict

from emulator.check.context import Context
from emulator.check.model import CheckResult, Finding
from emulator.check.registry import check
from emulator.check.engine import BULK
from emulator.errors import NoRouteError
from emulator.netlink import observe
from emulator.netlink.rtnl import Rtnl
from emulator.tools.trace import trace
from emulator.tools.trace_model import TraceResult


def _route_problem(ctx: Context, node: str, dst_ip: str, cache: dict | None = None) -> str:
    """Why ``node`` cannot forward to ``dst_ip``, read from its routing table ('' if it has a route). With a
    ``cache``, asked once per (node, destination node): routes are per node slice, not per pod."""
    dst_node = next((p.node for p in ctx.pods if p.ip == dst_ip), "")
    if cache is not None:
        key = (node, dst_node or dst_ip)
        if key not in cache:
            cache[key] = _route_problem(ctx, node, dst_ip)
        return cache[key]
    try:
        with observe.Snapshot(ns=ctx.lab.node(node).netns, label=node) as snap:
            r = snap.route_get(dst_ip)
    except NoRouteError:
        return f"{node} has no route to {dst_ip}"
    if dst_node and dst_node != node:
        cidr = ctx.lab.node(dst_node).pod_cidr
        if r.dev == "cni0" or not r.gateway and r.dev not in ("flannel.1",):
            return f"{node} has no route to {cidr} (pods of {dst_node}); `ip route get {dst_ip}` → {r.text(dst_ip)}"
    return ""


def trace_text(res: TraceResult) -> str:
    """A trace as a finding shows it: the trace's own lines."""
    return "\n".join(res.lines())


def pair_trace(ctx: Context, src: str, dst: str, both_ways: bool = False) -> str:
    """The trace of ``src`` → ``dst`` over the matrix's TCP port; with ``both_ways``, when that path looks whole
    (the packet got there), also the way back, where the failure must then be."""
    res = trace(ctx.lab, src, dst, "tcp", ctx.port)
    text = trace_text(res)
    if both_ways and res.delivered and res.problem is None:
        text += "\n" + trace_text(trace(ctx.lab, dst, src, "tcp", ctx.port))
    return text


def _eth0_addrs(ns: str) -> list[str]:
    """The IPv4 addresses on ``eth0`` in namespace ``ns``: one address dump (a 5,000-pod lab asks 5,000 times)."""
    with Rtnl.in_ns(ns) as rt:
        return [a.ip for a in observe.addresses_of(rt, "eth0")]


@check("unique-pod-ips", "every pod has a unique IP inside its node's slice", order=10)
def unique_pod_ips(ctx: Context) -> CheckResult:
    held: dict[str, list[str]] = {}
    findings = []
    for p in ctx.pods:
        addrs = _eth0_addrs(p.netns)
        held[p.name] = addrs
        slice_ = ipaddress.ip_network(ctx.lab.node(p.node).pod_cidr)
        for a in addrs:
            if ipaddress.ip_address(a) not in slice_:
                findings.append(Finding(f"pod {p.name}", f"an address in {slice_} ({p.node}'s slice)", a,
                                        culprit=f"pod {p.name}"))
        if not addrs:
            findings.append(Finding(f"pod {p.name}", "one IPv4 address on eth0", "none", culprit=f"pod {p.name}"))
    owners: dict[str, list[str]] = defaultdict(list)
    for pod, addrs in held.items():
        for a in addrs:
            owners[a].append(pod)
    for ip, pods in sorted(owners.items()):
        if len(pods) > 1:
            findings.append(Finding(f"address {ip}", "held by one pod", f"held by {', '.join(sorted(pods))}",
                                    culprit=", ".join(f"pod {p}" for p in sorted(pods))))
    n = sum(len(a) for a in held.values())
    return CheckResult("unique-pod-ips", "", "FAIL" if findings else "PASS",
                       f"{len(ctx.pods)} pods, {n} addresses, {len(owners)} distinct", findings)


def _pairs(ctx: Context, sources_are_nodes: bool) -> list[tuple[str, str, dict]]:
    return [(s, t, r) for (s, t), r in sorted(ctx.matrix.items()) if s.startswith("node/") == sources_are_nodes]


@check("pod-to-pod", "every pod reaches every other pod directly, on any node", order=20)
def pod_to_pod(ctx: Context) -> CheckResult:
    pods = {p.name: p for p in ctx.pods}
    pairs = _pairs(ctx, False)
    bad = [(s, t, r) for s, t, r in pairs if not r.get("connected")]
    findings = []
    by_route: dict[str, list[str]] = defaultdict(list)
    cache: dict = {}
    overflow = ctx.overflowed
    for s, t, r in bad:
        problem = ""
        if pods[s].node != pods[t].node:  # forward path from the sender's node, then the way back
            problem = (_route_problem(ctx, pods[s].node, pods[t].ip, cache)
                       or _route_problem(ctx, pods[t].node, pods[s].ip, cache))
        key = problem or ""
        by_route[key].append(f"{s} → {t}")
        if len(findings) < 12:
            culprit = problem.split(" has ")[0] if problem else (_NEIGH_CULPRIT if overflow else "")
            findings.append(Finding(f"{s} → {t} ({pods[t].ip})", "a TCP connection", r.get("error") or "no answer",
                                    culprit=culprit, trace=pair_trace(ctx, s, t, both_ways=True)))
    summary = f"{len(pairs) - len(bad)}/{len(pairs)} pairs connected ({ctx.plan.describe()})"
    for problem, subjects in by_route.items():
        if problem:
            summary += f"; {len(subjects)} fail because {problem.split(';')[0]}"
    if bad and overflow:
        summary += "; " + ctx.neigh.overflow_text()
    return CheckResult("pod-to-pod", "", "FAIL" if bad else "PASS", summary, findings)


_NEIGH_CULPRIT = "the kernel's neighbour table (overflowed during the probes)"


@check("no-nat", "the receiver sees the sender's pod IP (no NAT between pods)", order=30)
def no_nat(ctx: Context) -> CheckResult:
    pods = {p.name: p for p in ctx.pods}
    node_addrs: dict[str, str] = {}  # every address a node could masquerade to: eth0, cni0, flannel.1
    for n in ctx.lab.nodes:
        net = ipaddress.ip_network(n.pod_cidr)
        node_addrs.update({n.ip: n.name, str(net.network_address): n.name, str(net.network_address + 1): n.name})
    pairs = [(s, t, r) for s, t, r in _pairs(ctx, False) if r.get("connected") and r.get("seen")]
    wrong = [(s, t, r) for s, t, r in pairs if r["seen"] != pods[s].ip]
    findings = []
    culprits = Counter()
    for s, t, r in wrong:
        seen = r["seen"]
        culprit = f"{node_addrs[seen]} (source NAT to one of its own addresses)" if seen in node_addrs else ""
        culprits[culprit.split(" ")[0]] += 1
        if len(findings) < 12:
            findings.append(Finding(f"{s} → {t}", f"{t} sees {pods[s].ip}", f"{t} saw {seen}", culprit=culprit,
                                    trace=pair_trace(ctx, s, t)))
    summary = f"{len(pairs) - len(wrong)}/{len(pairs)} connections kept the sender's IP"
    if wrong and culprits:
        summary += "; NAT by " + ", ".join(f"{c} ({n})" for c, n in culprits.most_common() if c)
    return CheckResult("no-nat", "", "FAIL" if wrong else "PASS", summary, findings)


@check("path-mtu", "packets as large as a pod's MTU cross the network (pod MTU fits the path)", order=40)
def path_mtu(ctx: Context) -> CheckResult:
    """Per pod: a ping of exactly its eth0 MTU with DF set to a pod on another node; plus the TCP bulk
    transfers of the matrix (a whole overlay whose pods are too large for it stalls there)."""
    want = int(ctx.lab.record.get("cluster", {}).get("podMTU", 0))
    pods = {p.name: p for p in ctx.pods}
    first: dict[str, tuple[int, str]] = {}  # pod → the first pod it reached (another node's, if any)
    for (s, t), r in ctx.matrix.items():  # a pair that does not connect at all is pod-to-pod's failure
        if s in pods and r.get("connected"):
            rank = 0 if pods[t].node != pods[s].node else 1
            if s not in first or rank < first[s][0]:
                first[s] = (rank, t)
    jobs = sorted(((pods[s], pods[t]) for s, (_, t) in first.items()), key=lambda j: (j[0].node, j[0].name))
    findings = []
    for (p, q), res in zip(jobs, ctx.ping([(p.name, q.name) for p, q in jobs])):
        mtu, ok = res.get("mtu", 0), res.get("ok")
        if not ok:
            findings.append(Finding(f"{p.name} → {q.name}", f"a {mtu}-byte packet (DF) to arrive", "lost",
                                    culprit=f"pod {p.name} (eth0 MTU {mtu}, the cluster's pod MTU is {want})"
                                    if want and mtu != want else ""))
    pairs = [(s, t, r) for s, t, r in _pairs(ctx, False) if r.get("connected")]
    short = [(s, t, r) for s, t, r in pairs if int(r.get("bulk", 0)) < BULK]
    for s, t, r in short[:12]:
        findings.append(Finding(f"{s} → {t}", f"{BULK} bytes over TCP", f"{r.get('bulk', 0)} bytes, then stalled"))
    summary = (f"{len(jobs) - sum(1 for f in findings if 'DF' in f.expected)}/{len(jobs)} full-MTU packets, "
               f"{len(pairs) - len(short)}/{len(pairs)} {BULK // 1024} KiB transfers")
    return CheckResult("path-mtu", "", "FAIL" if findings else "PASS", summary, findings)


@check("node-to-pod", "each node reaches the pods on it (kubelet, probes)", order=50)
def node_to_pod(ctx: Context) -> CheckResult:
    pairs = _pairs(ctx, True)
    bad = [(s, t, r) for s, t, r in pairs if not r.get("connected")]
    culprit = _NEIGH_CULPRIT if ctx.overflowed else ""
    findings = [Finding(f"{s} → {t}", "a TCP connection", r.get("error") or "no answer",
                        culprit=culprit or s.split("/")[1]) for s, t, r in bad[:12]]
    summary = f"{len(pairs) - len(bad)}/{len(pairs)} node→pod connections"
    if bad and culprit:
        summary += "; " + ctx.neigh.overflow_text()
    return CheckResult("node-to-pod", "", "FAIL" if bad else "PASS", summary, findings)
