"""The routing-mode interface and the state every node holds whatever the mode.

A routing mode decides how a node reaches the pod slices of the *other* nodes. It is a pure function of the
topology (``node_state``: the devices, forwarding entries and routes a node must hold) plus optional daemons
(``start``, used by modes that learn routes, such as bgp) and an optional wait for them (``wait_ready``). The
modes are listed by name in ``routing.modes`` (the one place that says which exist); the topology's ``routing``
field picks one. The applier, not the mode, touches the kernel.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Callable, ClassVar

from emulator.netlink.desired import AddrSpec, CableSpec, LinkSpec, NsState, RouteSpec
from emulator.topology import names
from emulator.topology.model import Node, Topology
from emulator.topology.sections import has_gateway


class RoutingMode(ABC):
    name: ClassVar[str]

    @abstractmethod
    def node_state(self, topo: Topology, node: Node) -> NsState:
        """Devices, addresses, forwarding entries and routes ``node`` needs to reach the other nodes' slices."""

    def check_available(self) -> None:
        """Raise MissingDependencyError (with the install command) if the machine cannot run this mode."""

    def start(self, topo: Topology, node: Node, state_dir: str) -> list[int]:
        """Start the mode's daemons for ``node`` (inside its namespace), each recorded in the lab's process
        journal by itself before it runs (``LabPaths.proc_journal``); return their PIDs."""
        return []

    def wait_ready(self, topo: Topology, progress: Callable[[str], None]) -> None:
        """Hold ``up`` (after the pods are Running) until the mode's daemons have done their work."""

    def node_report(self, lab: str, node: str) -> dict:
        """Live facts of the mode on ``node`` (data, rendered by the CLI): e.g. BGP sessions and learned routes."""
        return {}


def base_node_state(topo: Topology, node: Node) -> NsState:
    """What every node holds: lo and eth0 up with the node IP, cni0 holding the gateway, forwarding on."""
    ul = topo.underlay
    return NsState(
        links=(LinkSpec("lo"), LinkSpec(names.NODE_UPLINK, mtu=ul.mtu),
               LinkSpec(names.CNI_BRIDGE, kind="bridge", mtu=topo.pod_mtu, mac=cni0_mac(node))),
        addrs=(AddrSpec(names.NODE_UPLINK, str(node.ip), ul.cidr.prefixlen),
               AddrSpec(names.CNI_BRIDGE, str(node.gateway), node.pod_cidr.prefixlen)),
        routes=uplink_routes(topo),
        sysctls=(("net.ipv4.ip_forward", "1"),),
        managed_prefixes=(str(topo.pod_cidr),),
    )


def uplink_routes(topo: Topology) -> tuple[RouteSpec, ...]:
    """The node's default route via the underlay gateway, when the lab has one (see ``emulator.external``)."""
    if not has_gateway(topo):
        return ()
    return (RouteSpec("0.0.0.0/0", names.NODE_UPLINK, gateway=str(topo.underlay.gateway)),)


def underlay_cable(topo: Topology, port: str, ns: str, iface: str = "eth0") -> CableSpec:
    """The cable that joins namespace ``ns`` (its ``iface``) to the underlay LAN, as port ``port`` of lan0: a node
    (port named after the node, ``eth0`` inside), the external router. Applied in the underlay
    namespace by ``applier.plug``."""
    return CableSpec(port, iface, ns, topo.underlay.mtu, master=names.UNDERLAY_BRIDGE)


def _mac(seed: str) -> str:
    b = bytearray(hashlib.sha256(seed.encode()).digest()[:6])
    b[0] = (b[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{x:02x}" for x in b)


def cni0_mac(node: Node) -> str:
    return _mac(f"cni0/{node.name}/{node.pod_cidr}")


def vtep_mac(node: Node) -> str:
    """The node's VXLAN device MAC: stable per node (flannel publishes it as the node's VtepMAC)."""
    return _mac(f"vtep/{node.name}/{node.pod_cidr}/{node.ip}")


def subnet_env(topo: Topology, node: Node) -> str:
    """The contents flannel writes to /run/flannel/subnet.env on each node."""
    return (f"FLANNEL_NETWORK={topo.pod_cidr}\nFLANNEL_SUBNET={node.gateway}/{node.pod_cidr.prefixlen}\n"
            f"FLANNEL_MTU={topo.pod_mtu}\nFLANNEL_IPMASQ=true\n")


