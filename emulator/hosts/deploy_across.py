"""Deployments across hosts: the controller of a multi-host lab is their deployment controller and scheduler.

A host's store holds only its own pods, so no host's controller-manager could keep a Deployment's replica count
over the whole lab (on a host it computes no Endpoints and collects no garbage: ``services.controller``,
``whole=False``). The controller owns the Deployments, as it owns the Services (``hosts.services``): they and their
ReplicaSets and statuses live in its own store (``<state root>/multihost/<lab>.d/store``), and ``reconcile`` does
what the one-machine controller-manager's pass does, over every host:

1. ask every host for its pods, their statuses and which of its nodes would take a pod (``objects``);
2. plan every Deployment with the one-machine code (``services.deployments.plan``, pure) over all of them: the
   ReplicaSet ``<deployment>-<pod-template-hash>``, the pods to create (named ``<rs>-<5 chars>``, owned by the
   ReplicaSet, placed on the schedulable node with the fewest pods — over every node of every host, so a
   Deployment spreads over the hosts), the surplus to delete (not Running first, then the most crowded node, then
   the newest), a changed template rolled over (new pods first, the old ones once those run); pods of a gone
   Deployment are garbage; a Failed pod is deleted and replaced;
3. send each host its share in one ``pods`` request, all hosts at once: the host creates each pod with
   ``Lab.apply_pod`` (the code ``podlab apply`` of a Pod runs there; the pod keeps its ``ownerReferences``) and
   deletes with ``Lab.delete_pod``, and answers when the new pods run and the old ones are gone;
4. again from 1 until nothing is left to do (a rollover takes two rounds), then write each Deployment's status
   and ReplicaSets into the controller's store (``READY``/``UP-TO-DATE``/``AVAILABLE`` from the pods seen
   Running on their hosts), and hand the last round's pods to ``services.sync`` for the Endpoints.

It runs at ``up`` (the topology's ``deployments:``), at every ``apply``/``delete``/``scale`` (``hosts.changes``)
and, in the lab's API server, when the mirror sees a pod owned by a ReplicaSet go away or fail (``api_across``),
so a deleted pod comes back under a new name with a new IP. One reconcile at a time per lab: an flock on
``<lab>.d/deployments.lock`` (the CLI and the API server may both reconcile).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import random
from typing import Any, Callable, Iterator

from emulator.errors import LabTimeoutError
from emulator.hosts import records, services, svcsync
from emulator.hosts.fanout import each, raise_first
from emulator.hosts.transport import HostSession
from emulator.services import deployments as depctl
from emulator.services.controller import sync_replicasets
from emulator.state.store import Store
from emulator.topology.hosts_section import Host

Progress = Callable[[str], None]
Key = tuple[str, str]
ROUNDS = 6  # a rollover needs 2; more means pods that keep failing


@contextlib.contextmanager
def locked(lab: str) -> Iterator[None]:
    path = records.records_dir() / f"{lab}.d" / "deployments.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def schedulable(per_host: dict[str, dict], placement: dict[str, str]) -> list[str]:
    """The nodes a pod may go to, in the topology's order: those whose host says they would take one."""
    fit = {n for part in per_host.values() for n, why in (part.get("nodes") or {}).items() if not why}
    return [n for n in placement if n in fit]


def where(per_host: dict[str, dict]) -> dict[Key, str]:
    """(namespace, pod) → the host holding it."""
    return {svcsync.key(p): h for h, part in per_host.items() for p in part.get("pods", [])}


def work(store: Store, per_host: dict[str, dict], placement: dict[str, str],
         rng: random.Random) -> tuple[dict[str, dict[str, list]], list[tuple[dict, depctl.Plan]]]:
    """What every host is to do now (``{host: {"create": [pod], "delete": [[ns, name]]}}``) and each
    Deployment's plan (pure but for reading ``store``)."""
    pods, statuses = svcsync.merge_pods(per_host)
    held = where(per_host)
    todo: dict[str, dict[str, list]] = {}

    def delete(ns: str, name: str) -> None:
        todo.setdefault(held[(ns, name)], {"create": [], "delete": []})["delete"].append([ns, name])
    failed = {svcsync.key(p) for p in pods if depctl.owner(p) and
              (statuses.get(svcsync.key(p)) or {}).get("phase") == "Failed"}
    for ns, name in sorted(failed):
        delete(ns, name)  # replaced below, as the ReplicaSet controller replaces an inactive pod
    pods = [p for p in pods if svcsync.key(p) not in failed]
    nodes = schedulable(per_host, placement)
    counts: dict[str, int] = {}
    for p in pods:
        counts[p["spec"].get("nodeName", "")] = counts.get(p["spec"].get("nodeName", ""), 0) + 1
    deps = sorted(store.list("deployments"), key=svcsync.key)
    plans = []
    for dep in deps:
        ns = dep["metadata"].get("namespace") or "default"
        plan = depctl.plan(dep, pods, statuses, nodes, counts, rng)
        for pod in plan.create:
            node = pod["spec"]["nodeName"]
            if node:  # no node would take it: created once one does (the next reconcile)
                todo.setdefault(placement[node], {"create": [], "delete": []})["create"].append(pod)
        for name in plan.delete:
            delete(ns, name)
        plans.append((dep, plan))
    live = {svcsync.key(d) for d in deps}
    for p in pods:  # the garbage collector: the pods of a ReplicaSet whose Deployment is gone
        rs = depctl.owner(p)
        ns = p["metadata"].get("namespace") or "default"
        if rs and (ns, rs.rsplit("-", 1)[0]) not in live:
            delete(ns, p["metadata"]["name"])
    return todo, plans


def write_status(store: Store, plans: list[tuple[dict, depctl.Plan]]) -> None:
    """Each Deployment's status and ReplicaSets; the ReplicaSets and statuses of Deployments that are gone removed."""
    for dep, plan in plans:
        ns, name = svcsync.key(dep)
        old = {k: v for k, v in (store.get_status("deployments", name, ns) or {}).items() if k != "resourceVersion"}
        if old != plan.status:
            store.put_status("deployments", name, plan.status, ns)
        sync_replicasets(store, dep, plan.replicasets)
    uids = {(svcsync.key(d)[0], d["metadata"].get("uid")) for d, _ in plans}
    for rs in list(store.list("replicasets")):
        refs = [r for r in rs["metadata"].get("ownerReferences") or [] if r.get("kind") == "Deployment"]
        ns = rs["metadata"].get("namespace") or "default"
        if refs and (ns, refs[0].get("uid")) not in uids:
            store.delete("replicasets", rs["metadata"]["name"], ns)
    live = {svcsync.key(d) for d, _ in plans}
    for ns, name in store.keys("deployments", status=True):
        if (ns, name) not in live:
            store.delete("deployments", name, ns, status=True)


def reconcile(lab: str, hosts: list[Host], session: Callable[[Host], HostSession],
              progress: Progress = lambda s: None, rng: random.Random | None = None) -> dict[str, Any]:
    """Make every Deployment's pods what it wants, across the hosts; returns the last round's ``objects`` of
    every host (for ``services.sync``). Raises the first host's error (an unreachable host: nothing decided)."""
    rec = records.load(lab) or {}
    placement: dict[str, str] = rec.get("placement") or {}
    by_name = {h.name: h for h in hosts}
    store = services.store_of(lab)
    rng = rng or random.Random()
    with locked(lab):
        for _ in range(ROUNDS):
            per_host = raise_first(each(hosts, lambda h: session(h).request("objects", lab=lab, timeout=30)))
            todo, plans = work(store, per_host, placement, rng)
            write_status(store, plans)
            if not todo:
                return per_host
            said = raise_first(each([by_name[h] for h in sorted(todo)], lambda h: session(h).request(
                "pods", lab=lab, create=todo[h.name]["create"], delete=todo[h.name]["delete"], timeout=60)))
            made = sum(len(t["create"]) for t in todo.values())
            gone = sum(len(t["delete"]) for t in todo.values())
            progress(f"deployments: {made} pod{'' if made == 1 else 's'} created, {gone} deleted on hosts "
                     + ", ".join(f"{h} ({len(r['lines'])})" for h, r in sorted(said.items())))
    raise LabTimeoutError(f"lab {lab}: the Deployments' pods did not settle in {ROUNDS} rounds (a pod that keeps "
                          "failing?); see `podlab get pods` and the pods' hosts", obj=lab)
