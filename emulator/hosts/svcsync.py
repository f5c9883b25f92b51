"""Services across hosts, the pure part: every Endpoints from the pods of all hosts, and a host's store diff.

The controller of a multi-host lab owns the Services (its own store, ``emulator.hosts.services``). Each host's
store holds only its own pods, so no host's endpoints controller could see a Service's backends on the other
hosts: the controller asks every host for its pods and their statuses (``objects``), merges them and computes
each selector Service's Endpoints with the one-machine code (``services.endpoints.compute``), so an Endpoints
object names pods on every host (each address keeps its ``nodeName``). A Service without a selector keeps the
Endpoints stored with it (``kube-dns``: the DNS host). Then it sends every host the same Services and Endpoints;
the host makes its store equal to them (``diff``: only what changed is written, so kube-proxies that have nothing
to do stay asleep) and its kube-proxies, which watch that store, program every node.
"""
from __future__ import annotations

from typing import Any, Iterable

from emulator.services import endpoints as epctl

Key = tuple[str, str]  # (namespace, name)
#: fields the store stamps on every write: never a reason to rewrite an object
STAMPS = ("resourceVersion", "generation", "creationTimestamp", "managedFields")


def key(obj: dict) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "default", meta["name"]


def merge_pods(per_host: dict[str, dict[str, list[dict]]]) -> tuple[list[dict], dict[Key, dict]]:
    """Every host's pods and statuses (``{host: {"pods": [...], "statuses": [...]}}``) as one list of pods and
    one dict of statuses by (namespace, name), as the endpoints controller of one machine reads them."""
    pods: list[dict] = []
    statuses: dict[Key, dict] = {}
    for host in sorted(per_host):
        part = per_host[host]
        pods += part.get("pods", [])
        for st in part.get("statuses", []):
            if st.get("name"):
                statuses[(st.get("namespace") or "default", st["name"])] = st
    return pods, statuses


def endpoints_for(services: Iterable[dict], stored: Iterable[dict],
                  per_host: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """The Endpoints of every Service: computed from all hosts' pods for a selector Service, the stored one for a
    Service without a selector (written by hand: ``kube-dns``). Endpoints of no Service are dropped."""
    pods, statuses = merge_pods(per_host)
    kept = {key(e): e for e in stored}
    out = []
    for svc in sorted(services, key=key):
        ep = epctl.compute(svc, pods, statuses)
        if ep is None:
            ep = kept.get(key(svc))
            if ep is None:
                continue
        else:
            old = kept.get(key(svc))
            if old is not None and epctl.same(old, ep):
                ep = old  # unchanged: keep its creation time
            elif old is not None:
                ep["metadata"]["creationTimestamp"] = old["metadata"].get("creationTimestamp")
        out.append(ep)
    return out


def _strip(obj: dict) -> dict:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in STAMPS}
    return {**{k: v for k, v in obj.items() if k != "metadata"}, "metadata": meta}


def same(a: dict, b: dict) -> bool:
    """Equal but for what the store stamps on a write."""
    return _strip(a) == _strip(b)


def diff(have: Iterable[dict], want: Iterable[dict]) -> tuple[list[dict], list[Key]]:
    """What makes a store holding ``have`` hold ``want``: (objects to write, keys to delete)."""
    old = {key(o): o for o in have}
    new = {key(o): o for o in want}
    put = [o for k, o in sorted(new.items()) if k not in old or not same(old[k], o)]
    gone = sorted(k for k in old if k not in new)
    return put, gone


def unstamped(obj: dict) -> dict:
    """``obj`` without the store's resourceVersion and generation (each host's store stamps its own)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "generation")}
    return {**obj, "metadata": meta}


def push(services: list[dict], endpoints: list[dict]) -> dict[str, Any]:
    """The body of one host's ``services`` request, the same for every host (each host's store stamps its own
    resource versions)."""
    return {"services": [unstamped(s) for s in services], "endpoints": [unstamped(e) for e in endpoints]}
