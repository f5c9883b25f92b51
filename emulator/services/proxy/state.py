"""What kube-proxy on one node must program, as plain frozen data computed from Services and Endpoints.

``build`` turns the stored ``v1 Service`` and ``v1 Endpoints`` objects into one ``SvcPort`` per service port
(kube-proxy's unit: a ServicePortName ``namespace/name:port`` plus protocol) with its ClusterIP, NodePort,
affinity and ready endpoints, sorted, so the rule renderers (``iptables``, ``nft``) are pure functions of it and
two states compare with ``==``. ``changed`` names the services whose chains must be rewritten between two states
(a partial sync), exactly as kube-proxy tracks service and endpoint changes between syncs. Headless services
and services without a ClusterIP get no rules, as in Kubernetes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SvcKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int
    node: str = ""

    @property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, order=True)
class SvcPort:
    namespace: str
    name: str
    port_name: str
    protocol: str  # lower case: tcp | udp (as kube-proxy writes it into hashes and rules)
    cluster_ip: str
    port: int
    node_port: int = 0
    affinity_seconds: int = 0  # 0: no session affinity
    external_local: bool = False  # externalTrafficPolicy: Local
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def key(self) -> SvcKey:
        return (self.namespace, self.name)

    @property
    def spn(self) -> str:
        """kube-proxy's ServicePortName string: ``namespace/name:port`` (``namespace/name`` if unnamed)."""
        return f"{self.namespace}/{self.name}" + (f":{self.port_name}" if self.port_name else "")


@dataclass(frozen=True)
class ProxyState:
    node: str
    cluster_cidr: str  # pods' range: traffic from outside it to a ClusterIP is masqueraded
    ports: tuple[SvcPort, ...] = ()
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def by_service(self) -> dict[SvcKey, tuple[SvcPort, ...]]:
        out: dict[SvcKey, list[SvcPort]] = {}
        for p in self.ports:
            out.setdefault(p.key, []).append(p)
        return {k: tuple(v) for k, v in out.items()}


def _endpoints_for(ep: dict | None, port_name: str, protocol: str) -> tuple[Endpoint, ...]:
    out: set[Endpoint] = set()
    for subset in (ep or {}).get("subsets") or []:
        for p in subset.get("ports") or []:
            if p.get("name", "") != port_name or p.get("protocol", "TCP") != protocol:
                continue
            for a in subset.get("addresses") or []:
                out.add(Endpoint(a["ip"], int(p["port"]), a.get("nodeName") or ""))
    return tuple(sorted(out, key=lambda e: (tuple(int(x) for x in e.ip.split(".")), e.port)))


def service_ports(svc: dict, ep: dict | None) -> tuple[SvcPort, ...]:
    """The SvcPorts of one Service (none for a headless Service or one without a ClusterIP)."""
    spec, meta = svc.get("spec", {}), svc.get("metadata", {})
    ip = spec.get("clusterIP")
    if not ip or ip == "None":
        return ()
    ns, name = meta.get("namespace", "default"), meta["name"]
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = int((spec.get("sessionAffinityConfig") or {}).get("clientIP", {}).get("timeoutSeconds", 10800))
    local = spec.get("type") == "NodePort" and spec.get("externalTrafficPolicy") == "Local"
    out = []
    for p in spec.get("ports", []):
        proto = p.get("protocol", "TCP")
        out.append(SvcPort(namespace=ns, name=name, port_name=p.get("name", ""), protocol=proto.lower(),
                           cluster_ip=ip, port=int(p["port"]),
                           node_port=int(p.get("nodePort") or 0) if spec.get("type") == "NodePort" else 0,
                           affinity_seconds=affinity, external_local=local,
                           endpoints=_endpoints_for(ep, p.get("name", ""), proto)))
    return tuple(out)


def build(services: list[dict], endpoints: list[dict], node: str, cluster_cidr: str) -> ProxyState:
    return Builder(node, cluster_cidr).build(services, endpoints)


class Builder:
    """``build`` with memory: a Service whose manifest and Endpoints are the very objects seen last time (the
    store's reader returns the same object for an unchanged file) keeps its SvcPorts, so a change to one Service
    among hundreds costs that Service only."""

    def __init__(self, node: str, cluster_cidr: str) -> None:
        self.node, self.cluster_cidr = node, cluster_cidr
        self._memo: dict[SvcKey, tuple[dict, dict | None, tuple[SvcPort, ...]]] = {}

    def build(self, services: list[dict], endpoints: list[dict]) -> ProxyState:
        eps = {(e["metadata"].get("namespace", "default"), e["metadata"]["name"]): e for e in endpoints}
        memo: dict[SvcKey, tuple[dict, dict | None, tuple[SvcPort, ...]]] = {}
        ports: list[SvcPort] = []
        for svc in services:
            key = (svc["metadata"].get("namespace", "default"), svc["metadata"]["name"])
            ep = eps.get(key)
            hit = self._memo.get(key)
            sp = hit[2] if hit is not None and hit[0] is svc and hit[1] is ep else service_ports(svc, ep)
            memo[key] = (svc, ep, sp)
            ports.extend(sp)
        self._memo = memo
        return ProxyState(node=self.node, cluster_cidr=self.cluster_cidr, ports=tuple(sorted(ports)))


def changed(old: ProxyState | None, new: ProxyState) -> set[SvcKey] | None:
    """Services whose rules differ between ``old`` and ``new`` (None: everything, there is no ``old``)."""
    if old is None or old.cluster_cidr != new.cluster_cidr or old.node != new.node:
        return None
    a, b = old.by_service(), new.by_service()
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
