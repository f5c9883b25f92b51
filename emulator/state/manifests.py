"""Kubernetes-shaped objects for the store, made from the topology model (and read back by the agents).

The store holds what ``kubectl get -o json`` would show (apiVersion/kind/metadata/spec), so a student's
knowledge of the real objects transfers, and real manifests can later be applied unchanged.
"""
from __future__ import annotations

import json
import time
import uuid

from emulator.topology import units
from emulator.topology.model import BUILTIN_NAMESPACES, Container, LinkShape, Namespace, Node, Pod, Topology

#: The label the API server puts on every Namespace (immutable, equal to the name): NetworkPolicies select
#: namespaces by it.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def container_manifest(c: Container) -> dict:
    out: dict = {"name": c.name, "image": c.image}
    if c.command:
        out["command"] = list(c.command)
    if c.args:
        out["args"] = list(c.args)
    if c.ports:
        out["ports"] = [{"containerPort": p.container_port, "protocol": p.protocol, **({"name": p.name} if p.name
                                                                                        else {}),
                         **({"hostPort": p.host_port} if p.host_port else {})} for p in c.ports]
    if c.env:
        out["env"] = [{"name": k, "value": v} for k, v in c.env]
    return out


def link_annotations(shape: LinkShape | None) -> dict[str, str]:
    """A pod's ``link:`` as annotations, the way Kubernetes' bandwidth plugin is driven: ``podlab.io/link`` holds
    the whole shape (for the ``podlab-link`` CNI plugin), ``kubernetes.io/ingress-bandwidth``/``egress-bandwidth``
    the rate (a Kubernetes quantity in bit/s), as a real manifest would say it."""
    if shape is None:
        return {}
    out = {"podlab.io/link": json.dumps(units.shape_dict(shape))}
    if shape.rate_bps:
        out["kubernetes.io/ingress-bandwidth"] = out["kubernetes.io/egress-bandwidth"] = str(shape.rate_bps)
    return out


def pod_manifest(p: Pod) -> dict:
    meta: dict = {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels), "uid": str(uuid.uuid4()),
                  "creationTimestamp": now()}
    if p.link:
        meta["annotations"] = link_annotations(p.link)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": meta,
            "spec": {"nodeName": p.node, "containers": [container_manifest(c) for c in p.containers]}}


def unschedulable_status(p: Pod) -> dict:
    """A pod the scheduler could not place: Pending, PodScheduled False with its FailedScheduling message."""
    return unscheduled_status(p.name, p.namespace, "", p.unschedulable)


def unscheduled_status(name: str, ns: str, uid: str, message: str) -> dict:
    """The status of pod ``ns/name`` (``uid``, "" if unknown) the scheduler left unbound with ``message``."""
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    return {"name": name, "namespace": ns, **({"uid": uid} if uid else {}), "phase": "Pending", "nodeName": "",
            "reason": "Unschedulable", "message": message, "conditions": [cond]}


def namespace_manifest(ns: Namespace) -> dict:
    labels = {**dict(ns.labels), NAMESPACE_NAME_LABEL: ns.name}
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns.name, "labels": labels, "uid": str(uuid.uuid4()), "creationTimestamp": now()},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def lab_namespaces(topo: Topology) -> list[Namespace]:
    """The built-in namespaces (default, kube-system, kube-public, kube-node-lease), then the topology's; a
    built-in one the topology declares (to label it) is taken from the topology."""
    declared = {ns.name: ns for ns in topo.namespaces}
    out = [declared.pop(n, Namespace(n)) for n in BUILTIN_NAMESPACES]
    return out + list(declared.values())


def node_manifest(topo: Topology, n: Node) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n.name, "creationTimestamp": now(),
                         "annotations": {"podlab.io/routing": topo.routing, "podlab.io/cni": n.cni,
                                         "podlab.io/runtime": n.runtime}},
            "spec": {"podCIDR": str(n.pod_cidr), "podCIDRs": [str(n.pod_cidr)]},
            "status": {"addresses": [{"type": "InternalIP", "address": str(n.ip)},
                                     {"type": "Hostname", "address": n.name}]}}


def cluster_config(topo: Topology) -> dict:
    """What agents need to know about the cluster (kept in the lab record)."""
    return {"podCIDR": str(topo.pod_cidr), "serviceCIDR": str(topo.service_cidr), "nodeMask": topo.node_mask,
            "routing": topo.routing, "podMTU": topo.pod_mtu, "underlay": str(topo.underlay.cidr),
            "underlayMTU": topo.underlay.mtu}
