"""The lab's "internet": whether a topology has one, and its addresses.

A topology gets an external network when it says ``external: {...}`` (or ``external: true``), and by default
whenever it has cluster services (``services``, ``deployments`` or ``kubeProxy``), since NodePorts, pod-to-
external SNAT and node-to-ClusterIP traffic all need the nodes' default route; ``external: false`` turns it
off. Keys: ``cidr`` (default 203.0.113.0/24, TEST-NET-3, a documentation range that is never routed on the
real internet), ``gateway`` (the router's address there, default .1) and ``host`` (the external host, default
.2). The router also holds the underlay gateway address (``.1`` of the underlay, which node addresses never use).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from emulator.errors import TopologyError
from emulator.topology.model import Topology
from emulator.topology.sections import has_gateway  # noqa: F401  (the rule is topology's; used by external)
from emulator.topology.validate import Validator, show

KEYS = ("cidr", "gateway", "host")
DEFAULT_CIDR = "203.0.113.0/24"
ROUTER_NAME = "gw"  # the router's namespace is <lab>-gw


@dataclass(frozen=True)
class External:
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    host: ipaddress.IPv4Address
    underlay_gateway: ipaddress.IPv4Address


def raw(topo: Topology) -> object:
    return dict(topo.extra).get("external")


def settings(topo: Topology) -> External | None:
    """The validated external network of ``topo`` (None if it has none); TopologyError names the field."""
    if not has_gateway(topo):
        return None
    value = raw(topo)
    v = Validator(topo.source, TopologyError)
    data = {} if value in (None, True) else v.mapping(value, "external", KEYS, "external")
    cidr = v.network(data.get("cidr", DEFAULT_CIDR), "external.cidr")
    for field, other in (("cluster.podCIDR", topo.pod_cidr), ("cluster.serviceCIDR", topo.service_cidr),
                         ("underlay.cidr", topo.underlay.cidr)):
        if cidr.overlaps(other):
            v.fail("external.cidr", f"{cidr} overlaps {field} {other}",
                   f"use a range of its own, e.g. {DEFAULT_CIDR} (a documentation range)")
    if cidr.prefixlen > 30:
        v.fail("external.cidr", f"{cidr} has no room for a router and a host", "use at least a /30, e.g. a /24")
    gw = v.address(data.get("gateway", str(cidr.network_address + 1)), "external.gateway")
    host = v.address(data.get("host", str(cidr.network_address + 2)), "external.host")
    for field, ip in (("external.gateway", gw), ("external.host", host)):
        if ip not in cidr or ip in (cidr.network_address, cidr.broadcast_address):
            v.fail(field, f"{ip} is not a host address of external.cidr {cidr}", f"give an address inside {cidr}")
    if gw == host:
        v.fail("external.host", f"{show(str(host))} is also the gateway address", "give the host its own address")
    for kind, items in (("nodes", topo.nodes), ("pods", topo.pods)):
        for i, obj in enumerate(items):
            if obj.name == ROUTER_NAME:
                v.fail(f"{kind}[{i}].name", f"name '{ROUTER_NAME}' is taken by the lab's gateway router (namespace "
                       f"<lab>-{ROUTER_NAME})", f"rename it, e.g. {ROUTER_NAME}-1")
    ul_gw = topo.underlay.gateway
    clash = next((n for n in topo.nodes if n.ip == ul_gw), None)
    if clash is not None:
        v.fail(f"nodes[{topo.nodes.index(clash)}].ip", f"{ul_gw} is the underlay gateway (the router to the "
               "external network)", "give the node another address, or set 'external: false'")
    return External(cidr=cidr, gateway=gw, host=host, underlay_gateway=ul_gw)
