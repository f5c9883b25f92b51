"""The host's side of NetworkPolicy across hosts (``hosts.netpols`` is the controller's): the ``netpol`` op.

``netpol``: make this host's NetworkPolicies equal to the controller's (``policies``) and its ``remotepods/`` equal
to the other hosts' pods the controller sends (``remote``), writing only what changed (``svcsync.diff``, so idle
enforcers stay asleep), after starting the enforcers of this host's nodes if none runs yet (a lab whose topology
had no ``networkPolicies:``: as ``apply`` of a first policy starts them on one machine); then wait until every
local enforcer has applied the store's state (``component.wait_synced``), so the controller answers once each
policy is live on every node of every host.
"""
from __future__ import annotations

from typing import Any, Callable

Progress = Callable[[str], None]


def op_netpol(req: dict, progress: Progress) -> dict:
    from emulator.hosts import svcsync
    from emulator.lab.api import Lab
    from emulator.netpol import cluster, component
    lab = Lab(req["lab"])
    store = lab.store
    nodes = [n.name for n in lab.nodes]
    started = component.ensure_running(lab.name, nodes, progress)
    written = deleted = 0
    for kind, want in ((cluster.REMOTE, req.get("remote", [])), (cluster.POLICIES, req.get("policies", []))):
        put, gone = svcsync.diff(store.list(kind), want)
        for o in put:
            store.put(kind, o["metadata"]["name"], o)
        for ns, name in gone:
            store.delete(kind, name, ns)
        written, deleted = written + len(put), deleted + len(gone)
    component.wait_synced(lab.paths, store, nodes, timeout=float(req.get("timeout", 20)))
    return {"written": written, "deleted": deleted, "nodes": nodes, "started": started}


OPS: dict[str, Callable[[dict, Progress], Any]] = {"netpol": op_netpol}
