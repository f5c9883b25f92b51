"""Routing modes (vxlan, host-gw, bgp): how a node reaches the other nodes' pod slices (see ``routing.modes``)."""
from emulator.routing.modes import MODES, available, full_node_state, get

__all__ = ["MODES", "available", "full_node_state", "get"]
