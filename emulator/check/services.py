"""The Kubernetes e2e granular checks for Services, DNS and SNAT, as ``podlab check`` checks.

They apply only where a lab has what they test: Services with endpoints (ClusterIP from a pod on every node),
NodePorts and an external host (external → nodeIP:nodePort on every node), the cluster DNS (short and full
names resolve to the ClusterIP, read through the pod's own resolv.conf), and pod → external traffic (the
external host must see the node's IP: source NAT at the cluster's edge, the one place it belongs).
"""
from __future__ import annotations



from emulator.check.context import Context
from emulator.check.model import CheckResult, Finding
from emulator.check.registry import check
from emulator.lab.api import run_in
from emulator.netlink import netns
from emulator.netlink.observe import Snapshot


def _services(ctx: Context) -> list[dict]:
    out = []
    for svc in ctx.lab.store.list("services"):
        ep = ctx.lab.store.get("endpoints", svc["metadata"]["name"], svc["metadata"].get("namespace") or "default")
        addrs = [a for s in (ep or {}).get("subsets", []) for a in s.get("addresses", [])]
        if svc.get("spec", {}).get("clusterIP") not in (None, "", "None") and addrs:
            out.append(svc)
    return out


def _tcp_ports(svc: dict) -> list[dict]:
    return [p for p in svc["spec"].get("ports", []) if p.get("protocol", "TCP") == "TCP"]


def _external(ctx: Context) -> str | None:
    ns = f"{ctx.lab.name}-external"
    if not netns.exists(ns):
        return None
    with Snapshot(ns=ns) as snap:
        addrs = [a.ip for a in snap.addrs if a.dev != "lo"]
    return addrs[0] if addrs else None


def _one_pod_per_node(ctx: Context):
    seen, out = set(), []
    for p in ctx.pods:
        if p.node not in seen:
            seen.add(p.node)
            out.append(p)
    return out


def _name(svc: dict) -> str:
    return f"{svc['metadata'].get('namespace', 'default')}/{svc['metadata']['name']}"


@check("service-clusterip", "Services answer on their ClusterIP from pods on every node", order=60,
          applies=lambda ctx: any(_tcp_ports(s) for s in _services(ctx)))
def service_clusterip(ctx: Context) -> CheckResult:
    targets = [(s["spec"]["clusterIP"], p["port"], _name(s)) for s in _services(ctx) for p in _tcp_ports(s)]
    findings, total = [], 0
    for pod in _one_pod_per_node(ctx):
        for (ip, port, name), r in zip(targets, ctx.connect(pod.netns, [(ip, port) for ip, port, _ in targets])):
            total += 1
            if not r.get("connected"):
                findings.append(Finding(f"{pod.name} ({pod.node}) → {name} {ip}:{port}", "a connection",
                                        r.get("error") or "no answer", culprit=f"{pod.node} (kube-proxy rules)"))
    return CheckResult("service-clusterip", "", "FAIL" if findings else "PASS",
                       f"{total - len(findings)}/{total} ClusterIP connections", findings)


def _nodeports(ctx: Context) -> list[tuple[int, str]]:
    return [(p["nodePort"], _name(s)) for s in _services(ctx) if s["spec"].get("type") == "NodePort"
            for p in _tcp_ports(s) if p.get("nodePort")]


@check("service-nodeport", "an outside client reaches every NodePort on every node", order=70,
          applies=lambda ctx: bool(_nodeports(ctx)) and _external(ctx) is not None)
def service_nodeport(ctx: Context) -> CheckResult:
    targets = [(n.ip, port, name, n.name) for n in ctx.lab.nodes if n.runtime != "docker"  # no kube-proxy there
               for port, name in _nodeports(ctx)]
    results = ctx.connect(f"{ctx.lab.name}-external", [(ip, port) for ip, port, _, _ in targets])
    findings = [Finding(f"external → {node} {ip}:{port} ({name})", "a connection", r.get("error") or "no answer",
                        culprit=f"{node} (KUBE-NODEPORTS)")
                for (ip, port, name, node), r in zip(targets, results) if not r.get("connected")]
    return CheckResult("service-nodeport", "", "FAIL" if findings else "PASS",
                       f"{len(targets) - len(findings)}/{len(targets)} NodePort connections from outside", findings)


@check("cluster-dns", "pods resolve Services by short and full name (their own resolv.conf)", order=80,
       applies=lambda ctx: ctx.lab.store.get("services", "kube-dns", "kube-system") is not None
       and bool(_services(ctx)))
def cluster_dns(ctx: Context) -> CheckResult:
    pod = ctx.pods[0]
    want: list[tuple[str, str]] = []  # (name, its ClusterIP)
    for s in _services(ctx):
        ns, name, ip = s["metadata"].get("namespace", "default"), s["metadata"]["name"], s["spec"]["clusterIP"]
        want += [(n, ip) for n in [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}"]
                 + ([name] if ns == pod.namespace else [])]
    # one process in the pod for every name (a lookup each, in order; a name that does not resolve prints "-")
    out = run_in(pod.netns, ["sh", "-c", 'for n; do r=$(getent hosts "$n") || r=-; echo "${r%% *}"; done', "sh",
                             *(n for n, _ in want)], timeout=15 + 2 * len(want)).stdout.split("\n")
    findings, total = [], len(want)
    for i, (n, ip) in enumerate(want):
        got = out[i].strip() if i < len(out) and out[i].strip() not in ("", "-") else ""
        if got != ip:
            findings.append(Finding(f"{pod.name}: {n}", ip, got or "no answer",
                                    culprit="cluster DNS / the pod's resolv.conf"))
    return CheckResult("cluster-dns", "", "FAIL" if findings else "PASS",
                       f"{total - len(findings)}/{total} names resolved to their ClusterIP", findings)


@check("snat-to-external", "pods reach the outside, seen there with their node's IP", order=90,
          applies=lambda ctx: _external(ctx) is not None)
def snat_to_external(ctx: Context) -> CheckResult:
    ext = _external(ctx)
    findings = []
    pods = _one_pod_per_node(ctx)
    for pod in pods:
        node_ip = ctx.lab.node(pod.node).ip
        r = run_in(pod.netns, ["curl", "-sS", "--max-time", "3", f"http://{ext}/clientip"], timeout=15)
        seen = r.stdout.strip().rsplit(":", 1)[0] if r.returncode == 0 else ""
        if seen != node_ip:
            findings.append(Finding(f"{pod.name} ({pod.node}) → {ext}", f"the external host sees {node_ip}",
                                    seen or (r.stderr.strip() or "no answer"),
                                    culprit=f"{pod.node} (masquerade at the cluster's edge)"))
    return CheckResult("snat-to-external", "", "FAIL" if findings else "PASS",
                       f"{len(pods) - len(findings)}/{len(pods)} pods seen outside as their node", findings)



