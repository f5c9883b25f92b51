"""The routing-mode interface, the registry of modes, and the state every node holds whatever the mode.

A routing mode decides how a node reaches the pod slices of the *other* nodes. It is a pure function of the
topology (``node_state``: the devices, forwarding entries and routes a node must hold) plus optional daemons
(``start``/``stop``, used by modes that learn routes, such as bgp). Modes register by name; the topology's
``routing`` field picks one. The applier, not the mode, touches the kernel.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar

from emulator.errors import PodlabError
from emulator.netlink.desired import AddrSpec, LinkSpec, NsState, RouteSpec
from emulator.topology import names
from emulator.topology.model import Node, Topology

_REGISTRY: dict[str, type["RoutingMode"]] = {}


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

    def node_status(self, lab: object, node: str) -> str:
        """A short live status of the mode on ``node`` for ``get nodes`` (e.g. "2/2 BGP sessions up")."""
        return ""

    def describe_node(self, lab: object, node: str) -> list[str]:
        """Lines for ``describe node``: what the mode installed on ``node`` for the other nodes."""
        return []


def register(cls: type[RoutingMode]) -> type[RoutingMode]:
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> RoutingMode:
    _load_builtin()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise PodlabError(f"routing mode {name!r} is not available; known modes: {', '.join(sorted(_REGISTRY))}",
                          obj=name) from None


def available() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from emulator.routing import hostgw, vxlan  # noqa: F401  (registration side effect)
    try:
        from emulator.routing import bgp  # noqa: F401
    except ImportError:
        pass


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
    from emulator.external.config import has_gateway  # the external network's own rule decides
    if not has_gateway(topo):
        return ()
    return (RouteSpec("0.0.0.0/0", names.NODE_UPLINK, gateway=str(topo.underlay.gateway)),)


def _mac(seed: str) -> str:
    import hashlib
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


def full_node_state(topo: Topology, node: Node) -> NsState:
    return base_node_state(topo, node).merged(get(topo.routing).node_state(topo, node))


Factory = Callable[[], RoutingMode]
