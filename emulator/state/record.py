"""The lab's state record (``lab.json``): what the lab owns, who is working on it, and in what state it is.

Written before the first kernel object is created, listing every namespace the lab will make, so that ``down``
and ``cleanup`` remove exactly what the lab owns, even after a crash half-way through ``up`` (pod namespaces are
named ``<lab>-<pod>`` and listed by the store's pod records). ``status`` is ``creating`` → ``ready`` →
``deleting``; ``owner`` is the PID (with start time) of the process in charge while creating or deleting: a
record whose owner is gone while it says creating/deleting is what a crash leaves, and what ``cleanup`` removes.
The processes the lab runs are not listed here but in its process journal (``emulator.proc.journal``), which
each of them writes itself before it runs; ``create`` opens it with the record.
"""
from __future__ import annotations

import hashlib
import os
import time

from emulator.proc import journal
from emulator.proc.lifecycle import alive, start_time
from emulator.state.manifests import cluster_config
from emulator.state.paths import LabPaths, labs_dir
from emulator.state.store import Store, read_json, write_json
from emulator.topology import names
from emulator.topology.model import Topology


def fingerprint(topo: Topology) -> str:
    key = repr((topo.name, topo.routing, topo.pod_cidr, topo.service_cidr, topo.node_mask, topo.underlay,
                topo.nodes, topo.pods, topo.extra) + ((topo.containers,) if topo.containers else ()))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def infra_namespaces(topo: Topology) -> list[str]:
    return [names.underlay_ns(topo.name)] + [names.node_ns(topo.name, n.name) for n in topo.nodes]


def new(topo: Topology, extra_namespaces: list[str] | None = None) -> dict:
    me = os.getpid()
    return {"name": topo.name, "status": "creating", "owner": {"pid": me, "start": start_time(me)},
            "source": os.path.abspath(topo.source) if os.path.exists(topo.source) else topo.source,
            "fingerprint": fingerprint(topo), "routing": topo.routing, "cluster": cluster_config(topo),
            "nodes": [n.name for n in topo.nodes], "underlay": names.underlay_ns(topo.name),
            "namespaces": infra_namespaces(topo) + list(extra_namespaces or []),
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def create(rec: dict) -> None:
    """Write a new lab's record, then open its process journal (before anything exists or runs)."""
    save(rec)
    journal.create(LabPaths(rec["name"]).proc_journal)


def processes(lab: str) -> list[journal.Entry]:
    """Every process the lab's commands started, as its journal names them (alive or not: check with
    ``lifecycle.alive(e.pid, e.start)``)."""
    return journal.entries(LabPaths(lab).proc_journal)


def load(lab: str) -> dict | None:
    return read_json(LabPaths(lab).record)


def save(rec: dict) -> None:
    p = LabPaths(rec["name"])
    p.root.mkdir(parents=True, exist_ok=True)
    write_json(p.record, rec)


def set_status(rec: dict, status: str) -> dict:
    me = os.getpid()
    rec = {**rec, "status": status, "owner": {"pid": me, "start": start_time(me)}}
    save(rec)
    return rec


def owner_alive(rec: dict) -> bool:
    o = rec.get("owner") or {}
    return bool(o.get("pid")) and alive(o["pid"], o.get("start"))


def crashed(rec: dict) -> bool:
    return rec.get("status") in ("creating", "deleting", "failed") and not owner_alive(rec)


def orphan_dirs(min_age: float = 60.0) -> list[str]:
    """Lab state directories without a record and untouched for ``min_age`` seconds (left when something wrote
    into a lab after its removal; a lab being created has its record written first, within milliseconds)."""
    import time
    out = []
    try:
        entries = os.listdir(labs_dir())
    except FileNotFoundError:
        return []
    for d in sorted(entries):
        p = labs_dir() / d
        try:
            if p.is_dir() and not (p / "lab.json").exists() and time.time() - p.stat().st_mtime >= min_age:
                out.append(d)
        except OSError:
            continue  # removed while we looked: not an orphan any more
    return out


def owner_of_namespace(ns: str) -> str | None:
    """The lab that owns namespace ``ns`` (listed in its record, or a pod namespace ``<lab>-<pod>`` of a pod in
    its store), or None; the longest matching lab name wins (labs ``a`` and ``a-b`` may both exist)."""
    for lab in sorted(all_labs(), key=len, reverse=True):
        if not ns.startswith(lab + "-"):
            continue
        rec = load(lab) or {}
        if ns in rec.get("namespaces", []) or Store(LabPaths(lab).store).get("pods", ns[len(lab) + 1:]) is not None:
            return lab
    return None


def all_labs() -> list[str]:
    try:
        return sorted(d for d in os.listdir(labs_dir()) if (labs_dir() / d / "lab.json").exists())
    except FileNotFoundError:
        return []
