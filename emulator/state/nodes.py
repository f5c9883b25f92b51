"""A node's readiness as the kubelet reports it, and what the scheduler makes of it: one reading for every reader.

A kubelet posts ``Ready=False`` (reason ``KubeletNotReady``) while its container runtime's network is not ready —
no CNI configuration in ``/etc/cni/net.d`` yet, the state of every new cluster before a network add-on is
installed (podlab's ``cni: none`` node, until ``podlab cni install``) — and the node lifecycle controller then
taints it ``node.kubernetes.io/not-ready:NoSchedule``, so the scheduler places no pod there that does not tolerate
the taint (CoreDNS's pods do not). A Docker host (``podlab.io/runtime: docker``) runs no kubelet: it is no
candidate at all. A cordoned node (``spec.unschedulable``) takes no new pod either.

``network_ready`` reads the node's CNI directory the way the runtime does (any ``*.conflist`` or ``*.conf``), so
the API server's node table, ``podlab get nodes`` and the controller-manager's scheduling agree; the agent's own
liveness stays the API server's and the lab's business (a killed agent is NotReady there).
"""
from __future__ import annotations

import os

from emulator.state.paths import LabPaths

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
#: the kubelet's Ready condition message while the network plugin has no configuration (containerd's wording)
NETWORK_NOT_READY = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                     "message:Network plugin returns error: cni plugin not initialized")


def network_ready(paths: LabPaths, node: str) -> bool:
    """The node's CNI directory holds a configuration (what the runtime looks for before it sets up a pod)."""
    try:
        return any(e.endswith((".conflist", ".conf")) for e in os.listdir(paths.cni_conf_dir(node)))
    except OSError:
        return False


def runtime(node: dict) -> str:
    return (node["metadata"].get("annotations") or {}).get("podlab.io/runtime", "kubelet")


def schedulable(paths: LabPaths, node: dict) -> str:
    """Why the scheduler would not place a pod on ``node`` ("" when it would): "docker", "unschedulable" or
    "not-ready"."""
    if runtime(node) == "docker":
        return "docker"
    if (node.get("spec") or {}).get("unschedulable"):
        return "unschedulable"
    return "" if network_ready(paths, node["metadata"]["name"]) else "not-ready"
