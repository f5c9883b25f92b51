"""Services across hosts, the controller's side: the lab's Services live here, every host gets them pushed.

Design (docs/multihost.md, "Services across hosts"): a host's store holds only its own pods, so no host could
compute a Service's Endpoints alone. The controller keeps the lab's Services in a store of its own
(``<state root>/multihost/<lab>.d/store``, removed with the controller's record by ``records.remove``): at
``up`` the topology's Services are admitted there (ClusterIPs and NodePorts allocated once, for the whole lab)
beside ``kube-dns``; ``apply``/``delete`` of a Service change them there. ``sync`` then asks every host for its
pods and their statuses, computes every Endpoints from all of them (``svcsync``), and sends every host the same Services and
Endpoints in parallel; each host writes what changed into its own store, which its kube-proxies watch, and
answers once every kube-proxy there has applied it. One round per change (``up``, each ``apply``/``delete``),
not a watch: a pod that changes on a host by itself (its agent restarts it with a new IP after a ``fail``) is in
the Endpoints after the next change the controller makes, or ``podlab apply`` of anything.

The cluster DNS runs on one host, the one holding the lab's first node (``services.dnshost.here``): the
underlay is one LAN across the hosts, so every pod's queries to 10.96.0.10 reach it at its one address, and it
answers from that host's store, which holds every Service as pushed. The topology's Deployments are admitted
here too; the controller is their deployment controller (``deploy_across``), whose last look at every host's
pods ``sync`` then takes instead of asking again.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from emulator.hosts import records, svcsync
from emulator.hosts.fanout import each, raise_first
from emulator.hosts.transport import HostSession
from emulator.services import config, registry
from emulator.services import dnshost
from emulator.state import manifests
from emulator.state.store import Store
from emulator.topology.hosts_section import Host
from emulator.topology.model import Topology

Progress = Callable[[str], None]


def store_dir(lab: str) -> Path:
    return records.records_dir() / f"{lab}.d" / "store"


def store_of(lab: str) -> Store:
    return Store(store_dir(lab))


def init_store(topo: Topology) -> Store:
    """The controller's store of a new multi-host lab, with its namespaces (every lab has one: it holds the
    Services and Deployments if the lab has them, and the NetworkPolicies, ``hosts.netpols``)."""
    shutil.rmtree(store_dir(topo.name), ignore_errors=True)  # a store left by a crash is not this lab's
    store = store_of(topo.name)
    store.init()
    store.put_many("namespaces", [(ns.name, manifests.namespace_manifest(ns))
                                  for ns in manifests.lab_namespaces(topo)])
    return store


def init(topo: Topology) -> Store:
    """The controller's store of a new multi-host lab with Services: its namespaces, kube-dns and the topology's
    Services."""
    cfg = config.settings(topo)
    assert cfg is not None
    store = init_store(topo)
    dnshost.put_service(store, cfg, dnshost.address(topo), topo.service_cidr)
    for s in cfg.services:
        registry.put_service(store, s, topo.service_cidr)
    for d in cfg.deployments:
        registry.put_deployment(store, d)
    return store


def sync(lab: str, hosts: list[Host], session: Callable[[Host], HostSession],
         progress: Progress = lambda s: None, per_host: dict[str, Any] | None = None) -> dict[str, Any]:
    """Endpoints from every host's pods (``per_host``: their ``objects`` answers, if asked already), then the
    Services and Endpoints to every host; waits until each host's kube-proxies applied them. Raises the first
    host's error (an unreachable host: its pods are unknown)."""
    if per_host is None:
        per_host = raise_first(each(hosts, lambda h: session(h).request("objects", lab=lab, timeout=30)))
    store = store_of(lab)
    services = list(store.list("services"))
    eps = svcsync.endpoints_for(services, store.list("endpoints"), per_host)  # type: ignore[arg-type]
    put, gone = svcsync.diff(store.list("endpoints"), eps)
    for o in put:
        store.put("endpoints", o["metadata"]["name"], o)
    for ns, name in gone:
        store.delete("endpoints", name, ns)
    body = svcsync.push(services, list(store.list("endpoints")))
    res = raise_first(each(hosts, lambda h: session(h).request("services", lab=lab, **body, timeout=60)))
    nodes = sum(len(r["nodes"]) for r in res.values())
    progress(f"services: {len(services)} Service{'' if len(services) == 1 else 's'}, their Endpoints from the pods of {len(hosts)} hosts, pushed to "
             f"every host; kube-proxy synced on {nodes} nodes")
    return {"services": len(services), "endpoints": len(eps), "nodes": nodes}
