"""Questions about a topology's optional sections that lower layers must answer without their owners.

Whether a lab has an external network decides the nodes' default route (``routing.base.uplink_routes``), which
the routing layer computes below the ``external`` package that builds that network; the rule lives here, once,
and ``external.config`` uses it too. Whether kube-proxy runs (every lab, unless ``kubeProxy: none``) decides which
host ports a Docker container may publish (``topology.docker_section``), below ``services`` that runs it.
"""
from __future__ import annotations

from emulator.topology.model import Topology

#: sections whose presence gives a lab an external network by default (NodePorts, SNAT and node-to-ClusterIP
#: traffic all need the nodes' default route); ``kubeProxy: none`` does not. The same rule across hosts: there a lab
#: runs Services only when one of these asks (``services.component.EXPLICIT``), and then has the external network
SERVICE_KEYS = ("services", "deployments", "kubeProxy")
#: the ``kubeProxy`` value that runs no kube-proxy, no service controllers and no cluster DNS
KUBE_PROXY_NONE = "none"


def has_gateway(topo: Topology) -> bool:
    """True if the lab has an external network (and so its nodes a default route via the underlay gateway)."""
    extra = dict(topo.extra)
    value = extra.get("external")
    if value is False:
        return False
    return value is not None or any(extra.get(k) not in (None, False, KUBE_PROXY_NONE) for k in SERVICE_KEYS)

#: kube-proxy's NodePort range (the API server's --service-node-port-range default); ``services.model`` uses it
NODE_PORT_MIN, NODE_PORT_MAX = 30000, 32767


def kube_proxy_runs(extra: dict) -> bool:
    """True if the lab runs kube-proxy on its nodes: every lab does unless its topology says ``kubeProxy: none``
    (the rule ``services.config.enabled`` uses; ``services.config.settings`` validates the value)."""
    return extra.get("kubeProxy") != KUBE_PROXY_NONE
