"""The routing modes podlab has, by name: the one list (a new mode is one module plus one line here).

Nothing registers itself at import; a mode module that fails to import fails here, loudly, with its own
traceback, instead of making its mode vanish.
"""
from __future__ import annotations

from emulator.errors import PodlabError
from emulator.netlink.desired import NsState
from emulator.routing.base import RoutingMode, base_node_state
from emulator.routing.bgp import Bgp
from emulator.routing.hostgw import HostGw
from emulator.routing.vxlan import Vxlan
from emulator.topology.model import ROUTING_MODES, Node, Topology

MODES: dict[str, type[RoutingMode]] = {"vxlan": Vxlan, "host-gw": HostGw, "bgp": Bgp}
assert tuple(sorted(MODES)) == tuple(sorted(ROUTING_MODES)), "topology.model.ROUTING_MODES and MODES disagree"


def get(name: str) -> RoutingMode:
    try:
        return MODES[name]()
    except KeyError:
        raise PodlabError(f"routing mode {name!r} is not available; known modes: {', '.join(sorted(MODES))}",
                          obj=name) from None


def available() -> list[str]:
    return sorted(MODES)


def full_node_state(topo: Topology, node: Node) -> NsState:
    """Everything ``node`` holds: the base state of every node merged with its routing mode's."""
    return base_node_state(topo, node).merged(get(topo.routing).node_state(topo, node))
