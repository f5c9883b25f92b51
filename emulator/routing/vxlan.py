"""flannel's vxlan backend, reproduced: one ``flannel.1`` device per node and static forwarding state.

Per node: ``flannel.1`` (VXLAN, VNI 1, UDP 8472, local = node IP, dev eth0, MAC learning off, MTU = underlay MTU
- 50) holding the node slice's base address as /32. Per remote node: a permanent neighbour entry (remote slice
base IP → remote VTEP MAC), a permanent FDB entry (remote VTEP MAC → remote node IP) and the route ``<remote
slice> via <remote base IP> dev flannel.1 onlink``. No multicast, no learning: exactly the entries flannel's
daemon writes from the node leases, so ``ip neigh``/``bridge fdb`` show what a student sees on a real cluster.
"""
from __future__ import annotations

from emulator.netlink.desired import AddrSpec, FdbSpec, LinkSpec, NeighSpec, NsState, RouteSpec, VxlanSpec
from emulator.routing.base import RoutingMode, vtep_mac
from emulator.topology import names
from emulator.topology.model import Node, Topology

VNI = 1
PORT = 8472


class Vxlan(RoutingMode):
    name = "vxlan"

    def node_state(self, topo: Topology, node: Node) -> NsState:
        dev = names.VXLAN_DEVICE
        neighs, fdbs, routes = [], [], []
        for other in topo.nodes:
            if other.name == node.name:
                continue
            base, mac = str(other.pod_cidr.network_address), vtep_mac(other)
            neighs.append(NeighSpec(dev, base, mac))
            fdbs.append(FdbSpec(dev, mac, str(other.ip)))
            routes.append(RouteSpec(str(other.pod_cidr), dev, gateway=base, onlink=True))
        link = LinkSpec(dev, kind="vxlan", mtu=topo.pod_mtu, mac=vtep_mac(node),
                        vxlan=VxlanSpec(vni=VNI, local=str(node.ip), dev=names.NODE_UPLINK, port=PORT))
        return NsState(links=(link,), addrs=(AddrSpec(dev, str(node.pod_cidr.network_address), 32),),
                       routes=tuple(routes), neighs=tuple(neighs), fdbs=tuple(fdbs),
                       managed_prefixes=(str(topo.pod_cidr),), managed_devices=(dev,))
