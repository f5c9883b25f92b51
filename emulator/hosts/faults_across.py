"""``fail``/``heal``/``faults`` on a multi-host lab: each fault is made by the host that holds the node(s).

A node's fault (its port on the LAN down) lives in its host's part of the underlay, where the node's port is; so
does a link fault between two nodes of one host (nftables rules on that host's bridge, matching both ports). A
link between nodes of two hosts crosses the stretch (``stretch0``) and has no port pair on either bridge: it is
cut on the host of the pair's first node, at that node's port, matching the other node's MAC both ways (frames
to it, frames from it), so every other pair still talks. ``heal all`` and ``faults`` ask every host and
merge the answers, each fault with its host.
"""
from __future__ import annotations

from typing import Any

from emulator.errors import LabNotFoundError, NotFoundError
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


def hosts_of_nodes(rec: dict, nodes: list[str]) -> list[str]:
    """The host of each of ``nodes``; NotFoundError for a node the lab does not have."""
    where = rec["placement"]
    for n in nodes:
        if n not in where:
            raise NotFoundError("node", n, f"multi-host lab {rec['name']}", known=list(where))
    return [where[n] for n in nodes]


def act(lab: str, verb: str, what: str, nodes: list[str]) -> bool:
    """``fail``/``heal`` ``node`` or ``link`` on the host of the node(s); True if it changed something. A link
    between nodes of two hosts is cut on the host of the pair's first node (in name order), at that node's port,
    by the other node's MAC (which its own host tells)."""
    rec = _record(lab)
    hosts = {d["name"]: records.host_of(d) for d in rec["hosts"]}
    where = hosts_of_nodes(rec, nodes)
    with for_command() as ss:
        if what == "node" or where[0] == where[1]:
            return bool(ss.get(hosts[where[0]]).request("fault", lab=lab, action=f"{verb}_{what}", nodes=nodes,
                                                        timeout=30))
        (local, here), (remote, there) = sorted(zip(nodes, where))
        if verb == "fail":
            mac = ss.get(hosts[there]).request("fault", lab=lab, action="mac", nodes=[remote], timeout=30)
            return bool(ss.get(hosts[here]).request("fault", lab=lab, action="fail_link_across",
                                                    nodes=[local, remote], mac=mac, timeout=30))
        return bool(ss.get(hosts[here]).request("fault", lab=lab, action="heal_link_across", nodes=[local, remote],
                                                timeout=30))


def every_host(lab: str, action: str) -> list[dict[str, Any]]:
    """``list`` or ``heal_all`` on every host; the faults, each with its ``host``."""
    rec = _record(lab)
    hosts = [records.host_of(d) for d in rec["hosts"]]
    with for_command() as ss:
        res = raise_first(each(hosts, lambda h: ss.get(h).request("fault", lab=lab, action=action, timeout=30)))
    return [{**f, "host": h} for h in sorted(res) for f in res[h]]
