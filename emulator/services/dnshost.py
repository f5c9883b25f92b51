"""Cluster DNS of a multi-host lab: one DNS host on the underlay instead of the ``coredns`` pods.

On one machine cluster DNS is the ``coredns`` Deployment of kube-system (``coredns``), whose pods the
controller-manager places like any Deployment's. Across hosts every host runs its own controller-manager over
its own store, and Deployments are not yet admitted across hosts, so two coredns pods cannot be placed for the
whole lab. There, as on a control plane that runs DNS on its host network, the host of the lab's first node
runs the same DNS program (``dnsserver``, with the lab's Corefile) in a ``<lab>-dns`` namespace on the underlay
(``dnsnet``: its routes name every node's slice, wherever the node runs), at the first underlay address no node
uses (192.168.56.2 by default). Service ``kube-system/kube-dns`` then has no selector, and its Endpoints, written
here, name that address; the controller pushes them to every host with the other Services
(``emulator.hosts.services``).
"""
from __future__ import annotations

import ipaddress

from emulator.errors import TopologyError
from emulator.proc.daemon import spawn
from emulator.services import coredns, dnsnet, registry
from emulator.services.config import ClusterServices
from emulator.services.endpoints import manifest as endpoints_manifest
from emulator.services.model import Service, ServicePort
from emulator.state.paths import LabPaths
from emulator.state.store import Store
from emulator.topology import hosts_section
from emulator.topology.model import Topology


def dns_ns(lab: str) -> str:
    return f"{lab}-dns"


def address(topo: Topology) -> str:
    """The first underlay address that no node (of any host) and no gateway uses."""
    taken = {n.ip for n in topo.nodes} | {topo.underlay.gateway}
    for ip in topo.underlay.cidr.hosts():
        if ip not in taken:
            return str(ipaddress.IPv4Address(ip))
    raise TopologyError(topo.source, "underlay.cidr", f"{topo.underlay.cidr} has no free address for the cluster DNS",
                        "use a larger underlay range")


def here(topo: Topology) -> bool:
    """Whether this host's part runs the DNS host: the part that holds the lab's first node."""
    return hosts_section.holds_lab_host(topo)


def put_service(store: Store, cfg: ClusterServices, host: str, cidr: ipaddress.IPv4Network) -> None:
    """``kube-dns`` without a selector, its Endpoints naming the DNS host (ports as the coredns pods have)."""
    svc = coredns.service(cfg.dns_ip)
    registry.put_service(store, Service(name=svc.name, namespace=svc.namespace, cluster_ip=svc.cluster_ip,
                                        labels=svc.labels, ports=svc.ports[:2]), cidr)
    store.put("endpoints", svc.name, endpoints_manifest(svc.name, svc.namespace, [{
        "addresses": [{"ip": host, "hostname": "dns"}],
        "ports": [{"name": p.name, "port": p.target_port, "protocol": p.protocol} for p in svc.ports[:2]]}],
        dict(svc.labels)))


def start(whole: Topology, paths: LabPaths) -> None:
    """Build the DNS namespace and start the DNS program in it (recorded in the lab's journal first)."""
    ns = dns_ns(whole.name)
    dnsnet.build(whole, ns, address(whole))
    from emulator.services import dnsserver
    conf = str(coredns.corefile_path(paths))
    spawn(lambda: dnsserver.main(["-conf", conf]), paths.root / "dns" / "coredns.log", ns=ns, title="coredns",
          journal=paths.proc_journal, what="cluster DNS")
