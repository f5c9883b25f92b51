"""The writes NetworkPolicy needs in the lab's store (policies, labels), and waiting until they are live.

(Reading the store as the engine's inputs is ``reader``; ``ClusterReader`` is re-exported here.) The enforcers
report the store versions they applied, which is how a change is known to be live on every node
(``wait_versions``).

Written: a policy is stored as the API server stores it (validated, defaulted, ``uid`` and
``creationTimestamp`` set; an update keeps them and says ``configured``, an identical one ``unchanged``), in its
namespace's directory of the store (``networkpolicies/<namespace>/<name>.json``, as every namespaced kind), so two
namespaces may use one policy name, as they may use one pod name. Pod and namespace labels change in place
(labels are the one mutable part of a pod's metadata; the agent keys pods by ``uid``, so nothing restarts); a
pod is named ``NAMESPACE/POD`` (or ``POD`` in ``default``), and a namespace must exist to be labelled, as
``kubectl label`` needs it.
"""
from __future__ import annotations

import time
import uuid

from emulator.errors import LabTimeoutError, NotFoundError, PodNotFoundError
from emulator.lab.targets import split_ref
from emulator.netpol import parse
from emulator.netpol.model import NetworkPolicy
from emulator.netpol.reader import NAMESPACES, POLICIES, REMOTE, WATCHED, ClusterReader  # noqa: F401
from emulator.state.manifests import now
from emulator.state.store import Store


# -- writes ---------------------------------------------------------------------------------------------------
def put_policy(store: Store, p: NetworkPolicy) -> str:
    """Store ``p`` (created, configured or unchanged, as kubectl says)."""
    old = store.get(POLICIES, p.name, p.namespace)
    if old is not None:
        prev = parse.from_store(old)
        uid, created = old["metadata"].get("uid", ""), old["metadata"].get("creationTimestamp", "")
        if prev == p:
            return "unchanged"
        word = "configured"
    else:
        uid, created, word = str(uuid.uuid4()), now(), "created"
    m = p.manifest()
    m["metadata"].update({"uid": uid, "creationTimestamp": created, "generation": 1 + int(
        (old or {}).get("metadata", {}).get("generation", 0))})
    m["metadata"]["namespace"] = p.namespace
    store.put(POLICIES, p.name, m)
    return word


def delete_policy(store: Store, namespace: str, name: str) -> bool:
    if store.get(POLICIES, name, namespace) is None:
        return False
    store.delete(POLICIES, name, namespace)
    return True


def delete_all_policies(store: Store, namespace: str | None = None) -> int:
    n = 0
    for m in list(store.list(POLICIES, ns=namespace)):
        n += delete_policy(store, m["metadata"].get("namespace", "default"), m["metadata"]["name"])
    return n


def find_policies(store: Store, name: str, namespace: str | None = None) -> list[NetworkPolicy]:
    return [p for p in (parse.from_store(m) for m in store.list(POLICIES, ns=namespace)) if p.name == name]


def _merge(old: dict | None, labels: dict[str, str | None]) -> dict:
    out = dict(old or {})
    for k, v in labels.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def set_pod_labels(store: Store, pod: str, labels: dict[str, str | None], namespace: str | None = None) -> None:
    """Add (or, with None, remove) labels of a pod (``NAMESPACE/POD``, or ``POD`` and ``namespace``) in place, as
    ``kubectl label pod`` does."""
    ns, name = split_ref(pod, namespace)
    m = store.get("pods", name, ns)
    if m is None:
        raise PodNotFoundError(name, "" if ns == "default" else f"namespace {ns}")
    m["metadata"]["labels"] = _merge(m["metadata"].get("labels"), labels)
    store.put("pods", name, m)


def set_namespace_labels(store: Store, namespace: str, labels: dict[str, str | None]) -> None:
    """Add or remove labels of a Namespace object (``kubernetes.io/metadata.name`` stays, as the API server keeps
    it); ``NotFoundError`` if the namespace does not exist."""
    m = store.get(NAMESPACES, namespace)
    if m is None:
        raise NotFoundError("namespace", namespace, known=store.names(NAMESPACES))
    m["metadata"]["labels"] = _merge(m["metadata"].get("labels"), {**labels,
                                                                   "kubernetes.io/metadata.name": namespace})
    store.put(NAMESPACES, namespace, m)


def wait_versions(read_status, nodes: list[str], target: tuple[int, ...], timeout: float, obj: str) -> None:
    """Wait until every node's enforcer status (``read_status(node)``) covers ``target``."""
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending:
        pending = [n for n in pending if not _covers((read_status(n) or {}).get("versions"), target)]
        if not pending:
            return
        if time.monotonic() > deadline:
            st = read_status(pending[0]) or {}
            raise LabTimeoutError(f"the NetworkPolicy enforcer of {pending[0]} has not applied the latest change "
                                f"within {timeout:.0f}s" + (f" (last error: {st['error']})" if st.get("error") else ""),
                                obj=obj)
        time.sleep(0.005)


def _covers(have: list | None, want: tuple[int, ...]) -> bool:
    return bool(have) and len(have) == len(want) and all(a >= b for a, b in zip(have, want))
