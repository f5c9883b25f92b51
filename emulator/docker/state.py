"""Desired network state of the Docker model, as pure data for the one applier (``netlink.applier``).

On a Docker node: the ``docker0`` bridge (MTU 1500, MAC derived from the node) holding 172.17.0.1/16, and one
veth cable per container, its host end ``veth<7 hex>`` a port of docker0, its other end ``eth0`` in the
container's namespace. In a container: ``lo`` up, ``eth0`` with the container's address (a /16, as Docker's
default bridge network) and MAC ``02:42:`` + the address in hex (the convention of Docker's bridge driver for
years), and the default route via 172.17.0.1.
"""
from __future__ import annotations

import hashlib

from emulator.netlink.desired import AddrSpec, CableSpec, LinkSpec, NsState, RouteSpec
from emulator.topology import names
from emulator.topology.docker_section import DOCKER_GW, DOCKER_NET
from emulator.topology.model import DockerContainer, Node, Topology

DOCKER_MTU = 1500


def docker0_mac(node: Node) -> str:
    b = bytearray(hashlib.sha256(f"docker0/{node.name}".encode()).digest()[:6])
    b[0] = 0x02
    b[1] = 0x42
    return ":".join(f"{x:02x}" for x in b)


def container_mac(c: DockerContainer) -> str:
    return "02:42:" + ":".join(f"{x:02x}" for x in c.ip.packed)


def node_state(node: Node) -> NsState:
    return NsState(links=(LinkSpec(names.DOCKER_BRIDGE, kind="bridge", mtu=DOCKER_MTU, mac=docker0_mac(node)),),
                   addrs=(AddrSpec(names.DOCKER_BRIDGE, str(DOCKER_GW), DOCKER_NET.prefixlen),),
                   sysctls=(("net.ipv4.ip_forward", "1"),))


def cables(topo: Topology, node: Node) -> list[CableSpec]:
    return [CableSpec(names.docker_veth(c.node, c.name), names.POD_IFNAME,
                      names.container_ns(topo.name, c.node, c.name), DOCKER_MTU, master=names.DOCKER_BRIDGE)
            for c in topo.containers_on(node.name)]


def container_state(c: DockerContainer) -> NsState:
    return NsState(links=(LinkSpec("lo"), LinkSpec(names.POD_IFNAME, mac=container_mac(c), mtu=DOCKER_MTU)),
                   addrs=(AddrSpec(names.POD_IFNAME, str(c.ip), DOCKER_NET.prefixlen),),
                   routes=(RouteSpec("0.0.0.0/0", names.POD_IFNAME, gateway=str(DOCKER_GW)),),
                   managed_prefixes=("0.0.0.0/0",))
