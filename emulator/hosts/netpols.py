"""NetworkPolicy across hosts, the controller's side: the controller owns the policies and tells every host about
the pods of the others.

Design (docs/multihost.md, "NetworkPolicy across hosts"). On one machine every node's enforcer
(``netpol.enforcer``) reads the lab's store — policies, pods with their IPs, namespaces — and keeps its nftables
table equal to what they mean. A host's store holds only its own pods, so a rule admitting ``app=client`` could
not put a client on another host into its peer set. The controller therefore:

- **owns the policies**, in its store (``<state root>/multihost/<lab>.d/store``, the one that holds the Services,
  ``hosts.services``): the topology's ``networkPolicies:`` at ``up``, ``apply``/``delete`` of a NetworkPolicy
  (``podlab`` or kubectl through the controller's API server) after it;
- **asks every host for its pods** and their statuses (``objects``, the round the Services' Endpoints use too:
  one round feeds both, ``converge.after_change``) and sends each host the policies plus the *other* hosts' pods that have an IP,
  each trimmed to what a policy can match on (namespace, name, labels, node, named container ports, the IP:
  ``remote``). The host (``serve_netpol``) writes what changed into its store — the policies into
  ``networkpolicies/`` as on one machine, the remote pods into ``remotepods/``, which the enforcers' reader
  takes as pods like its own — and answers once every enforcer there has applied it.

So the enforcers are the one-machine code, unchanged but for reading ``remotepods/`` too: a node only ever
selects its own pods (the remote pods' ``nodeName`` is another host's node), and every host's peer sets hold the
pods of all hosts. Namespace labels need no push: every Namespace, with its labels, is created on every host.

When: at ``up`` (after every host's pods run), then after every change the controller makes (``apply`` or
``delete`` of a pod, a Service or a policy), and on ``podlab host sync``. Not a watch: a pod that changes by itself
on a host (its agent restarts it with a new IP) reaches the other hosts at the next push, as for the Endpoints.
A lab without a ``networkPolicies:`` section gets its enforcers on every host with its first policy (the host
starts them, as ``apply`` does on one machine); from then on the record's ``netpol`` says to push.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from emulator.hosts import records, services, svcsync
from emulator.hosts.fanout import each, raise_first
from emulator.hosts.transport import HostSession
from emulator.netpol import cluster
from emulator.netpol.model import NetworkPolicy
from emulator.topology.hosts_section import Host

Progress = Callable[[str], None]
Session = Callable[[Host], HostSession]


def trim(pod: dict, status: dict | None) -> dict | None:
    """A pod as the other hosts' enforcers need it (``remotepods/``), or None: no IP yet, or hostNetwork (its node's
    address, which no selector matches)."""
    ip = (status or {}).get("podIP")
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    if not ip or spec.get("hostNetwork") or (status or {}).get("uid") not in (None, meta.get("uid")):
        return None
    containers = [{"name": c.get("name", ""), "ports": [p for p in c.get("ports", []) if p.get("name")]}
                  for c in spec.get("containers", []) if any(p.get("name") for p in c.get("ports", []))]
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "labels", "uid") if meta.get(k) is not None},
            "spec": {"nodeName": spec.get("nodeName", ""), "containers": containers},
            "status": {"podIP": ip}}


def remote(per_host: dict[str, dict[str, list[dict]]]) -> dict[str, list[dict]]:
    """{host: the pods of every *other* host, trimmed}, from every host's ``objects`` answer."""
    mine: dict[str, list[dict]] = {}
    for host, part in per_host.items():
        statuses = {(s.get("namespace") or "default", s.get("name", "")): s for s in part.get("statuses", [])}
        out = []
        for p in part.get("pods", []):
            t = trim(p, statuses.get(svcsync.key(p)))
            if t is not None:
                out.append(t)
        mine[host] = sorted(out, key=svcsync.key)
    return {h: [p for other, pods in sorted(mine.items()) if other != h for p in pods] for h in per_host}


def policies(lab: str) -> list[dict]:
    """The controller's policies, as every host gets them (without the controller store's stamps)."""
    return [svcsync.unstamped(p) for p in sorted(services.store_of(lab).list(cluster.POLICIES), key=svcsync.key)]


def store_policies(lab: str, pols: Iterable[NetworkPolicy]) -> list[str]:
    """Put policies into the controller's store; kubectl's word for each (created, configured, unchanged)."""
    store = services.store_of(lab)
    return [cluster.put_policy(store, p) for p in pols]


def enable(lab: str) -> None:
    """Mark the lab as one whose policies are pushed (its first policy; ``up`` of a ``networkPolicies:`` section)."""
    rec = records.load(lab)
    if rec is not None and not rec.get("netpol"):
        rec["netpol"] = True
        records.save(rec)


def objects(lab: str, hosts: list[Host], session: Session) -> dict[str, dict[str, list[dict]]]:
    """Every host's pods and their statuses (one round; raises the first host's error)."""
    return raise_first(each(hosts, lambda h: session(h).request("objects", lab=lab, timeout=30)))  # type: ignore


def sync(lab: str, hosts: list[Host], session: Session, progress: Progress = lambda s: None,
         per_host: dict[str, dict[str, list[dict]]] | None = None) -> dict[str, Any]:
    """The policies and each host's remote pods to every host, at once; waits until each host's enforcers have
    applied them."""
    if per_host is None:
        per_host = objects(lab, hosts, session)
    pols = policies(lab)
    others = remote(per_host)
    res = raise_first(each(hosts, lambda h: session(h).request("netpol", lab=lab, policies=pols,
                                                              remote=others.get(h.name, []), timeout=60)))
    nodes = sum(len(r["nodes"]) for r in res.values())
    pods = sum(len(part.get("pods", [])) for part in per_host.values())
    progress(f"networkpolicy: {len(pols)} polic{'y' if len(pols) == 1 else 'ies'} and the {pods} pods of "
             f"{len(hosts)} hosts pushed to every host; kube-network-policies synced on {nodes} nodes")
    return {"policies": len(pols), "nodes": nodes}
