"""Routing modes (vxlan, host-gw, bgp): how a node reaches the other nodes' pod slices."""
from emulator.routing.base import available, full_node_state, get

__all__ = ["available", "full_node_state", "get"]
