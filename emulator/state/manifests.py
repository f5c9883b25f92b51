"""Kubernetes-shaped objects for the store, made from the topology model (and read back by the agents).

The store holds what ``kubectl get -o json`` would show (apiVersion/kind/metadata/spec), so a student's
knowledge of the real objects transfers, and real manifests can later be applied unchanged.
"""
from __future__ import annotations

import json
import time
import uuid

from emulator.topology import units
from emulator.topology.model import Container, LinkShape, Node, Pod, Topology


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
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": p.unschedulable}
    return {"name": p.name, "phase": "Pending", "nodeName": "", "reason": "Unschedulable",
            "message": p.unschedulable, "conditions": [cond]}


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
