"""The gateway router and the external host: two namespaces joined to the underlay, and their desired state.

::

    <lab>-underlay: lan0 ── gw.lan ══ eth0 <lab>-gw (192.168.56.1/24)  eth1 (203.0.113.1/24) ══ eth0 <lab>-external
                                                                                                 (203.0.113.2/24)

The router forwards between the LAN and the "internet" and does no NAT of its own: pods reach the external host
with their node's address because each node masquerades them (``masq``), exactly as on a cloud VM; the external
host reaches ``nodeIP:nodePort`` through the router. The router has no route to the pod or Service ranges (they
are not routable from outside a cluster), and nothing here has a link out of the lab, so the lab's "internet"
ends at the external host. Desired addresses, routes and sysctls are pure data (``router_state``,
``host_state``) applied by the one applier; the links are made once, in the underlay's batch style.
"""
from __future__ import annotations

import os


from emulator.external.config import ROUTER_NAME, External
from emulator.netlink import applier, msgs, netns
from emulator.netlink.desired import AddrSpec, LinkSpec, NsState, RouteSpec
from emulator.netlink.rtnl import Rtnl
from emulator.routing.base import underlay_cable
from emulator.topology import names
from emulator.topology.model import Topology

UNDERLAY_PORT = "gw.lan"  # a dot: no node (a DNS label) can ever have this port name


def gw_ns(lab: str) -> str:
    return f"{lab}-{ROUTER_NAME}"


external_ns = names.external_ns


def router_state(topo: Topology, ext: External) -> NsState:
    ul = topo.underlay
    return NsState(links=(LinkSpec("lo"), LinkSpec("eth0", mtu=ul.mtu), LinkSpec("eth1", mtu=ul.mtu)),
                   addrs=(AddrSpec("eth0", str(ext.underlay_gateway), ul.cidr.prefixlen),
                          AddrSpec("eth1", str(ext.gateway), ext.cidr.prefixlen)),
                   sysctls=(("net.ipv4.ip_forward", "1"),))


def host_state(topo: Topology, ext: External) -> NsState:
    return NsState(links=(LinkSpec("lo"), LinkSpec("eth0", mtu=topo.underlay.mtu)),
                   addrs=(AddrSpec("eth0", str(ext.host), ext.cidr.prefixlen),),
                   routes=(RouteSpec("0.0.0.0/0", "eth0", gateway=str(ext.gateway)),))


def build(topo: Topology, ext: External) -> None:
    """Create both namespaces and their links, then apply their desired state."""
    lab = topo.name
    gw, host = gw_ns(lab), external_ns(lab)
    netns.create(gw)
    netns.create(host)
    gw_fd, host_fd = netns.open_fd(gw), netns.open_fd(host)
    try:
        with Rtnl.in_ns(names.underlay_ns(lab)) as urt:
            applier.plug(urt, [underlay_cable(topo, UNDERLAY_PORT, gw)])
        with Rtnl.in_ns(gw_fd) as grt:
            grt.batch([msgs.link_add_veth("eth1", "eth0", host_fd, topo.underlay.mtu)])
            applier.apply(grt, router_state(topo, ext), ns_name=gw)
        with Rtnl.in_ns(host_fd) as hrt:
            applier.apply(hrt, host_state(topo, ext), ns_name=host)
    finally:
        os.close(gw_fd)
        os.close(host_fd)
