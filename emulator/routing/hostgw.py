"""flannel's host-gw backend: a plain route to each remote node's slice via that node's underlay IP.

No encapsulation and no extra device: packets cross the underlay as ordinary IP with pod addresses, which only
works because every node shares one L2 segment (the lab's underlay bridge) — the lesson host-gw teaches.
"""
from __future__ import annotations

from emulator.netlink.desired import NsState, RouteSpec
from emulator.routing.base import RoutingMode
from emulator.topology import names
from emulator.topology.model import Node, Topology


class HostGw(RoutingMode):
    name = "host-gw"

    def node_state(self, topo: Topology, node: Node) -> NsState:
        routes = tuple(RouteSpec(str(o.pod_cidr), names.NODE_UPLINK, gateway=str(o.ip))
                       for o in topo.nodes if o.name != node.name)
        return NsState(routes=routes, managed_prefixes=(str(topo.pod_cidr),))
