"""Frozen dataclasses describing a validated lab topology.

The loader (``emulator.topology.loader``) turns a YAML file into these objects after checking every rule; the
builder only ever sees this model, never raw YAML. Everything here is immutable and already resolved: every pod
has a node, every node has its pod CIDR and underlay IP, defaults are filled in. Derived addresses (a node's
gateway, the number of pod addresses in a slice) are properties so that they cannot disagree with their source.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

RoutingMode = Literal["vxlan", "host-gw", "bgp"]
ROUTING_MODES: tuple[str, ...] = ("vxlan", "host-gw", "bgp")
CniMode = Literal["builtin", "reference", "none"]
CNI_MODES: tuple[str, ...] = ("builtin", "reference", "none")
Runtime = Literal["kubelet", "docker"]
RUNTIMES: tuple[str, ...] = ("kubelet", "docker")

TOPOLOGY_VERSION = 1
DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_MASK = 24
DEFAULT_UNDERLAY_CIDR = "192.168.56.0/24"
DEFAULT_UNDERLAY_MTU = 1500
#: Node n (counting from 1) gets underlay host address n + NODE_IP_OFFSET (192.168.56.11, .12, ... as in Vagrant
#: labs); host .1 is kept for the underlay gateway.
NODE_IP_OFFSET = 10
VXLAN_OVERHEAD = 50
#: Kubernetes namespaces every lab has, as every cluster has them.
BUILTIN_NAMESPACES: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class Port:
    container_port: int
    protocol: str = "TCP"  # TCP | UDP | SCTP
    name: str | None = None
    host_port: int | None = None  # ``hostPort``: the node's port mapped to this one (CNI portmap)


@dataclass(frozen=True)
class Container:
    name: str
    image: str = "pause"
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LinkShape:
    """Shaping of a pod's or node's link (``link: {rate: 10mbit, delay: 5ms, jitter: 1ms, loss: 1%}``).

    Canonical units: bits per second, microseconds, percent. ``emulator.tools.shaping`` applies it with tc
    (tbf for the rate; netem for delay, jitter and loss, where the kernel has netem).
    """

    rate_bps: int | None = None
    delay_us: int | None = None
    jitter_us: int | None = None
    loss_pct: float | None = None

    @property
    def needs_netem(self) -> bool:
        return self.delay_us is not None or self.jitter_us is not None or self.loss_pct is not None


@dataclass(frozen=True)
class Namespace:
    """A Kubernetes namespace of the lab (``namespaces: [{name: x, labels: {team: a}}]``)."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Pod:
    name: str
    node: str
    containers: tuple[Container, ...]
    labels: tuple[tuple[str, str], ...] = ()
    namespace: str = "default"
    link: LinkShape | None = None
    unschedulable: str = ""  # the scheduler's message when no node fits (``node`` is then ""): stays Pending

    @property
    def host_ports(self) -> tuple[tuple[int, str], ...]:
        """(hostPort, protocol) pairs the pod claims on its node."""
        return tuple((p.host_port, p.protocol) for c in self.containers for p in c.ports if p.host_port)

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class Node:
    name: str
    ip: ipaddress.IPv4Address
    pod_cidr: ipaddress.IPv4Network
    cni: CniMode = "builtin"
    link: LinkShape | None = None
    runtime: Runtime = "kubelet"  # "docker": the node runs the single-host Docker model (``emulator.docker``)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The first address of the node's slice: held by cni0, the pods' default gateway."""
        return self.pod_cidr.network_address + 1

    @property
    def pod_capacity(self) -> int:
        """Pod addresses in the slice: all hosts but the network, broadcast and gateway addresses."""
        return max(self.pod_cidr.num_addresses - 3, 0)


@dataclass(frozen=True)
class Publish:
    """One ``-p [IP:]HOST:CONTAINER[/PROTO]`` of a Docker container (``publish: ["8080:80"]``)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"  # tcp | udp, as Docker writes it
    host_ip: str | None = None  # bind to one address of the node; None: all of them (0.0.0.0)

    @property
    def text(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{self.host_port}->{self.container_port}/{self.protocol}"


@dataclass(frozen=True)
class DockerContainer:
    """A container on a ``runtime: docker`` node: its own namespace, eth0 on the node's docker0.

    ``ip`` is assigned by the loader as Docker's IPAM does on a fresh daemon: 172.17.0.2, .3, ... in the order the
    node's containers are listed, *per node* (every Docker host numbers its own docker0 range from the start)."""

    name: str
    node: str
    ip: ipaddress.IPv4Address
    image: str = "netexec"
    publish: tuple[Publish, ...] = ()
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Underlay:
    cidr: ipaddress.IPv4Network
    mtu: int = DEFAULT_UNDERLAY_MTU

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.cidr.network_address + 1


@dataclass(frozen=True)
class Topology:
    name: str
    source: str  # the file it came from (for messages)
    routing: RoutingMode
    pod_cidr: ipaddress.IPv4Network
    service_cidr: ipaddress.IPv4Network
    node_mask: int
    underlay: Underlay
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...]
    containers: tuple[DockerContainer, ...] = ()
    version: int = TOPOLOGY_VERSION
    extra: tuple[tuple[str, object], ...] = field(default=(), compare=False)
    namespaces: tuple[Namespace, ...] = ()  # declared in the file (the built-in ones are always there)

    @property
    def namespace_names(self) -> tuple[str, ...]:
        """Every Kubernetes namespace of the lab: the built-in ones, then those the file declares."""
        return BUILTIN_NAMESPACES + tuple(n.name for n in self.namespaces if n.name not in BUILTIN_NAMESPACES)

    @property
    def pod_mtu(self) -> int:
        """MTU of pod interfaces and cni0: the underlay's, less the VXLAN overhead in vxlan mode (1450)."""
        return self.underlay.mtu - VXLAN_OVERHEAD if self.routing == "vxlan" else self.underlay.mtu

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def pod(self, name: str, namespace: str = "default") -> Pod:
        for p in self.pods:
            if p.name == name and p.namespace == namespace:
                return p
        raise KeyError(f"{namespace}/{name}")

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        return tuple(p for p in self.pods if p.node == node)

    @property
    def docker_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.runtime == "docker")

    @property
    def kube_nodes(self) -> tuple[Node, ...]:
        """The Kubernetes nodes (a kubelet, kube-proxy): every node but the Docker hosts."""
        return tuple(n for n in self.nodes if n.runtime != "docker")

    def containers_on(self, node: str) -> tuple[DockerContainer, ...]:
        return tuple(c for c in self.containers if c.node == node)
