"""The external network as a lab component: made after the nodes, before the agents; removed by the record.

``namespaces`` declares ``<lab>-gw`` and ``<lab>-external`` so they are in the lab record before they exist
(``down`` and ``cleanup`` then remove them even after a crash); ``start`` builds both and installs flannel's
masquerade rules on every node, and runs an echo server on the external host (podlab's netexec on TCP 80 and
UDP 8081, answering ``/clientip`` with the source address it sees: the proof of pod-to-external SNAT). The
nodes' default route via the router comes from the routing layer's desired
state (``routing.base.uplink_routes``), which asks ``config.has_gateway``, the same rule as ``wanted`` here.

A host's part of a multi-host lab: the underlay is one LAN stretched across the hosts, so the router and the
external host exist once, as the cluster DNS host does (``services.dnshost``): on the host of the lab's first
node (``hosts_section.holds_lab_host``), plugged into that host's part of the LAN, with the echo server. Every
host gives its own nodes the same default route (the routing layer, from the whole topology) and the same
masquerade rules, so a pod on any host reaches the external host from its node's address, and the external
host has no route to a pod, exactly as on one machine.
"""
from __future__ import annotations

import os

from emulator.external import config, masq, network
from emulator.lab.components import BuildContext, Component
from emulator.proc.daemon import spawn
from emulator.topology import hosts_section, names
from emulator.topology.model import Topology


def builds_here(topo: Topology) -> bool:
    """Whether this machine builds the router and the external host: always on one machine; across hosts only
    the part holding the lab's first node."""
    return hosts_section.of(topo) is None or hosts_section.holds_lab_host(topo)


class ExternalComponent(Component):
    name = "external"
    order = 40

    def wanted(self, topo: Topology) -> bool:
        return config.settings(topo) is not None  # validates the section (TopologyError before anything is made)

    def namespaces(self, topo: Topology) -> list[str]:
        return [network.gw_ns(topo.name), network.external_ns(topo.name)] if builds_here(topo) else []

    def start(self, ctx: BuildContext) -> None:
        ext = config.settings(ctx.whole)
        assert ext is not None
        here = builds_here(ctx.topo)
        if here:
            network.build(ctx.whole, ext)
        for node in ctx.topo.nodes:
            masq.apply(ctx.whole, node, names.node_ns(ctx.topo.name, node.name))
        if here:
            spawn(_echo_server, ctx.paths.root / "external" / "netexec.log", ns=network.external_ns(ctx.topo.name),
                  title="netexec", journal=ctx.paths.proc_journal, what="external echo server")
            ctx.progress(f"external network {ext.cidr}: host {ext.host} (echo server on :{ECHO_HTTP_PORT}) behind "
                         f"router {ext.underlay_gateway}; pods masqueraded to their node's address")
        else:
            ctx.progress(f"external network {ext.cidr} on another host (router {ext.underlay_gateway} on the "
                         f"stretched underlay); pods of {len(ctx.topo.nodes)} nodes here masqueraded to their "
                         "node's address")


ECHO_HTTP_PORT, ECHO_UDP_PORT = 80, 8081


def _echo_server() -> None:
    from emulator.images import netexec
    os.environ["POD_NAME"] = "external"
    netexec.main([f"--http-port={ECHO_HTTP_PORT}", f"--udp-port={ECHO_UDP_PORT}"])
