"""Questions about a topology's optional sections that lower layers must answer without their owners.

Whether a lab has an external network decides the nodes' default route (``routing.base.uplink_routes``), which
the routing layer computes below the ``external`` package that builds that network; the rule lives here, once,
and ``external.config`` uses it too.
"""
from __future__ import annotations

from emulator.topology.model import Topology

#: sections whose presence gives a lab an external network by default (NodePorts, SNAT and node-to-ClusterIP
#: traffic all need the nodes' default route)
SERVICE_KEYS = ("services", "deployments", "kubeProxy")


def has_gateway(topo: Topology) -> bool:
    """True if the lab has an external network (and so its nodes a default route via the underlay gateway)."""
    extra = dict(topo.extra)
    value = extra.get("external")
    if value is False:
        return False
    return value is not None or any(extra.get(k) not in (None, False) for k in SERVICE_KEYS)
