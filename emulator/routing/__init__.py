"""Routing modes (vxlan, host-gw, bgp): how a node reaches the other nodes' pod slices (see ``routing.modes``).

The package's names are loaded on first use (PEP 562), so that importing one light module of it
(``routing.birdfiles``) does not import every mode and the netlink stack with them.
"""
from __future__ import annotations

from typing import Any

__all__ = ["MODES", "available", "full_node_state", "get"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from emulator.routing import modes
        return getattr(modes, name)
    raise AttributeError(f"module 'emulator.routing' has no attribute {name!r}")
