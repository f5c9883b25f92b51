"""Writing Services and Deployments into a lab's store, as the API server admits them.

``admit`` checks a Service against the ones already stored (names unique in their namespace, a requested ClusterIP or
NodePort not taken by another service, ClusterIP immutable once given) and fills in what was left out (ClusterIP,
NodePorts; an update keeps the values allocated before). ``put_service``/``put_deployment`` write the manifest
under an flock on the store's kind directory, so two ``apply`` runs cannot allocate the same address, and answer
kubectl's word: created, configured or unchanged.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from typing import Iterator

from emulator.services import alloc
from emulator.services.model import Deployment, Service, service_from_manifest
from emulator.state.store import Store


@contextlib.contextmanager
def locked(store: Store, kind: str) -> Iterator[None]:
    d = store.root / kind
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def admit(svc: Service, stored: list[dict], cidr: ipaddress.IPv4Network) -> Service:
    """``svc`` with its ClusterIP and NodePorts decided, or AllocationError naming the conflict."""
    key = f"{svc.namespace}/{svc.name}"
    prev = None
    others: list[Service] = []
    for m in stored:
        s = service_from_manifest(m)
        if (s.namespace, s.name) == (svc.namespace, svc.name):
            prev = s
        else:
            others.append(s)
    ips = {o.cluster_ip: o for o in others if o.cluster_ip and not o.headless}
    ip = svc.cluster_ip
    if prev is not None and prev.cluster_ip and ip and ip != prev.cluster_ip:
        raise alloc.AllocationError(f"service {key}: clusterIP is immutable ({prev.cluster_ip}); delete the service "
                                    f"to give it {ip}", obj=svc.name)
    if ip is None:
        ip = prev.cluster_ip if prev is not None and prev.cluster_ip else alloc.allocate_ip(key, cidr, list(ips))
    elif ip in ips:
        o = ips[ip]
        raise alloc.AllocationError(f"clusterIP {ip} of service {key} is already the clusterIP of "
                                    f"{o.namespace}/{o.name}", obj=svc.name)
    elif ip in alloc.reserved(cidr) - {alloc.dns_ip(cidr)} - ({alloc.api_ip(cidr)} if key == "default/kubernetes"
                                                               else set()):
        raise alloc.AllocationError(f"clusterIP {ip} of service {key} is reserved", obj=svc.name)
    taken = {p.node_port: o for o in others for p in o.ports if p.node_port}
    node_ports: dict[int, int] = {}
    used_here: set[int] = set()
    for i, p in enumerate(svc.ports):
        if svc.type != "NodePort":
            continue
        if p.node_port:
            if p.node_port in taken:
                o = taken[p.node_port]
                raise alloc.AllocationError(f"nodePort {p.node_port} of service {key} is already used by "
                                            f"{o.namespace}/{o.name}", obj=svc.name)
            used_here.add(p.node_port)
            continue
        old = next((q.node_port for q in (prev.ports if prev else ()) if q.node_port and
                    (q.port, q.protocol, q.name) == (p.port, p.protocol, p.name)), None)
        if old is None or old in taken or old in used_here:
            old = alloc.allocate_node_port(f"{key}:{p.name or p.port}", set(taken) | used_here)
        node_ports[i] = old
        used_here.add(old)
    return svc.allocated(ip, node_ports)


def put_service(store: Store, svc: Service, cidr: ipaddress.IPv4Network) -> tuple[dict, str]:
    """Admit and store ``svc``; return (manifest, "created" | "configured" | "unchanged")."""
    with locked(store, "services"):
        admitted = admit(svc, list(store.list("services")), cidr)
        prev = store.get("services", svc.name, svc.namespace)
        meta = (prev or {}).get("metadata", {})
        manifest = admitted.manifest(uid=meta.get("uid"), created=meta.get("creationTimestamp"))
        return _put_if_changed(store, "services", svc.name, prev, manifest)


def put_deployment(store: Store, dep: Deployment) -> tuple[dict, str]:
    with locked(store, "deployments"):
        prev = store.get("deployments", dep.name, dep.namespace)
        meta = (prev or {}).get("metadata", {})
        manifest = dep.manifest(uid=meta.get("uid"), created=meta.get("creationTimestamp"))
        return _put_if_changed(store, "deployments", dep.name, prev, manifest)


def scale(store: Store, name: str, replicas: int, ns: str = "default") -> dict | None:
    """Set a Deployment's replicas (None if there is no such deployment)."""
    with locked(store, "deployments"):
        m = store.get("deployments", name, ns)
        if m is None:
            return None
        m["spec"]["replicas"] = replicas
        store.put("deployments", name, m)
        return m


def _put_if_changed(store: Store, kind: str, name: str, prev: dict | None, manifest: dict) -> tuple[dict, str]:
    """Store ``manifest`` unless it equals ``prev``; return what is stored and kubectl's word for what happened."""
    server = ("resourceVersion", "generation")
    if prev is not None and prev.get("spec") == manifest["spec"] and \
            {k: v for k, v in prev["metadata"].items() if k not in server} == manifest["metadata"]:
        return prev, "unchanged"
    store.put(kind, name, manifest)
    return manifest, "configured" if prev is not None else "created"
