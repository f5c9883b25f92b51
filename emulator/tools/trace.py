"""``trace``: the path a packet takes through a lab, hop by hop, read from the kernel state of each namespace.

The walker follows one packet the way the kernel would, namespace by namespace, and at each step asks the
kernel rather than the topology: ``route_get`` (the kernel's own route decision, ``ip route get``), the matching
``ip route`` line with its origin, neighbour entries (``ip neigh``: next hop → MAC), bridge FDBs (``bridge fdb``:
MAC → port), VXLAN devices and their FDB (VTEP MAC → remote node IP), local addresses (delivery, VXLAN
decapsulation) and, through the NAT hooks, the netfilter rules: a packet to a ClusterIP or a NodePort is
DNATed where the node's rules say (kube-proxy's chains or table), to the endpoint they choose, and followed on
to it; a masquerade rewrites the source. Where the lab's wiring has to be known (the far end of a veth, who owns
an address), ``trace_ctx`` says.

Netfilter hooks are called where the kernel has them: ``output`` in the sending namespace (and for the outer
packet of a VXLAN tunnel), ``prerouting`` when a packet arrives (also on a bridge with ``br_netfilter`` on),
``input`` before local delivery, ``forward`` and ``postrouting`` when it is routed on. The mark a rule sets lives
while the packet stays in one namespace.

Where the path breaks, the walk stops with ``problem`` naming the namespace and the missing piece, e.g.
"node-1 has no route to 10.244.2.0/24 (the pod CIDR of node-2)" and what the routing mode would have installed
there, or the rule that dropped the packet. VXLAN is followed through its encapsulation: the inner packet is kept
on a stack while the outer UDP packet is walked across the underlay, and taken back where a VXLAN device
decapsulates it.

A lab across hosts: a host walks only its own namespaces. Where a frame leaves its underlay bridge through the
stretch (a VXLAN port of ``lan0``), the walk ends with ``TraceResult.handoff`` (the packet, the stack of inner
packets, the frame's next hop); ``resume`` goes on from there on the host that holds the next hop
(``emulator.hosts.trace_across`` joins the parts).
"""
from __future__ import annotations

import ipaddress
from dataclasses import asdict
from typing import Sequence

from emulator.cni.bridge import mac_for
from emulator.errors import NoRouteError, TargetError
from emulator.lab.api import Lab
from emulator.netlink.observe import Route, Snapshot
from emulator.tools import targets
from emulator.tools.trace_ctx import Ctx
from emulator.tools.trace_model import Check, Hop, NatAt, NatHook, NatPoint, Packet, TraceResult
from emulator.tools.trace_nat import NAT_HOOKS
from emulator.topology import names

MAX_STEPS = 32
Next = tuple[str, str, Packet, NatPoint, "str | None"]  # (kind, owner, packet, hook it meets there, in device)


def trace(lab: Lab, src: str, dst: str, proto: str | None = None, port: int | None = None, *,
          nat_hooks: Sequence[NatHook] = NAT_HOOKS, endpoint: str | None = None) -> TraceResult:
    """The path of one packet from ``src`` to ``dst`` (see ``trace_ctx`` for the endpoints). ``proto`` defaults to
    tcp when a port is given (``--port`` or ``dst:PORT``), to the Service's protocol for a ClusterIP, else icmp.
    ``endpoint`` (``ip`` or ``ip:port``) is the Service endpoint to follow where the rules choose at random."""
    ctx = Ctx(lab, prefer=endpoint)
    try:
        skind, sowner, sip, _ = ctx.endpoint(src, True)
        _, _, dip, dport = ctx.endpoint(dst, False)
        assert dip is not None
        if port and dport and port != dport:
            raise TargetError(f"two ports for {dst}: {dport} in the address and --port {port}", obj=dst)
        port = port or dport
        if port is None and ctx.in_service_range(dip):
            port, svc_proto = ctx.service_port(dip, proto)
            proto = proto or svc_proto
        proto = proto or ("tcp" if port else "icmp")
        if skind in ("node", "host"):
            try:
                sip = ctx.view(skind, sowner).route_get(dip).prefsrc or sip
            except NoRouteError:
                pass  # the node's own address stays the source; the walk then reports the missing route
        pkt = Packet(sip or "?", dip, proto, port)  # type: ignore[arg-type]
        res = TraceResult(lab.name, ctx.routing, src, dst, pkt)
        Walker(ctx, res, nat_hooks).run(skind, sowner, pkt)
        return res
    finally:
        ctx.close()


def resume(lab: Lab, handoff: dict, src_name: str, dst_name: str, *, nat_hooks: Sequence[NatHook] = NAT_HOOKS,
           endpoint: str | None = None) -> TraceResult:
    """The rest of a trace on this host of a lab across hosts: from the frame another host's walk sent out of its
    stretch (``TraceResult.handoff``: the packet, the inner packets of a VXLAN tunnel, the frame's next hop)."""
    ctx = Ctx(lab, prefer=endpoint)
    try:
        res = TraceResult(lab.name, ctx.routing, src_name, dst_name, Packet(**handoff["packet"]))
        w = Walker(ctx, res, nat_hooks)
        w.stack = [Packet(**p) for p in handoff.get("stack", [])]
        nxt = w.from_stretch(handoff)
        if nxt is not None:
            w.run(*nxt)
        return res
    finally:
        ctx.close()


class Walker:
    def __init__(self, ctx: Ctx, res: TraceResult, nat_hooks: Sequence[NatHook]) -> None:
        self.ctx, self.res, self.nat_hooks = ctx, res, tuple(nat_hooks)
        self.stack: list[Packet] = []  # inner packets while their outer VXLAN packet is walked

    def hop(self, kind: str, owner: str, iface: str, action: str, text: str, *checks: tuple[str, str]) -> None:
        ns = self.ctx.ns(kind, owner)
        self.res.hops.append(Hop(owner, kind, ns, iface, action, text,
                                 [Check(ns, i, d) for i, d in checks]))  # type: ignore[arg-type]

    def fail(self, problem: str) -> None:
        self.res.problem = problem

    def nat(self, kind: str, owner: str, pkt: Packet, point: NatPoint, in_dev: str | None = None,
            out_dev: str | None = None) -> Packet | None:
        """Call the NAT hooks at ``point`` in a namespace; the packet as it leaves, or None if it goes no further."""
        at = NatAt(kind, owner, self.ctx.ns(kind, owner), point, in_dev, out_dev)
        for hook in self.nat_hooks:
            step = hook(self.ctx, at, pkt)
            if step is None:
                continue
            dev = (in_dev if point in ("prerouting", "input") else out_dev) or "-"
            self.res.hops.append(Hop(owner, kind, at.ns, dev, "nat", step.text, detail=step.detail))
            pkt = step.packet
            if step.problem:
                self.fail(step.problem)
                return None
        return pkt

    def run(self, kind: str, owner: str, pkt: Packet, point: NatPoint = "output", in_dev: str | None = None) -> None:
        seen: set[tuple] = set()
        for _ in range(MAX_STEPS):
            key = (kind, owner, pkt, len(self.stack))
            if key in seen:
                return self.fail(f"routing loop: the packet {pkt.text()} came back to {owner}")
            seen.add(key)
            nat_pkt = self.nat(kind, owner, pkt, point, in_dev)
            if nat_pkt is None:
                return
            nxt = self.step(kind, owner, nat_pkt, point, in_dev)
            if nxt is None:
                return
            nkind, nowner, pkt, point, in_dev = nxt
            if (nkind, nowner) != (kind, owner):  # the mark does not cross namespaces (veth scrubs it)
                pkt = pkt.with_(mark=0)
            kind, owner = nkind, nowner
        self.fail(f"gave up after {MAX_STEPS} steps without reaching {pkt.dst}")

    # -- one namespace: deliver, decapsulate or route out ------------------------------------------------------
    def step(self, kind: str, owner: str, pkt: Packet, point: NatPoint, in_dev: str | None) -> Next | None:
        v = self.ctx.view(kind, owner)
        dev = v.local_dev(pkt.dst)
        if dev is not None:
            if point == "prerouting":
                arrived = self.nat(kind, owner, pkt, "input", in_dev)
                if arrived is None:
                    return None
                pkt = arrived
            if self.stack and pkt.proto == "udp":
                return self.decap(kind, owner, v, dev, pkt)
            self.hop(kind, owner, dev, "deliver", f"{pkt.dst} is a local address of {owner} ({dev}): delivered")
            self.res.delivered = True
            return None
        try:
            dec = v.route_get(pkt.dst)
        except NoRouteError:
            return self.fail(self.no_route(kind, owner, pkt.dst, None))
        route = v.match_route(pkt.dst, dec.dev)
        if kind == "node":
            missing = self.missing_pod_route(owner, pkt.dst, route)
            if missing:
                return self.fail(missing)
        outer = "outer packet; " if self.stack else ""
        shown = f"{route.text()} ({outer}origin {route.origin})" if route else f"via {dec.dev}"
        self.hop(kind, owner, dec.dev, "route", f"route {shown}")
        if point == "prerouting":
            fwd = self.nat(kind, owner, pkt, "forward", in_dev, dec.dev)
            if fwd is None:
                return None
            pkt = fwd
        out = self.nat(kind, owner, pkt, "postrouting", None, dec.dev)
        if out is None:
            return None
        pkt = out
        link = v.links.get(dec.dev)
        nexthop = dec.gateway or pkt.dst
        if link is None:
            return self.fail(f"{owner}: the route uses {dec.dev}, which the dump does not show")
        if link.kind == "vxlan":
            return self.encap(kind, owner, v, link, nexthop, pkt)
        if link.kind == "bridge":
            return self.bridge_out(kind, owner, v, link.name, nexthop, pkt)
        if link.kind == "veth":
            return self.veth_out(kind, owner, v, link.name, nexthop, pkt)
        return self.fail(f"{owner}: cannot follow a packet out of {dec.dev} (a {link.kind or 'plain'} device)")

    def no_route(self, kind: str, owner: str, dst: str, route: Route | None) -> str:
        sl = self.ctx.slice_of(dst)
        if kind == "node" and sl and sl[0] != owner:
            how = f"; it would use '{route.text()}' instead" if route else ""
            return (f"{owner} has no route to {sl[1]} (the pod CIDR of {sl[0]}){how}; "
                    f"{self.ctx.expected_route(owner, sl[0])}")
        return f"{owner} has no route to {dst}"

    def missing_pod_route(self, owner: str, dst: str, route: Route | None) -> str | None:
        sl = self.ctx.slice_of(dst)
        if sl is None or sl[0] == owner:
            return None
        if route is None or route.dst.prefixlen < sl[1].prefixlen:
            return self.no_route("node", owner, dst, route)
        return None

    # -- VXLAN -------------------------------------------------------------------------------------------------
    def encap(self, kind: str, owner: str, v: Snapshot, link, nexthop: str, pkt: Packet) -> Next | None:
        neigh = v.neigh(link.name, nexthop)
        sl = self.ctx.slice_of(pkt.dst)
        remote_node = sl[0] if sl else "the remote node"
        if neigh is None or not neigh.mac:
            return self.fail(f"{owner} {link.name} has no neighbour entry for {nexthop}: the VTEP MAC of "
                             f"{remote_node} is unknown (flannel writes a permanent entry per remote node)")
        fdb = v.vtep(link.name, neigh.mac)
        if fdb is None or not fdb.dst:
            return self.fail(f"{owner} {link.name} has no FDB entry for {neigh.mac}: the kernel does not know "
                             f"which node owns that VTEP (expected 'dst {self.ctx.nodes.get(remote_node, ('?',))[0]}')")
        local = link.vxlan_local or v.route_get(fdb.dst).prefsrc or "?"
        self.hop(kind, owner, link.name, "vxlan",
                 f"VXLAN VNI {link.vni}: neigh {nexthop} lladdr {neigh.mac} {neigh.state}; fdb {neigh.mac} dst "
                 f"{fdb.dst} ⇒ encapsulated in UDP {local} → {fdb.dst}:{link.vxlan_port}", (link.name, "tx"))
        self.stack.append(pkt)  # the outer packet is sent by the node itself: it meets the output hook
        return kind, owner, Packet(local, fdb.dst, "udp", link.vxlan_port, pkt.mark), "output", None

    def decap(self, kind: str, owner: str, v: Snapshot, dev: str, outer: Packet) -> Next | None:
        inner = self.stack.pop().with_(mark=outer.mark)
        vx = next((l for l in v.links.values() if l.kind == "vxlan" and l.vxlan_port == outer.port), None)
        if vx is None:
            return self.fail(f"{owner} has no VXLAN device on UDP port {outer.port}: the encapsulated packet is "
                             "dropped")
        self.hop(kind, owner, vx.name, "decap", f"{outer.dst} is local ({dev}): UDP {outer.port} → {vx.name} "
                 f"(VNI {vx.vni}) strips the outer headers: {inner.text()}", (vx.name, "rx"))
        return kind, owner, inner, "prerouting", vx.name
    # -- L2: bridges and veth cables ----------------------------------------------------------------------------
    def mac_of(self, v: Snapshot, dev: str, ip: str) -> tuple[str, str]:
        n = v.neigh(dev, ip)
        if n and n.mac:
            return n.mac, f"neigh {ip} lladdr {n.mac} {n.state}"
        if ip in self.ctx.pods:
            mac = mac_for(ipaddress.IPv4Address(ip))
            return mac, f"no neighbour entry for {ip} yet (ARP resolves it to {mac}, 0a:58 + the IP)"
        return "", f"no neighbour entry for {ip} yet (ARP resolves it)"

    def port_for(self, bv: Snapshot, bridge: str, mac: str, ip: str) -> tuple[str | None, str]:
        fdb = bv.fdb_port(bridge, mac) if mac else None
        if fdb is not None:
            return fdb.dev, f"fdb {mac} → port {fdb.dev}"
        near = next((n for n in self.ctx.nodes if self.ctx.ns("node", n) == bv.ns), None)
        owner = self.ctx.owner_of(ip, near)
        port = self.ctx.port_towards(owner) if owner else None
        if port and bv.links.get(port) and bv.links[port].master == bridge:
            return port, f"{mac or ip} not in the FDB yet: the bridge floods the first frame; port {port} leads to it"
        stretch = next((lk.name for lk in bv.links.values() if lk.kind == "vxlan" and lk.master == bridge), None)
        if owner is None and stretch is not None:  # a lab across hosts: no local port leads there, the stretch does
            return stretch, f"{mac or ip} not in the FDB yet: the bridge floods the frame, out of {stretch} too"
        return None, f"no port of {bridge} leads to {ip}"

    def bridged(self, kind: str, owner: str, bridge: str, pkt: Packet) -> Packet | None:
        """A frame bridged (not routed) through ``bridge``: with br_netfilter on there, IPv4 packets meet the
        namespace's prerouting, forward and postrouting hooks, with the bridge as their device."""
        if not self.ctx.br_netfilter(kind, owner):
            return pkt
        hooks: tuple[tuple[NatPoint, str | None, str | None], ...] = (
            ("prerouting", bridge, None), ("forward", bridge, bridge), ("postrouting", None, bridge))
        for point, in_dev, out_dev in hooks:
            nxt = self.nat(kind, owner, pkt, point, in_dev, out_dev)
            if nxt is None:
                return None
            pkt = nxt
        return pkt

    def bridge_out(self, kind: str, owner: str, v: Snapshot, bridge: str, nexthop: str, pkt: Packet) -> Next | None:
        mac, neigh_text = self.mac_of(v, bridge, nexthop)
        port, fdb_text = self.port_for(v, bridge, mac, nexthop)
        if port is None:
            return self.fail(f"{owner} bridge {bridge}: {fdb_text} (no pod or node has {nexthop})")
        self.hop(kind, owner, bridge, "bridge", f"{neigh_text}; {fdb_text}", (bridge, "tx"), (port, "tx"))
        return self.cross_port(kind, owner, port, pkt)

    def cross_port(self, kind: str, owner: str, port: str, pkt: Packet) -> Next | None:
        """Leave a node or the underlay through bridge port ``port``, arriving at the other end of its cable."""
        if kind == "underlay":
            peer = self.ctx.cables.get(("underlay", "underlay", port))
            if peer is None:
                return self.fail(f"underlay port {port} leads to no node or host of the lab")
            pk, po, pd = peer
            self.hop(pk, po, pd, "in", f"{po}'s {pd} (cable from underlay port {port})", (pd, "rx"))
            return pk, po, pkt, "prerouting", pd
        peer = self.ctx.cables.get((kind, owner, port))
        if peer is not None and peer[0] == "container":
            self.hop(kind, owner, port, "out", f"veth to container {peer[1].replace('.', '/', 1)}", (port, "tx"))
            self.hop("container", peer[1], names.POD_IFNAME, "in", "the container's eth0 receives the frame",
                     (names.POD_IFNAME, "rx"))
            return "container", peer[1], pkt, "prerouting", names.POD_IFNAME
        pod = next((p for p in self.ctx.pods.values() if p["veth"] == port and p["node"] == owner), None)
        if pod is None:
            return self.fail(f"{owner}: port {port} leads to no running pod")
        self.hop(kind, owner, port, "out", f"veth to pod {pod['name']}", (port, "tx"))
        self.hop("pod", pod["name"], names.POD_IFNAME, "in", f"{pod['name']} eth0 receives the frame",
                 (names.POD_IFNAME, "rx"))
        return "pod", pod["name"], pkt, "prerouting", names.POD_IFNAME

    def veth_out(self, kind: str, owner: str, v: Snapshot, dev: str, nexthop: str, pkt: Packet) -> Next | None:
        mac, neigh_text = self.mac_of(v, dev, nexthop)
        self.hop(kind, owner, dev, "out", f"next hop {nexthop}: {neigh_text}", (dev, "tx"))
        if kind == "pod":
            return self.pod_out(owner, mac, nexthop, pkt)
        if kind == "container":
            c = self.ctx.containers[owner]
            return self.into_node(owner, c["node"], c["veth"], mac, nexthop, pkt)
        peer = self.ctx.cables.get((kind, owner, dev))
        if peer is None:
            return self.fail(f"{owner}: cannot follow a packet out of veth {dev} (the lab knows no cable there)")
        pk, po, pd = peer
        if pk != "underlay":
            self.hop(pk, po, pd, "in", f"{po}'s {pd} (cable from {owner} {dev})", (pd, "rx"))
            return pk, po, pkt, "prerouting", pd
        self.hop("underlay", "underlay", pd, "in", f"underlay port {pd} (cable from {owner} {dev})", (pd, "rx"))
        return self.across_underlay(mac, nexthop, pkt)

    def across_underlay(self, mac: str, nexthop: str, pkt: Packet) -> Next | None:
        """A frame in the underlay bridge, to the port of its next hop; out of the stretch (a VXLAN port of the
        bridge: a lab across hosts) when the next hop is on another host, where ``resume`` takes it on."""
        uv = self.ctx.view("underlay", "underlay")
        port, fdb_text = self.port_for(uv, names.UNDERLAY_BRIDGE, mac, nexthop)
        if port is None:
            return self.fail(f"underlay bridge {names.UNDERLAY_BRIDGE}: {fdb_text} (no node or host has {nexthop})")
        self.hop("underlay", "underlay", names.UNDERLAY_BRIDGE, "bridge", f"bridge {names.UNDERLAY_BRIDGE}: "
                 f"{fdb_text}", (port, "tx"))
        bridged = self.bridged("underlay", "underlay", names.UNDERLAY_BRIDGE, pkt)
        if bridged is None:
            return None
        link = uv.links.get(port)
        if link is not None and link.kind == "vxlan":
            self.hop("underlay", "underlay", port, "out", f"out of {port}: VXLAN VNI {link.vni}, UDP "
                     f"{link.vxlan_port} to the other hosts ({nexthop} is on another host)", (port, "tx"))
            self.res.handoff = {"port": port, "mac": mac, "nexthop": nexthop, "packet": asdict(bridged),
                                "stack": [asdict(p) for p in self.stack]}
            return None
        return self.cross_port("underlay", "underlay", port, bridged)

    def from_stretch(self, handoff: dict) -> Next | None:
        """A frame another host's underlay sent out of its stretch, arriving at this host's stretch port."""
        port = handoff["port"]
        self.hop("underlay", "underlay", port, "in", f"in from {port} (the stretch): the frame for "
                 f"{handoff['nexthop']} from another host", (port, "rx"))
        return self.across_underlay(handoff.get("mac") or "", handoff["nexthop"], Packet(**handoff["packet"]))

    def pod_out(self, owner: str, mac: str, nexthop: str, pkt: Packet) -> Next | None:
        """From a pod's eth0 into its node: to the bridge itself (routed on) or bridged to another pod."""
        return self.into_node(owner, self.ctx.lab.pod(owner).node, targets.pod_veth(self.ctx.lab, owner), mac,
                              nexthop, pkt)

    def into_node(self, owner: str, node: str, veth: str, mac: str, nexthop: str, pkt: Packet) -> Next | None:
        """A frame from a pod's or Docker container's eth0 at its host veth: to the bridge (cni0, docker0)
        itself when the next hop is the bridge's address, else bridged to another port."""
        nv = self.ctx.view("node", node)
        link = nv.links.get(veth)
        if link is None:
            return self.fail(f"{node} has no veth {veth} for {owner}: the cable is cut")
        self.hop("node", node, veth, "in", f"veth peer of {owner} eth0, port of bridge {link.master}", (veth, "rx"))
        if link.master is None:
            return self.fail(f"{node} {veth} is not a port of any bridge (cni0): frames from {owner} stop here")
        if nv.local_dev(nexthop) == link.master:
            self.hop("node", node, link.master, "in", f"frame for {link.master} itself ({nexthop}, the pods' "
                     f"gateway): {node} routes it", (link.master, "rx"))
            return "node", node, pkt, "prerouting", link.master
        port, fdb_text = self.port_for(nv, link.master, mac, nexthop)
        if port is None:
            there = [k.replace(".", "/", 1) for k, c in self.ctx.containers.items() if c["ip"] == nexthop
                     and c["node"] != node]
            why = (f" ({', '.join(there)} holds {nexthop}, on another Docker host: 172.17.0.0/16 is local to every "
                   f"one of them, so {node} never routes it off its own {link.master})" if there else "")
            return self.fail(f"{node} bridge {link.master}: {fdb_text}{why}")
        self.hop("node", node, link.master, "bridge", f"bridged, not routed: {fdb_text}")
        bridged = self.bridged("node", node, link.master, pkt)
        return None if bridged is None else self.cross_port("node", node, port, bridged)
