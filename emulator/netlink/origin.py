"""One vocabulary for where a route came from, shared by everything that shows routes (``describe node``, trace).

Two names per route. ``proto_name`` is the kernel's protocol field in iproute2's words (``/etc/iproute2/
rt_protos``: ``kernel``, ``boot``, ``static``, ``bird``, ...), as ``ip route`` prints it after ``proto`` (it leaves
out ``boot``, the protocol of a route added without one: ``HIDDEN``). ``origin``
is the answer to the student's question "who put this route here?":

- ``connected``: the kernel, for an address on an interface (protocol ``kernel``);
- ``onlink``: a static route with the onlink flag through a device that has no address in the gateway's
  subnet — flannel's vxlan route (``10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink``);
- ``static``: a static route (protocol ``boot`` or ``static``) — host-gw's route via the peer node, a default
  route, one added by hand;
- ``bird``: learned over BGP by BIRD (protocol ``bird``); other daemons by their protocol name (``bgp``,
  ``ospf``, ``zebra``, ``dhcp``, ...), else ``proto N``.
"""
from __future__ import annotations

RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4
RTPROT_BIRD = 12
PROTO_NAMES = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra", 10: "mrt",
               11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp", 42: "babel",
               186: "bgp", 187: "isis", 188: "ospf", 189: "rip", 192: "eigrp"}
HIDDEN = PROTO_NAMES[RTPROT_BOOT]  # the protocol ``ip route`` does not print


def proto_name(proto: int) -> str:
    return PROTO_NAMES.get(proto, str(proto))


def origin(proto: int, onlink: bool) -> str:
    if proto == RTPROT_KERNEL:
        return "connected"
    if proto in (RTPROT_BOOT, RTPROT_STATIC):
        return "onlink" if onlink else "static"
    return PROTO_NAMES.get(proto, f"proto {proto}")
