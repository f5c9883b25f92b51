"""Kubernetes namespaces in the store: creating one, and deleting one with everything it holds.

A Namespace is a cluster-scoped object (``store/namespaces/<name>.json``) carrying the label
``kubernetes.io/metadata.name: <name>``, which the API server sets on every namespace and NetworkPolicies select
by. Deleting a namespace works as the real namespace controller does: the namespace is marked ``Terminating``
first (so no controller creates anything in it any more and an ``apply`` into it is refused), then every object
it holds is deleted — Deployments and ReplicaSets before their pods, so nothing recreates them — and the
Namespace object itself goes once the node agents have stopped its pods (their statuses are gone). ``purge`` is
one idempotent pass of that; the caller repeats it until it reports nothing left (``Lab.delete_namespace``).
"""
from __future__ import annotations

from emulator.state import events
from emulator.state.manifests import namespace_manifest, now
from emulator.state.store import Store
from emulator.topology.model import Namespace

#: Deleted first: owners before what they own, so no controller recreates what is being removed.
PURGE_ORDER = ("deployments", "replicasets", "services", "endpoints", "networkpolicies", "pods")


def manifest(name: str, labels: dict[str, str] | None = None) -> dict:
    return namespace_manifest(Namespace(name, tuple((labels or {}).items())))


def get(store: Store, name: str) -> dict | None:
    return store.get("namespaces", name)


def active(store: Store, name: str) -> bool:
    """The namespace exists and is not being deleted (objects may be created in it)."""
    ns = get(store, name)
    return ns is not None and (ns.get("status") or {}).get("phase", "Active") == "Active"


def mark_terminating(store: Store, name: str) -> dict | None:
    ns = get(store, name)
    if ns is None:
        return None
    if (ns.get("status") or {}).get("phase") != "Terminating":
        ns["metadata"]["deletionTimestamp"] = now()
        ns["status"] = {"phase": "Terminating"}
        store.put("namespaces", name, ns)
    return ns


def purge(store: Store, name: str) -> int:
    """Delete every object of namespace ``name`` (one pass); return how many pods still have a status there
    (their agents have not stopped them yet). The Namespace object is removed once that is 0."""
    for kind in PURGE_ORDER:
        for _, obj_name in store.keys(kind, ns=name):
            store.delete(kind, obj_name, name)
    for _, obj_name in store.keys("deployments", status=True, ns=name):
        store.delete("deployments", obj_name, name, status=True)
    left = len(store.keys("pods", status=True, ns=name))
    if left == 0:
        events.drop_namespace(store.root, name)
        store.drop_namespace(name)
        store.delete("namespaces", name)
    return left
