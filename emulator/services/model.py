"""Service and Deployment values, and the Kubernetes-shaped manifests the store holds for them.

The parsers (``parse``) build these frozen values from a topology file or an applied manifest after checking
every rule; the store keeps them as the objects ``kubectl get -o json`` shows (``v1 Service`` with its allocated
``clusterIP`` and ``nodePort``s, ``apps/v1 Deployment``), and the controllers, kube-proxy and the DNS server read
those manifests back. Store keys are object names, unique in a lab across Kubernetes namespaces (as pod names
are), so ``services/web.json`` is the Service ``web`` of whatever namespace it names.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from emulator.state.manifests import container_manifest, now
from emulator.topology.model import Container, Port
from emulator.topology.sections import NODE_PORT_MAX, NODE_PORT_MIN  # noqa: F401 (the one range; re-exported)

SERVICE_TYPES = ("ClusterIP", "NodePort")
PROTOCOLS = ("TCP", "UDP")
AFFINITIES = ("None", "ClientIP")
TRAFFIC_POLICIES = ("Cluster", "Local")
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, Kubernetes' default for sessionAffinityConfig.clientIP
MAX_AFFINITY_TIMEOUT = 86400
HEADLESS = "None"
TEMPLATE_HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str  # a number, or the name of a container port
    protocol: str = "TCP"
    name: str = ""
    node_port: int | None = None

    def manifest(self) -> dict:
        out: dict = {"protocol": self.protocol, "port": self.port, "targetPort": self.target_port}
        if self.name:
            out = {"name": self.name, **out}
        if self.node_port:
            out["nodePort"] = self.node_port
        return out


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str = "default"
    type: str = "ClusterIP"
    ports: tuple[ServicePort, ...] = ()
    selector: tuple[tuple[str, str], ...] | None = None  # None: endpoints are managed by hand
    cluster_ip: str | None = None  # None: allocate one; "None": headless
    session_affinity: str = "None"
    affinity_timeout: int = DEFAULT_AFFINITY_TIMEOUT
    labels: tuple[tuple[str, str], ...] = ()
    external_traffic_policy: str = "Cluster"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == HEADLESS

    def allocated(self, cluster_ip: str, node_ports: dict[int, int]) -> "Service":
        """The same service with its ClusterIP and NodePorts (index of the port → node port) filled in."""
        ports = tuple(replace(p, node_port=node_ports.get(i, p.node_port)) for i, p in enumerate(self.ports))
        return replace(self, cluster_ip=cluster_ip, ports=ports)

    def manifest(self, uid: str | None = None, created: str | None = None) -> dict:
        spec: dict = {"type": self.type, "ports": [p.manifest() for p in self.ports]}
        if self.selector is not None:
            spec["selector"] = dict(self.selector)
        if self.cluster_ip:
            spec["clusterIP"] = self.cluster_ip
            spec["clusterIPs"] = [self.cluster_ip]
        spec["sessionAffinity"] = self.session_affinity
        if self.session_affinity == "ClientIP":
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": self.affinity_timeout}}
        if self.type == "NodePort":
            spec["externalTrafficPolicy"] = self.external_traffic_policy
        spec["internalTrafficPolicy"] = "Cluster"
        spec["ipFamilies"], spec["ipFamilyPolicy"] = ["IPv4"], "SingleStack"
        meta: dict = {"name": self.name, "namespace": self.namespace, "uid": uid or str(uuid.uuid4()),
                      "creationTimestamp": created or now()}
        if self.labels:
            meta["labels"] = dict(self.labels)
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec,
                "status": {"loadBalancer": {}}}


def service_from_manifest(m: dict) -> Service:
    """Read a stored Service back (trusted: it was validated when it was written)."""
    spec, meta = m.get("spec", {}), m.get("metadata", {})
    ports = tuple(ServicePort(port=int(p["port"]), target_port=p.get("targetPort", p["port"]),
                              protocol=p.get("protocol", "TCP"), name=p.get("name", ""),
                              node_port=p.get("nodePort")) for p in spec.get("ports", []))
    sel = spec.get("selector")
    timeout = (spec.get("sessionAffinityConfig") or {}).get("clientIP", {}).get("timeoutSeconds",
                                                                                   DEFAULT_AFFINITY_TIMEOUT)
    return Service(name=meta["name"], namespace=meta.get("namespace", "default"), type=spec.get("type", "ClusterIP"),
                   ports=ports, selector=tuple(sel.items()) if sel is not None else None,
                   cluster_ip=spec.get("clusterIP"), session_affinity=spec.get("sessionAffinity", "None"),
                   affinity_timeout=int(timeout), labels=tuple((meta.get("labels") or {}).items()),
                   external_traffic_policy=spec.get("externalTrafficPolicy", "Cluster"))


@dataclass(frozen=True)
class Deployment:
    name: str
    namespace: str
    replicas: int
    selector: tuple[tuple[str, str], ...]
    template_labels: tuple[tuple[str, str], ...]
    containers: tuple[Container, ...]
    labels: tuple[tuple[str, str], ...] = ()

    def template(self) -> dict:
        return {"metadata": {"labels": dict(self.template_labels)},
                "spec": {"containers": [container_manifest(c) for c in self.containers]}}

    def manifest(self, uid: str | None = None, created: str | None = None) -> dict:
        meta: dict = {"name": self.name, "namespace": self.namespace, "uid": uid or str(uuid.uuid4()),
                      "creationTimestamp": created or now()}
        if self.labels:
            meta["labels"] = dict(self.labels)
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                "spec": {"replicas": self.replicas, "selector": {"matchLabels": dict(self.selector)},
                         "strategy": {"type": "RollingUpdate"}, "template": self.template()}}


def containers_from_manifest(items: list[dict]) -> tuple[Container, ...]:
    return tuple(Container(name=c["name"], image=c.get("image", "pause"), command=tuple(c.get("command", ())),
                           args=tuple(c.get("args", ())),
                           ports=tuple(Port(int(p["containerPort"]), p.get("protocol", "TCP"), p.get("name"))
                                       for p in c.get("ports", [])),
                           env=tuple((e["name"], str(e.get("value", ""))) for e in c.get("env", [])))
                 for c in items)


def deployment_from_manifest(m: dict) -> Deployment:
    spec, meta = m["spec"], m["metadata"]
    tmpl = spec.get("template", {})
    return Deployment(name=meta["name"], namespace=meta.get("namespace", "default"),
                      replicas=int(spec.get("replicas", 1)),
                      selector=tuple((spec.get("selector") or {}).get("matchLabels", {}).items()),
                      template_labels=tuple((tmpl.get("metadata") or {}).get("labels", {}).items()),
                      containers=containers_from_manifest((tmpl.get("spec") or {}).get("containers", [])),
                      labels=tuple((meta.get("labels") or {}).items()))


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Equality-based label selection, as a Service's ``selector`` (an empty selector selects nothing here)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
