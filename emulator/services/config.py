"""Whether a topology has cluster Services, and how: kube-proxy's mode, the Services and Deployments, DNS.

A lab gets Services (kube-proxy on every node, the controller-manager, cluster DNS) when its topology has any of
``services``, ``deployments`` or ``kubeProxy`` (``kubeProxy: {mode: nftables}``; the default mode is
``iptables``, as kube-proxy's). ``settings`` validates all of it at once, before ``up`` creates anything, and
raises ``TopologyError`` naming the file and field. The cluster DNS answers at the tenth address of the Service
CIDR (``kube-dns``'s ClusterIP, 10.96.0.10), served by the ``coredns`` pods of kube-system (``coredns``).
"""
from __future__ import annotations

from dataclasses import dataclass

from emulator.errors import TopologyError
from emulator.services import alloc
from emulator.services.model import Deployment, Service
from emulator.services.parse import from_topology
from emulator.topology.model import Topology
from emulator.topology.validate import Validator

PROXY_KEYS = ("mode",)
PROXY_MODES = ("iptables", "nftables")
DEFAULT_PROXY_MODE = "iptables"
DOMAIN = "cluster.local"
SECTION_KEYS = ("services", "deployments", "kubeProxy")


@dataclass(frozen=True)
class ClusterServices:
    proxy_mode: str
    services: tuple[Service, ...]
    deployments: tuple[Deployment, ...]
    dns_ip: str  # kube-dns's ClusterIP
    domain: str = DOMAIN


def enabled(topo: Topology) -> bool:
    extra = dict(topo.extra)
    return extra.get("kubeProxy") is not False and any(extra.get(k) is not None for k in SECTION_KEYS)


def settings(topo: Topology) -> ClusterServices | None:
    if not enabled(topo):
        return None
    extra = dict(topo.extra)
    v = Validator(topo.source, TopologyError)
    proxy = v.mapping(extra.get("kubeProxy"), "kubeProxy", PROXY_KEYS, "kubeProxy")
    mode = v.choice(proxy.get("mode", DEFAULT_PROXY_MODE), "kubeProxy.mode", PROXY_MODES, "kube-proxy mode")
    services, deployments = from_topology(extra.get("services"), extra.get("deployments"), topo.source, TopologyError,
                                          topo.service_cidr, topo.namespace_names)
    dns_ip = alloc.dns_ip(topo.service_cidr)
    for i, s in enumerate(services):
        if s.cluster_ip == dns_ip:
            v.fail(f"services[{i}].clusterIP", f"{dns_ip} is the cluster DNS (kube-dns) address",
                   "choose another address, or drop clusterIP to have one allocated")
        if s.name == "kube-dns" and s.namespace == "kube-system":
            v.fail(f"services[{i}].name", "kube-dns is the lab's own cluster DNS service", "choose another name")
    return ClusterServices(proxy_mode=mode, services=tuple(services), deployments=tuple(deployments),
                           dns_ip=dns_ip)
