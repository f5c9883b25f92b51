"""``get containers``: the Docker containers of a lab's ``runtime: docker`` nodes, kubectl-shaped.

Columns ``NAME NODE IMAGE STATUS IP PORTS`` (``-o wide`` adds ``NODE-IP`` and ``NETNS``); PORTS as ``docker ps``
prints them (``0.0.0.0:8080->80/tcp``). A name is ``NAME`` (when one node has it) or ``NODE/NAME``, the same as
the target grammar's ``container/NODE/NAME`` that exec, capture and trace take. ``-o json`` prints the store's
``Container`` objects (one, or a ``List``).
"""
from __future__ import annotations

from typing import Any

from emulator.cli import output
from emulator.lab import targets
from emulator.lab.api import Lab

ALIASES = ("containers", "container")


def container_items(lab: Lab, wanted: list[str]) -> list[dict]:
    objs = [o for o in (lab.store.get(targets.CONTAINERS, k) for k in sorted(lab.store.names(targets.CONTAINERS)))
            if o]
    if not wanted:
        return objs
    keys = [targets.container_key(lab, n) for n in wanted]
    by_key = {f"{o['metadata']['node']}.{o['metadata']['name']}": o for o in objs}
    return [by_key[k] for k in keys]


def _ports(st: dict) -> str:
    return ", ".join(f"{p['hostIp']}:{p['hostPort']}->{p['containerPort']}/{p['protocol']}"
                     for p in st.get("ports", []))


def container_table(lab: Lab, objs: list[dict], wide: bool) -> tuple[list[str], list[list[Any]]]:
    headers = ["NAME", "NODE", "IMAGE", "STATUS", "IP", "PORTS"] + (["NODE-IP", "NETNS"] if wide else [])
    rows = []
    for o in objs:
        st, meta = o["status"], o["metadata"]
        row = [meta["name"], meta["node"], o["spec"]["image"],
               f"Up {output.age(meta.get('creationTimestamp'))}" if st.get("state") == "running" else st.get("state"),
               st.get("ipAddress"), _ports(st)]
        if wide:
            row += [st.get("nodeIP"), st.get("namespace")]
        rows.append(row)
    return headers, rows
