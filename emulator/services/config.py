"""Whether a topology has cluster Services, and how: kube-proxy's mode, the Services and Deployments, DNS.

Every lab gets Services (kube-proxy on every node, the controller-manager, cluster DNS), as a real cluster does,
unless its topology says ``kubeProxy: none``; ``kubeProxy: {mode: nftables}`` picks the mode (the default is
``iptables``, as kube-proxy's). A ``services`` or ``deployments`` section beside ``kubeProxy: none`` is an error
(nothing would serve them), as is any other value of ``kubeProxy``. ``settings`` validates all of it at once, before ``up`` creates anything, and
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
from emulator.topology.sections import KUBE_PROXY_NONE, kube_proxy_runs
from emulator.topology.validate import Validator, show

PROXY_KEYS = ("mode",)
PROXY_MODES = ("iptables", "nftables")
DEFAULT_PROXY_MODE = "iptables"
DOMAIN = "cluster.local"


@dataclass(frozen=True)
class ClusterServices:
    proxy_mode: str
    services: tuple[Service, ...]
    deployments: tuple[Deployment, ...]
    dns_ip: str  # kube-dns's ClusterIP
    domain: str = DOMAIN


def enabled(topo: Topology) -> bool:
    """True unless the topology says ``kubeProxy: none`` (``settings`` validates the value)."""
    return kube_proxy_runs(dict(topo.extra))


def check_proxy_value(topo: Topology) -> None:
    """TopologyError unless ``kubeProxy`` is absent, a mapping, or ``none`` with no Services or Deployments."""
    extra = dict(topo.extra)
    value = extra.get("kubeProxy")
    v = Validator(topo.source, TopologyError)
    if value == KUBE_PROXY_NONE:
        for key in ("services", "deployments"):
            if extra.get(key) is not None:
                v.fail(key, f"the topology declares {key}, but 'kubeProxy: none' runs no kube-proxy, service "
                       "controllers or cluster DNS to serve them",
                       f"remove 'kubeProxy: none', or remove the {key} section")
    elif value is not None and not isinstance(value, dict):
        hint = " (write none in lower case)" if isinstance(value, str) and value.lower() == "none" else ""
        v.fail("kubeProxy", f"{show(value)} is not a kube-proxy setting{hint}",
               "write 'kubeProxy: {mode: iptables}' (or nftables), leave it out for the default (iptables), or "
               "write 'kubeProxy: none' to run no kube-proxy, service controllers or cluster DNS")


def settings(topo: Topology) -> ClusterServices | None:
    """The lab's validated cluster Services, or None for ``kubeProxy: none``; TopologyError names the field."""
    check_proxy_value(topo)
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
