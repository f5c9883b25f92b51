"""Failure injection that works in every routing mode, each fault undoable: a node's uplink, or one node pair.

Both faults live in the lab's underlay namespace — the emulated LAN — so the nodes themselves are untouched:
their agents, pods and routing daemons keep running and see only what a real node would see.

* ``fail node N``: the node's port on the LAN bridge (the veth end named after the node in ``<lab>-underlay``) is
  set down, so the node's ``eth0`` loses carrier, like an unplugged cable. The port's alias records who did it and
  when (``ip link`` in the underlay shows it); ``heal node`` sets the port up and clears the alias.
* ``fail link A B``: traffic between two nodes only is dropped by nftables rules in a table of podlab's own
  (``table bridge podlab_faults``, chain ``forward``) matching the two ports in both directions; every other pair
  still talks. Each rule carries a comment naming the pair and the time, and a counter, so ``podlab faults`` shows
  the drops. ``heal link`` deletes the pair's rules by handle. In a lab across hosts, a link between a node of
  this host and one of another host is cut at the local node's port by the other node's MAC (its frames pass the
  stretch, not a port of this bridge): ``fail_link_across``.

The kernel is the state: ``faults`` reads port flags and the nft table back instead of keeping a file that could
disagree, and teardown needs nothing (both go away with the underlay namespace). Failing what is failed, or healing
what is healthy, changes nothing and says so.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field

from emulator.errors import MissingDependencyError, PodlabError
from emulator.lab.api import Lab, run_in
from emulator.netlink import msgs
from emulator.netlink.observe import Link, Snapshot
from emulator.netlink.rtnl import Rtnl
from emulator.topology import names

TABLE = "podlab_faults"
CHAIN = "forward"
ALIAS_PREFIX = "podlab: failed"


@dataclass(frozen=True)
class Fault:
    kind: str  # "node" | "link"
    nodes: tuple[str, ...]
    since: str = ""
    dropped_packets: int | None = None
    handles: tuple[int, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict:
        out: dict = {"kind": self.kind, "nodes": list(self.nodes), "since": self.since}
        if self.dropped_packets is not None:
            out["droppedPackets"] = self.dropped_packets
        return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _check_node(lab: Lab, node: str) -> None:
    lab.node(node)  # NotFoundError naming the lab's nodes


def _underlay(lab: Lab) -> str:
    return lab.record.get("underlay") or names.underlay_ns(lab.name)


# -- node faults (port down) ---------------------------------------------------------------------------------------

def _ports(lab: Lab) -> dict[str, Link]:
    """The underlay's links by name (a node's port is named after the node)."""
    with Snapshot(ns=_underlay(lab)) as snap:
        return snap.links


def _set_port(lab: Lab, node: str, up: bool, alias: str) -> bool:
    _check_node(lab, node)
    ports = _ports(lab)
    if node not in ports:
        raise PodlabError(f"node {node} has no port on the underlay bridge of lab {lab.name}", obj=node)
    port = ports[node]
    if port.up == up:
        return False
    req = msgs.link_set(port.index, f"underlay port {node}", up=up)
    req.msg["attrs"].append(("IFLA_IFALIAS", alias))
    with Rtnl.in_ns(_underlay(lab)) as rt:
        rt.batch([req])
    return True


def fail_node(lab: Lab, node: str) -> bool:
    """Unplug ``node`` from the LAN; False if it already was."""
    return _set_port(lab, node, up=False, alias=f"{ALIAS_PREFIX} at {_now()}")


def heal_node(lab: Lab, node: str) -> bool:
    """Plug ``node`` back in; False if it was not failed."""
    return _set_port(lab, node, up=True, alias="")


# -- link faults (nftables bridge rules) ---------------------------------------------------------------------------

def _nft(lab: Lab, args: list[str], script: str | None = None) -> str:
    if shutil.which("nft") is None:
        raise MissingDependencyError("link faults need nftables (the `nft` program); install it with "
                                     "`apt-get install nftables`", obj="nft")
    r = run_in(_underlay(lab), ["nft", *args], input=script)
    if r.returncode != 0:
        raise PodlabError(f"nft in {_underlay(lab)} failed: {r.stderr.strip()}", obj=_underlay(lab))
    return r.stdout


def _pair(a: str, b: str) -> tuple[str, str]:
    x, y = sorted((a, b))
    return x, y


def _comment(pair: tuple[str, str], since: str = "") -> str:
    return f"podlab link {pair[0]} {pair[1]}" + (f" since {since}" if since else "")


def link_rules_script(pair: tuple[str, str], since: str) -> str:
    """nft commands that create the table (idempotent) and drop both directions between the two ports."""
    a, b = pair
    c = _comment(pair, since)
    return (f"add table bridge {TABLE}\n"
            f"add chain bridge {TABLE} {CHAIN} {{ type filter hook forward priority -200; policy accept; }}\n"
            f'add rule bridge {TABLE} {CHAIN} iifname "{a}" oifname "{b}" counter drop comment "{c}"\n'
            f'add rule bridge {TABLE} {CHAIN} iifname "{b}" oifname "{a}" counter drop comment "{c}"\n')


def parse_link_rules(nft_json: str) -> list[Fault]:
    """Link faults from ``nft -j -a list table bridge podlab_faults`` (rules grouped by their comment's pair)."""
    found: dict[tuple[str, str], dict] = {}
    for item in json.loads(nft_json or "{}").get("nftables", []):
        rule = item.get("rule")
        if not rule or not str(rule.get("comment", "")).startswith("podlab link "):
            continue
        words = rule["comment"].split()
        pair = _pair(words[2], words[3])
        since = words[5] if len(words) > 5 and words[4] == "since" else ""
        packets = sum(e["counter"].get("packets", 0) for e in rule.get("expr", []) if "counter" in e)
        f = found.setdefault(pair, {"since": since, "packets": 0, "handles": []})
        f["packets"] += packets
        f["handles"].append(rule["handle"])
    return [Fault("link", pair, v["since"], v["packets"], tuple(v["handles"])) for pair, v in sorted(found.items())]


def _link_faults(lab: Lab) -> list[Fault]:
    r = run_in(_underlay(lab), ["nft", "-j", "-a", "list", "table", "bridge", TABLE]) if shutil.which("nft") else None
    if r is None or r.returncode != 0:  # no table yet: no link fault
        return []
    return parse_link_rules(r.stdout)


def fail_link(lab: Lab, a: str, b: str) -> bool:
    """Drop all traffic between nodes ``a`` and ``b`` (both ways); False if it already was."""
    for n in (a, b):
        _check_node(lab, n)
    if a == b:
        raise PodlabError(f"fail link needs two different nodes (got {a} twice)", obj=a)
    pair = _pair(a, b)
    if any(f.nodes == pair for f in _link_faults(lab)):
        return False
    _nft(lab, ["-f", "-"], link_rules_script(pair, _now()))
    return True


def node_mac(lab: Lab, node: str) -> str:
    """The MAC address of ``node``'s uplink (its frames' source on the LAN)."""
    _check_node(lab, node)
    with Snapshot(ns=names.node_ns(lab.name, node)) as snap:
        return snap.links[names.NODE_UPLINK].mac


def remote_rules_script(pair: tuple[str, str], local: str, remote_mac: str, since: str) -> str:
    """nft commands dropping both directions between the local node's port and a node of another host, known by
    its uplink's MAC (it has no port on this bridge: its frames come and go through the stretch)."""
    c = _comment(pair, since)
    return (f"add table bridge {TABLE}\n"
            f"add chain bridge {TABLE} {CHAIN} {{ type filter hook forward priority -200; policy accept; }}\n"
            f'add rule bridge {TABLE} {CHAIN} iifname "{local}" ether daddr {remote_mac} counter drop comment "{c}"\n'
            f'add rule bridge {TABLE} {CHAIN} oifname "{local}" ether saddr {remote_mac} counter drop comment "{c}"\n')


def fail_link_across(lab: Lab, local: str, remote: str, remote_mac: str) -> bool:
    """A lab across hosts: drop all traffic between this host's node ``local`` and ``remote``, a node of another
    host (by its MAC, at ``local``'s port); False if it already was."""
    _check_node(lab, local)
    pair = _pair(local, remote)
    if any(f.nodes == pair for f in _link_faults(lab)):
        return False
    _nft(lab, ["-f", "-"], remote_rules_script(pair, local, remote_mac, _now()))
    return True


def heal_link(lab: Lab, a: str, b: str, remote: bool = False) -> bool:
    """Let traffic between ``a`` and ``b`` pass again; False if the link was not failed. ``remote``: ``b`` is a
    node of another host (``fail_link_across``)."""
    for n in (a,) if remote else (a, b):
        _check_node(lab, n)
    pair = _pair(a, b)
    faults = [f for f in _link_faults(lab) if f.nodes == pair]
    if not faults:
        return False
    script = "".join(f"delete rule bridge {TABLE} {CHAIN} handle {h}\n" for f in faults for h in f.handles)
    _nft(lab, ["-f", "-"], script)
    return True


# -- listing -------------------------------------------------------------------------------------------------------

def list_faults(lab: Lab) -> list[Fault]:
    out = []
    ports = _ports(lab)
    for node in lab.record.get("nodes", []):
        port = ports.get(node)
        if port and not port.up:
            alias = port.alias
            since = alias.rsplit(" at ", 1)[1] if alias.startswith(ALIAS_PREFIX) and " at " in alias else ""
            out.append(Fault("node", (node,), since))
    return out + _link_faults(lab)


def heal_all(lab: Lab) -> list[Fault]:
    """Undo every fault of the lab; return what was healed."""
    faults = list_faults(lab)
    local = set(lab.record.get("nodes", []))
    for f in faults:
        if f.kind == "node":
            heal_node(lab, f.nodes[0])
        else:  # across hosts one end may be another host's node
            a, b = f.nodes if f.nodes[0] in local else f.nodes[::-1]
            heal_link(lab, a, b, remote=b not in local)
    return faults
