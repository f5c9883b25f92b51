"""The cluster DNS host: a ``<lab>-dns`` namespace on the underlay, like a control-plane node's host network.

::

    <lab>-underlay: lan0 ── dns.lan ══ eth0 <lab>-dns (192.168.56.2/24)

It holds the underlay address the ``kube-dns`` endpoints name. A pod's query to 10.96.0.10 is DNATed by its
node's kube-proxy to this address and leaves the node on ``eth0``; the reply must come back through the same
node (where conntrack un-DNATs it), so this namespace routes each node's pod slice via that node's address
(when the lab masquerades pods to external addresses the reply goes to the node address anyway). Desired state
is pure (``state``); the one applier applies it.
"""
from __future__ import annotations

import os


from emulator.netlink import applier, netns
from emulator.netlink.desired import AddrSpec, LinkSpec, NsState, RouteSpec
from emulator.netlink.rtnl import Rtnl
from emulator.routing.base import underlay_cable
from emulator.topology import names
from emulator.topology.model import Topology

UNDERLAY_PORT = "dns.lan"  # a dot: no node (a DNS label) can ever have this port name


def state(topo: Topology, host: str) -> NsState:
    return NsState(links=(LinkSpec("lo"), LinkSpec("eth0", mtu=topo.underlay.mtu)),
                   addrs=(AddrSpec("eth0", host, topo.underlay.cidr.prefixlen),),
                   routes=tuple(RouteSpec(str(n.pod_cidr), "eth0", gateway=str(n.ip)) for n in topo.nodes),
                   managed_prefixes=(str(topo.pod_cidr),))


def build(topo: Topology, ns: str, host: str) -> None:
    netns.create(ns)
    fd = netns.open_fd(ns)
    try:
        with Rtnl.in_ns(names.underlay_ns(topo.name)) as urt:
            applier.plug(urt, [underlay_cable(topo, UNDERLAY_PORT, ns)])
        with Rtnl.in_ns(fd) as rt:
            applier.apply(rt, state(topo, host), ns_name=ns)
    finally:
        os.close(fd)
