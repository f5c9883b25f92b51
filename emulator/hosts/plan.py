"""Splitting a multi-host lab into one plan per host, and the pairs that prove the stretch: pure code.

A plan is everything one host needs to build its part with its own loader and builder: the topology file's text
(and the inventory's, if the hosts came from ``--hosts``), the overrides, the host's nodes, the underlay MTU chosen
for all hosts, and the tunnel (this host's address and interface, the peers' addresses, port, VNI). The proof
pairs: for every ordered pair of hosts, a DF ping at full underlay size (MTU - 28 bytes of IP and ICMP headers)
from the first node of one to the first node of the other, across the tunnel, before the controller says "up".
"""
from __future__ import annotations

from typing import Any

from emulator.topology.hosts_section import HostSet, vni
from emulator.topology.model import Topology

ICMP_IP_HEADERS = 28


def host_plans(topo: Topology, hs: HostSet, *, text: str, inventory: str | None, name: str | None,
               routing: str | None, mtu: int, nics: dict[str, str], timeout: float | None = None,
               controller: str | None = None) -> dict[str, dict[str, Any]]:
    plans = {}
    for h in hs.hosts:
        plans[h.name] = {
            "host": h.name, "controller": controller, "topology": text, "inventory": inventory,
            "source": topo.source, "name": name, "routing": routing, "mtu": mtu, "timeout": timeout,
            "nodes": list(hs.nodes_on(h.name)),
            "stretch": {"address": str(h.address), "nic": nics[h.name], "port": hs.tunnel_port,
                        "vni": vni(topo.name), "peers": [str(p.address) for p in hs.hosts if p.name != h.name]}}
    return plans


def ping_pairs(topo: Topology, hs: HostSet, mtu: int) -> dict[str, list[dict[str, Any]]]:
    """{host: [{from: node on it, to: IP of a node on another host, size}]} for every ordered host pair."""
    first = {h.name: hs.nodes_on(h.name)[0] for h in hs.hosts if hs.nodes_on(h.name)}
    out: dict[str, list[dict[str, Any]]] = {h: [] for h in first}
    for a, na in first.items():
        for b, nb in first.items():
            if a != b:
                out[a].append({"from": na, "to": str(topo.node(nb).ip), "size": mtu - ICMP_IP_HEADERS,
                               "toHost": b, "toNode": nb})
    return out
