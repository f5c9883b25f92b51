"""The network model's rules run against Docker containers: where the single-host model breaks, from packets.

A lab with ``runtime: docker`` nodes gets three more checks. Each probe is a real HTTP request (curl in the
sender's namespace) to the netexec program in the receiving container, so every verdict is what a receiver
answered: ``/hostname`` says *which* container got the packet (``<node>/<name>``), ``/clientip`` the source
address its kernel saw.

- ``unique-container-ips``: every address on a container's (and pod's) ``eth0``, read from its namespace, is held
  once in the lab. Fails on every lab with two Docker nodes: each numbers docker0's 172.17.0.0/16 from .2.
- ``container-to-container``: every container reaches every container on another node at its own IP (the pod
  model's "pod-to-pod"). Fails: the address is on the sender's own docker0 subnet, so the packet never leaves its
  node; either a local container that holds the same address answers (its ``/hostname`` is the proof) or
  nobody does (the node's own ``ip route get`` shows where it went).
- ``published-ports``: through each published port (node IP:host port), from every container on another node
  and from the external host, the receiver should see the sender's own address (the pod model's "no-nat").
  Fails for container senders: Docker's MASQUERADE of 172.17.0.0/16 on the sending node rewrites the source to
  that node's address (DNAT on the way in, SNAT on the way out); the external host's own address survives.

Each failing pair carries its trace (``tools.trace``: the path hop by hop from the kernel's state, with the DNAT
and the MASQUERADE where the node's rules make them). The pods on Kubernetes nodes of the same lab are checked
by ``check.core`` as in any lab, and pass.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from emulator.check.context import Context
from emulator.check.core import _eth0_addrs
from emulator.check.model import CheckResult, Finding
from emulator.check.probes import HttpResult, http_ns, matrix
from emulator.check.registry import check
from emulator.lab.api import run_in
from emulator.lab.targets import CONTAINERS
from emulator.netlink import netns
from emulator.tools.trace import trace
from emulator.topology import names

def _trace(ctx: Context, src: str, dst: str) -> str:
    """The path of the failing request, hop by hop from the kernel's state (``tools.trace``)."""
    try:
        return "\n".join(trace(ctx.lab, src, dst, "tcp").lines())
    except Exception as e:  # a trace that cannot be walked must not hide the finding itself
        return f"(no trace: {e})"


MODEL = "the Docker model: every Docker host numbers its own docker0 (172.17.0.0/16) from 172.17.0.2"


@dataclass(frozen=True)
class Ctr:
    label: str  # node/name
    node: str
    ns: str
    ip: str
    node_ip: str
    port: int  # netexec's HTTP port in the container
    runs: bool  # a program answers (image netexec)
    publish: tuple[tuple[int, int, str], ...]  # (host port, container port, proto)


def containers(ctx: Context) -> list[Ctr]:
    out = []
    for key in sorted(ctx.lab.store.names(CONTAINERS)):
        o = ctx.lab.store.get(CONTAINERS, key)
        if not o:
            continue
        st, meta = o["status"], o["metadata"]
        out.append(Ctr(f"{meta['node']}/{meta['name']}", meta["node"], st["namespace"], st["ipAddress"],
                       st["nodeIP"], int(o["spec"].get("httpPort", 80)), o["spec"]["image"] == "netexec",
                       tuple((p["hostPort"], p["containerPort"], p["protocol"]) for p in st.get("ports", []))))
    return out


def has_containers(ctx: Context) -> bool:
    return bool(ctx.lab.store.names(CONTAINERS))


def _get(ns: str, url: str) -> HttpResult:
    return http_ns(ns, url, timeout=2)


@check("unique-container-ips", "every container has an IP no other container or pod holds", order=60,
       applies=has_containers)
def unique_container_ips(ctx: Context) -> CheckResult:
    ctrs = containers(ctx)
    owners: dict[str, list[str]] = defaultdict(list)
    for c in ctrs:
        for a in _eth0_addrs(c.ns):
            owners[a].append(f"container {c.label}")
    for p in ctx.pods:
        for a in _eth0_addrs(p.netns):
            owners[a].append(f"pod {p.name}")
    findings = [Finding(f"address {ip}", "held by one container or pod", f"held by {', '.join(who)}",
                        culprit=MODEL) for ip, who in sorted(owners.items()) if len(who) > 1]
    shared = sum(len(f.observed.split(", ")) for f in findings)
    summary = f"{len(ctrs)} containers on {len({c.node for c in ctrs})} Docker nodes, {len(owners)} distinct addresses"
    if findings:
        summary += (f"; {len(findings)} address{'es' if len(findings) > 1 else ''} held {shared} times (every Docker "
                    "host starts at 172.17.0.2)")
    return CheckResult("unique-container-ips", "", "FAIL" if findings else "PASS", summary, findings)


def _route(ns: str, ip: str) -> str:
    r = run_in(ns, ["ip", "-j", "route", "get", ip], timeout=5)
    try:
        d = json.loads(r.stdout)[0]
    except (ValueError, IndexError):
        return r.stdout.strip() or r.stderr.strip()
    return " ".join(str(x) for x in (d.get("dst"), d.get("gateway") and f"via {d['gateway']}", "dev", d.get("dev"),
                                     d.get("prefsrc") and f"src {d['prefsrc']}") if x)


@check("container-to-container", "every container reaches every container on another node at its IP", order=70,
       applies=has_containers)
def container_to_container(ctx: Context) -> CheckResult:
    ctrs = containers(ctx)
    pairs = [(s, t) for s in ctrs for t in ctrs if s.node != t.node and t.runs]
    results = matrix(pairs, lambda st: _get(st[0].ns, f"http://{st[1].ip}:{st[1].port}/hostname"))
    findings, bad, local = [], 0, 0
    for (s, t), r in results:
        if r.ok and r.body == t.label:
            continue
        bad += 1
        expected = f"{t.label} ({t.ip}) answers"
        if r.ok:
            local += r.body.split("/")[0] == s.node
            where = "the sender itself" if r.body == s.label else f"{r.body}, on the sender's node {s.node}"
            observed = (f"{where} answered: {t.ip} is also an address on {s.node}'s docker0, so the packet "
                        f"never left {s.node}")
        else:
            observed = (f"no answer ({r.error or 'no reply'}); {s.node} routes it to its own bridge: "
                        f"`ip route get {t.ip}` → {_route(names.node_ns(ctx.lab.name, s.node), t.ip)}")
        if len(findings) < 12:
            findings.append(Finding(f"{s.label} → {t.label}", expected, observed, culprit=MODEL,
                                    trace=_trace(ctx, f"container/{s.label}", f"{t.ip}:{t.port}")))
    if not pairs:
        return CheckResult("container-to-container", "", "SKIP", "no two Docker nodes run a container to reach")
    summary = f"{len(pairs) - bad}/{len(pairs)} cross-node container pairs reached the container they addressed"
    if bad:
        summary += (f"; {local} answered by a container on the sender's own node, {bad - local} not at all: "
                    "172.17.0.0/16 is local on every Docker host and no host routes to another's")
    return CheckResult("container-to-container", "", "FAIL" if bad else "PASS", summary, findings)


@check("published-ports", "through a published port the receiver sees the sender's own address", order=80,
       applies=has_containers)
def published_ports(ctx: Context) -> CheckResult:
    ctrs = containers(ctx)
    ext = names.external_ns(ctx.lab.name)
    senders: list[tuple[str, str, str, str]] = [(f"container {c.label}", c.ns, c.ip, c.node) for c in ctrs]
    if netns.exists(ext):
        senders.append(("external", ext, _ext_ip(ext), ""))
    jobs = []
    for t in ctrs:
        for host_port, cport, proto in t.publish:
            if proto != "tcp" or not t.runs or cport != t.port:
                continue
            jobs += [(who, ns, ip, node, t, host_port) for who, ns, ip, node in senders if node != t.node]
    results = matrix(jobs, lambda j: _get(j[1], f"http://{j[4].node_ip}:{j[5]}/clientip"))
    node_ips = {c.node_ip: c.node for c in ctrs} | {n.ip: n.name for n in ctx.lab.nodes}
    findings, natted, lost = [], 0, 0
    for (who, _, ip, node, t, hp), r in results:
        subject = f"{who} → {t.node_ip}:{hp} ({t.label})"
        if not r.ok:
            lost += 1
            findings.append(Finding(subject, f"{t.label} answers", f"no answer ({r.error})"))
            continue
        seen = r.body.rsplit(":", 1)[0]
        if seen != ip:
            natted += 1
            by = node_ips.get(seen, "")
            culprit = (f"{by}: Docker's `-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE` rewrote the source to the "
                       "node's address" if by == node else (f"{by} (source NAT)" if by else ""))
            if len(findings) < 12:
                findings.append(Finding(subject, f"{t.label} sees {ip}", f"{t.label} saw {seen}"
                                        + (f" (the address of {by})" if by else ""), culprit=culprit,
                                        trace=_trace(ctx, who.replace("container ", "container/"),
                                                     f"{t.node_ip}:{hp}")))
    if not jobs:
        return CheckResult("published-ports", "", "SKIP", "no published TCP port has a sender on another node")
    kept = len(jobs) - natted - lost
    summary = (f"{kept}/{len(jobs)} connections through published ports kept the sender's address; "
               f"{natted} arrived from a node's address (DNAT in, MASQUERADE out)")
    if lost:
        summary += f"; {lost} got no answer"
    return CheckResult("published-ports", "", "FAIL" if natted or lost else "PASS", summary, findings)


def _ext_ip(ns: str) -> str:
    r = run_in(ns, ["ip", "-j", "-4", "addr", "show", "dev", "eth0"], timeout=5)
    try:
        return json.loads(r.stdout)[0]["addr_info"][0]["local"]
    except (ValueError, IndexError, KeyError):
        return ""
