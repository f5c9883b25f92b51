"""The Deployment controller, pure: which pods to create and which to delete for one Deployment.

A Deployment owns a ReplicaSet per template, ``<deployment>-<template hash>`` (an object in the store, owned by the
Deployment through its ownerReference, as ``kubectl get all`` shows it), and the ReplicaSet owns the pods whose
controller ownerReference names it (the names and the ``pod-template-hash`` label are the real ones, so ``get
pods`` shows ``web-6d8f9c7b54-x2x9k``). ``Plan.replicasets`` are the ReplicaSets the Deployment wants now (the
current one, and old ones while they still have pods), with their status. Pods of the current template are kept at ``replicas``:
missing ones are created on the node with the fewest pods (ties to the first node) — first among the nodes with the
fewest of the Deployment's own pods when its template prefers pod anti-affinity on ``kubernetes.io/hostname``
(as CoreDNS's does), so its replicas spread over the nodes as the scheduler places them — surplus ones deleted
(not-Running first, then those on the most crowded node, then the newest), as a ReplicaSet does. The nodes
offered are the ones the scheduler would consider (``state.nodes.schedulable``: Ready, not cordoned, not a
Docker host); with none, a missing pod is created unbound (no ``nodeName``: Pending, as the scheduler leaves it),
and a later plan binds it (``Plan.bind``) once a node is offered. A pod deleted by
hand is thus replaced under a new name, and the agent gives it a new IP. A changed template rolls over: new pods
first, the old ones deleted once the new ones are Running. Names are random (5 characters from Kubernetes'
alphabet without vowels) but the random source is injected, so tests are reproducible.
"""
from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field

from emulator.state.manifests import now
from emulator.services.model import TEMPLATE_HASH_LABEL

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SafeEncodeString alphabet: no vowels, no look-alikes


@dataclass
class Plan:
    create: list[dict] = field(default_factory=list)  # pod manifests to store
    delete: list[str] = field(default_factory=list)  # pod names to remove
    status: dict = field(default_factory=dict)
    replicasets: list[dict] = field(default_factory=list)  # the ReplicaSet objects wanted (with status)
    bind: list[tuple[str, str]] = field(default_factory=list)  # (unbound pod, the node it is now placed on)


def _encode(n: int, length: int) -> str:
    out = []
    for _ in range(length):
        n, r = divmod(n, len(ALPHABET))
        out.append(ALPHABET[r])
    return "".join(out)


def template_hash(dep: dict) -> str:
    tmpl = json.dumps(dep["spec"].get("template", {}), sort_keys=True, separators=(",", ":"))
    return _encode(int.from_bytes(hashlib.sha256(tmpl.encode()).digest()[:8], "big"), 10)


def replicaset_name(dep: dict) -> str:
    return f"{dep['metadata']['name']}-{template_hash(dep)}"


def owner(pod: dict) -> str | None:
    """The ReplicaSet name a pod's controller reference names (None for a bare pod)."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "ReplicaSet" and ref.get("controller"):
            return ref.get("name")
    return None


def owned_by(dep: dict, pod: dict) -> bool:
    rs = owner(pod)
    return (rs is not None and rs.rsplit("-", 1)[0] == dep["metadata"]["name"]
            and pod["metadata"].get("namespace", "default") == dep["metadata"].get("namespace", "default"))


def replicaset_uid(dep: dict, h: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{dep['metadata'].get('uid')}/{h}"))


def replicaset(dep: dict, name: str, replicas: int, pods: list[dict], running: set[str], template: dict | None,
               revision: int) -> dict:
    """The ReplicaSet object ``name`` of ``dep`` owning ``pods``; ``template`` None for an old one (kept from the
    pods' labels: its template is not stored anywhere else)."""
    h = name[len(dep["metadata"]["name"]) + 1:]
    tmpl = template if template is not None else {"metadata": {"labels": dict(
        (pods[0]["metadata"].get("labels") if pods else {}) or {})}, "spec": {"containers": (
            pods[0]["spec"].get("containers", []) if pods else [])}}
    labels = {**((tmpl.get("metadata") or {}).get("labels") or {}), TEMPLATE_HASH_LABEL: h}
    ready = sum(1 for p in pods if p["metadata"]["name"] in running)
    sel = dict((dep["spec"].get("selector") or {}).get("matchLabels") or {})
    meta = dep["metadata"]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": meta.get("namespace", "default"), "labels": labels,
                         "uid": replicaset_uid(dep, h),
                         "annotations": {"deployment.kubernetes.io/desired-replicas": str(dep["spec"].get("replicas", 1)),
                                         "deployment.kubernetes.io/max-replicas": str(dep["spec"].get("replicas", 1) + 1),
                                         "deployment.kubernetes.io/revision": str(revision)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                              "uid": meta.get("uid", ""), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {**sel, TEMPLATE_HASH_LABEL: h}},
                     "template": {**tmpl, "metadata": {**(tmpl.get("metadata") or {}), "labels": labels}}},
            "status": {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                       "availableReplicas": ready, "observedGeneration": 1}}


def new_pod(dep: dict, node: str, taken: set[str], rng: random.Random) -> dict:
    rs, h = replicaset_name(dep), template_hash(dep)
    while True:
        name = f"{rs}-{_encode(rng.getrandbits(40), 5)}"
        if name not in taken:
            break
    tmpl = dep["spec"].get("template", {})
    labels = {**((tmpl.get("metadata") or {}).get("labels") or {}), TEMPLATE_HASH_LABEL: h}
    rs_uid = replicaset_uid(dep, h)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": dep["metadata"].get("namespace", "default"), "labels": labels,
                         "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "creationTimestamp": now(),
                         "generateName": f"{rs}-",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                              "uid": rs_uid, "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"nodeName": node, "containers": (tmpl.get("spec") or {}).get("containers", []),
                     **{k: v for k, v in (tmpl.get("spec") or {}).items() if k in POD_SPEC_FIELDS}}}


#: the template's pod-spec fields a pod is created with besides its containers (what the agents and listings read)
POD_SPEC_FIELDS = ("dnsPolicy", "priorityClassName", "nodeSelector", "tolerations", "affinity")


def spreads(dep: dict) -> bool:
    """Does the template prefer not to share a node with pods of its own (preferred pod anti-affinity on the
    hostname whose terms select the template's labels)?"""
    tmpl = dep["spec"].get("template") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    terms = ((((tmpl.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {})
             .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
    for t in terms:
        term = t.get("podAffinityTerm") or {}
        sel = term.get("labelSelector") or {}
        if term.get("topologyKey") != "kubernetes.io/hostname":
            continue
        ok = all(labels.get(k) == v for k, v in (sel.get("matchLabels") or {}).items()) and all(
            e.get("operator") == "In" and labels.get(e.get("key")) in (e.get("values") or [])
            for e in sel.get("matchExpressions") or [])
        if ok and (sel.get("matchLabels") or sel.get("matchExpressions")):
            return True
    return False


def _key(pod: dict) -> tuple[str, str]:
    return pod["metadata"].get("namespace") or "default", pod["metadata"]["name"]


def plan(dep: dict, pods: list[dict], statuses: dict[tuple[str, str], dict], nodes: list[str],
         counts: dict[str, int], rng: random.Random) -> Plan:
    """What to do for ``dep`` given every pod in the store (``statuses`` keyed by (namespace, name));
    ``counts`` (pods per node) is updated in place."""
    want = max(int(dep["spec"].get("replicas", 1)), 0)
    rs = replicaset_name(dep)
    mine = [p for p in pods if owned_by(dep, p)]
    current = [p for p in mine if owner(p) == rs]
    old = [p for p in mine if owner(p) != rs]
    running = {p["metadata"]["name"] for p in mine
               if (statuses.get(_key(p)) or {}).get("phase") == "Running"
               and (statuses.get(_key(p)) or {}).get("uid") == p["metadata"].get("uid")}
    out = Plan()
    dep_ns = dep["metadata"].get("namespace") or "default"
    taken = {p["metadata"]["name"] for p in pods if (p["metadata"].get("namespace") or "default") == dep_ns}
    spread = spreads(dep)
    own: dict[str, int] = {}  # the Deployment's pods per node, when they are to spread
    for p in current if spread else ():
        own[p["spec"].get("nodeName", "")] = own.get(p["spec"].get("nodeName", ""), 0) + 1

    def place() -> str:
        if not nodes:
            return ""  # no node the scheduler would take: unbound, Pending
        node = min(nodes, key=lambda n: (own.get(n, 0), counts.get(n, 0), nodes.index(n)))
        if spread:
            own[node] = own.get(node, 0) + 1
        counts[node] = counts.get(node, 0) + 1
        return node
    if nodes and len(current) <= want:
        for p in current:
            if not p["spec"].get("nodeName"):
                out.bind.append((p["metadata"]["name"], place()))
    if len(current) < want:
        for _ in range(want - len(current)):
            pod = new_pod(dep, place(), taken, rng)
            taken.add(pod["metadata"]["name"])
            out.create.append(pod)
    elif len(current) > want:
        per_node: dict[str, int] = {}
        for p in current:
            per_node[p["spec"].get("nodeName", "")] = per_node.get(p["spec"].get("nodeName", ""), 0) + 1
        ranked = sorted(current, key=lambda p: (p["metadata"]["name"] in running,
                                                -per_node[p["spec"].get("nodeName", "")],
                                                _negated(p["metadata"].get("creationTimestamp", ""))))
        for p in ranked[:len(current) - want]:
            out.delete.append(p["metadata"]["name"])
            counts[p["spec"].get("nodeName", "")] = counts.get(p["spec"].get("nodeName", ""), 1) - 1
    current_running = sum(1 for p in current if p["metadata"]["name"] in running)
    if old and (current_running >= want or want == 0):
        out.delete += [p["metadata"]["name"] for p in old]
    kept = [p for p in mine if p["metadata"]["name"] not in out.delete]
    ready = sum(1 for p in kept if p["metadata"]["name"] in running)
    out.status = {"replicas": len(kept) + len(out.create), "updatedReplicas": len(current) + len(out.create)
                  - sum(1 for p in current if p["metadata"]["name"] in out.delete),
                  "readyReplicas": ready, "availableReplicas": ready,
                  "observedGeneration": int(dep["metadata"].get("generation") or 1), "replicaSet": rs}
    gone = set(out.delete)
    now_current = [p for p in current if p["metadata"]["name"] not in gone] + out.create
    olds: dict[str, list[dict]] = {}
    for p in old:
        if p["metadata"]["name"] not in gone:
            olds.setdefault(owner(p) or "", []).append(p)
    revision = len(olds) + 1
    out.replicasets = [replicaset(dep, rs, want, now_current, running, dep["spec"].get("template") or {}, revision)]
    out.replicasets += [replicaset(dep, name, len(pods), pods, running, None, i + 1)
                        for i, (name, pods) in enumerate(sorted(olds.items())) if name]
    return out


def _negated(ts: str) -> tuple[int, ...]:
    """Sort key putting the newest timestamp first."""
    return tuple(-ord(c) for c in ts)
