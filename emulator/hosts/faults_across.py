"""``fail``/``heal``/``faults`` on a multi-host lab: each fault is made by the host that holds the node(s).

A node's fault (its port on the LAN down) lives in its host's part of the underlay, where the node's port is; so
does a link fault between two nodes of one host (nftables rules on that host's bridge, matching both ports). A
link between nodes of two hosts crosses the stretch (``stretch0``) and has no port pair on either bridge: it is
refused, naming both hosts (not available across hosts yet). ``heal all`` and ``faults`` ask every host and
merge the answers, each fault with its host.
"""
from __future__ import annotations

from typing import Any

from emulator.errors import LabNotFoundError, NotFoundError, UsageError
from emulator.hosts import records
from emulator.hosts.fanout import each, raise_first
from emulator.hosts.sessions import for_command


def _record(lab: str) -> dict:
    rec = records.load(lab)
    if rec is None:
        raise LabNotFoundError(lab, known=records.all_labs())
    return rec


def node_name(target: str) -> str:
    """``node-1`` or ``node/node-1`` → ``node-1`` (the target grammar's node forms)."""
    return target.split("/", 1)[1] if target.startswith(("node/", "nodes/", "no/")) else target


def host_of_nodes(rec: dict, verb: str, nodes: list[str]) -> str:
    """The host holding every one of ``nodes``; NotFoundError for an unknown node, UsageError across hosts."""
    where = rec["placement"]
    for n in nodes:
        if n not in where:
            raise NotFoundError("node", n, f"multi-host lab {rec['name']}", known=list(where))
    hosts = {where[n] for n in nodes}
    if len(hosts) > 1:
        on = ", ".join(f"{n} on {where[n]}" for n in nodes)
        raise UsageError(f"{verb} link between nodes of different hosts ({on}) is not available across hosts yet: "
                         f"the link crosses the stretch; fix: `{verb} node` one of them, or choose two nodes of one "
                         "host", obj=nodes[0])
    return hosts.pop()


def act(lab: str, verb: str, what: str, nodes: list[str]) -> bool:
    """``fail``/``heal`` ``node`` or ``link`` on the host of the node(s); True if it changed something."""
    rec = _record(lab)
    host = records.host_of(next(d for d in rec["hosts"] if d["name"] == host_of_nodes(rec, verb, nodes)))
    with for_command() as ss:
        return bool(ss.get(host).request("fault", lab=lab, action=f"{verb}_{what}", nodes=nodes, timeout=30))


def every_host(lab: str, action: str) -> list[dict[str, Any]]:
    """``list`` or ``heal_all`` on every host; the faults, each with its ``host``."""
    rec = _record(lab)
    hosts = [records.host_of(d) for d in rec["hosts"]]
    with for_command() as ss:
        res = raise_first(each(hosts, lambda h: ss.get(h).request("fault", lab=lab, action=action, timeout=30)))
    return [{**f, "host": h} for h in sorted(res) for f in res[h]]
