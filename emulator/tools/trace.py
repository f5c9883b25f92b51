"""``trace``: the path a packet takes through a lab, hop by hop, read from the kernel state of each namespace.

The walker follows one packet the way the kernel would, namespace by namespace, and at each step asks the
kernel rather than the topology: ``route_get`` (the kernel's own route decision, ``ip route get``), the matching
``ip route`` line, neighbour entries (``ip neigh``: next hop → MAC), bridge FDBs (``bridge fdb``: MAC → port),
VXLAN devices and their FDB (VTEP MAC → remote node IP) and local addresses (delivery, VXLAN decapsulation).
The lab is consulted only for what the kernel cannot say in one namespace: which namespace is at the other end
of a veth cable (the pod's sandbox names its node-side veth; node eth0 ↔ its underlay port is a lab convention),
and which pod or node owns an IP when a bridge has not learned the MAC yet (it floods the first frame, which is
what that fallback says).

Where the path breaks, the walk stops with ``problem`` naming the namespace and the missing piece, e.g.
"node-1 has no route to 10.244.2.0/24 (the pod CIDR of node-2)" and what the routing mode would have installed
there. VXLAN is followed through its encapsulation: the inner packet is kept on a stack while the outer UDP
packet is walked across the underlay, and taken back where a VXLAN device decapsulates it. NAT hooks
(``trace_model.register_nat_hook``) are called at output, prerouting and postrouting.
"""
from __future__ import annotations

import ipaddress

from emulator.cni.bridge import mac_for
from emulator.lab.api import Lab
from emulator.tools import targets
from emulator.tools.errors import TargetError
from emulator.tools.kstate import NoRouteError, NsView, Route
from emulator.tools.trace_model import Check, Hop, NatPoint, Packet, TraceResult, nat_hooks
from emulator.topology import names

MAX_STEPS = 24


class Ctx:
    """The lab as the walker needs it: namespace views (opened once) and who owns which address."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        rec = lab.record
        self.routing = rec.get("routing", "?")
        self.views: dict[str, NsView] = {}
        self.nodes: dict[str, tuple[str, ipaddress.IPv4Network]] = {}
        for n in rec.get("nodes", []):
            obj = lab.store.get("nodes", n) or {}
            self.nodes[n] = (obj["status"]["addresses"][0]["address"], ipaddress.IPv4Network(obj["spec"]["podCIDR"]))
        self.node_by_ip = {ip: n for n, (ip, _) in self.nodes.items()}
        self.pods: dict[str, dict] = {}
        self.pod_netns: dict[str, str] = {}
        for p in lab.pods:
            st = lab.store.get_status("pods", p.name, p.namespace) or {}
            self.pod_netns[p.ref] = p.netns
            if st.get("podIP"):
                self.pods[st["podIP"]] = {"name": p.ref, "node": st.get("nodeName"),
                                          "veth": names.host_veth((st.get("sandbox") or {}).get("id", ""))}

    def view(self, kind: str, owner: str) -> NsView:
        ns = self.ns(kind, owner)
        if ns not in self.views:
            self.views[ns] = NsView(ns, owner)
        return self.views[ns]

    def ns(self, kind: str, owner: str) -> str:
        if kind == "pod":
            return self.pod_netns.get(owner) or self.lab.pod(owner).netns
        return names.node_ns(self.lab.name, owner) if kind == "node" else names.underlay_ns(self.lab.name)

    def close(self) -> None:
        for v in self.views.values():
            v.close()

    def owner_of(self, ip: str) -> tuple[str, str] | None:
        if ip in self.pods:
            return "pod", self.pods[ip]["name"]
        if ip in self.node_by_ip:
            return "node", self.node_by_ip[ip]
        return None

    def slice_of(self, ip: str) -> tuple[str, ipaddress.IPv4Network] | None:
        addr = ipaddress.IPv4Address(ip)
        return next(((n, c) for n, (_, c) in self.nodes.items() if addr in c), None)

    def expected_route(self, node: str, other: str) -> str:
        ip, cidr = self.nodes[other]
        if self.routing == "vxlan":
            return f"flannel (vxlan) installs '{cidr} via {cidr.network_address} dev {names.VXLAN_DEVICE} onlink'"
        if self.routing == "host-gw":
            return f"host-gw installs '{cidr} via {ip} dev {names.NODE_UPLINK}'"
        if self.routing == "bgp":
            return f"BIRD should have learned '{cidr} via {ip}' from {other} over BGP (check `birdc show protocols`)"
        return f"the routing mode {self.routing} should install a route to {cidr}"

    def nat(self, res: TraceResult, kind: str, owner: str, pkt: Packet, point: NatPoint) -> Packet:
        for hook in nat_hooks():
            step = hook(self, self.ns(kind, owner), pkt, point)
            if step is not None:
                res.hops.append(Hop(owner, kind, self.ns(kind, owner), "-", "nat", step.text))
                pkt = step.packet
        return pkt


def endpoint(ctx: Ctx, text: str, is_src: bool) -> tuple[str, str, str | None]:
    """(kind, owner, ip) of a trace endpoint: a pod, node/NAME, a node name, or (destination only) an IP."""
    try:
        ipaddress.IPv4Address(text)
        if is_src:
            raise TargetError(f"the source must be a pod or node/NAME, not an address ({text})", obj=text)
        owner = ctx.owner_of(text)
        return (owner[0], owner[1], text) if owner else ("ip", text, text)
    except ValueError:
        pass
    kind, owner, _ = targets.parse(text)
    if kind is None:
        kind = "pod" if ctx.lab.store.get("pods", owner) is not None else "node" if owner in ctx.nodes else None
    if kind == "pod":
        view = ctx.lab.pod(owner)
        st = ctx.lab.store.get_status("pods", view.name, view.namespace) or {}
        if not st.get("podIP"):
            raise TargetError(f"pod {owner} has no IP (phase {st.get('phase', 'unknown')})", obj=owner)
        return "pod", owner, st["podIP"]
    if kind == "node" and owner in ctx.nodes:
        return "node", owner, ctx.nodes[owner][0]
    raise TargetError(f"{text!r} is not a pod, node or IPv4 address of lab {ctx.lab.name}", obj=text)


def trace(lab: Lab, src: str, dst: str, proto: str = "icmp", port: int | None = None) -> TraceResult:
    ctx = Ctx(lab)
    try:
        skind, sowner, sip = endpoint(ctx, src, True)
        _, _, dip = endpoint(ctx, dst, False)
        assert dip is not None
        if skind == "node":
            try:
                sip = ctx.view("node", sowner).route_get(dip).prefsrc or sip
            except NoRouteError:
                pass
        pkt = Packet(sip or "?", dip, proto, port)  # type: ignore[arg-type]
        res = TraceResult(lab.name, ctx.routing, src, dst, pkt)
        Walker(ctx, res).run(skind, sowner, pkt)
        return res
    finally:
        ctx.close()


class Walker:
    def __init__(self, ctx: Ctx, res: TraceResult) -> None:
        self.ctx, self.res = ctx, res
        self.stack: list[Packet] = []  # inner packets while their outer VXLAN packet is walked

    def hop(self, kind: str, owner: str, iface: str, action: str, text: str, *checks: tuple[str, str]) -> None:
        ns = self.ctx.ns(kind, owner)
        self.res.hops.append(Hop(owner, kind, ns, iface, action, text,
                                 [Check(ns, i, d) for i, d in checks]))  # type: ignore[arg-type]

    def fail(self, problem: str) -> None:
        self.res.problem = problem

    def run(self, kind: str, owner: str, pkt: Packet) -> None:
        point: NatPoint = "output"
        seen: set[tuple] = set()
        for _ in range(MAX_STEPS):
            key = (kind, owner, pkt, len(self.stack))
            if key in seen:
                return self.fail(f"routing loop: the packet {pkt.text()} came back to {owner}")
            seen.add(key)
            if kind == "node" or point == "output":
                pkt = self.ctx.nat(self.res, kind, owner, pkt, point)
            step = self.step(kind, owner, pkt)
            if step is None:
                return
            kind, owner, pkt = step
            point = "prerouting"
        self.fail(f"gave up after {MAX_STEPS} steps without reaching {pkt.dst}")

    # -- one namespace: deliver, decapsulate or route out ------------------------------------------------------
    def step(self, kind: str, owner: str, pkt: Packet) -> tuple[str, str, Packet] | None:
        v = self.ctx.view(kind, owner)
        dev = v.local_dev(pkt.dst)
        if dev is not None:
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
        outer = " (outer packet)" if self.stack else ""
        self.hop(kind, owner, dec.dev, "route", f"route {route.text() if route else dec.dev}{outer}")
        if kind == "node":
            pkt = self.ctx.nat(self.res, kind, owner, pkt, "postrouting")
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
    def encap(self, kind: str, owner: str, v: NsView, link, nexthop: str, pkt: Packet):
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
        self.stack.append(pkt)
        return kind, owner, Packet(local, fdb.dst, "udp", link.vxlan_port)

    def decap(self, kind: str, owner: str, v: NsView, dev: str, outer: Packet):
        inner = self.stack.pop()
        vx = next((l for l in v.links.values() if l.kind == "vxlan" and l.vxlan_port == outer.port), None)
        if vx is None:
            return self.fail(f"{owner} has no VXLAN device on UDP port {outer.port}: the encapsulated packet is "
                             "dropped")
        self.hop(kind, owner, vx.name, "decap", f"{outer.dst} is local ({dev}): UDP {outer.port} → {vx.name} "
                 f"(VNI {vx.vni}) strips the outer headers: {inner.text()}", (vx.name, "rx"))
        return kind, owner, inner

    # -- L2: bridges and veth cables ----------------------------------------------------------------------------
    def mac_of(self, v: NsView, dev: str, ip: str) -> tuple[str, str]:
        n = v.neigh(dev, ip)
        if n and n.mac:
            return n.mac, f"neigh {ip} lladdr {n.mac} {n.state}"
        if ip in self.ctx.pods:
            mac = mac_for(ipaddress.IPv4Address(ip))
            return mac, f"no neighbour entry for {ip} yet (ARP resolves it to {mac}, 0a:58 + the IP)"
        return "", f"no neighbour entry for {ip} yet (ARP resolves it)"

    def port_for(self, bv: NsView, bridge: str, mac: str, ip: str) -> tuple[str | None, str]:
        fdb = bv.fdb_port(bridge, mac) if mac else None
        if fdb is not None:
            return fdb.dev, f"fdb {mac} → port {fdb.dev}"
        owner = self.ctx.owner_of(ip)
        port = None
        if owner and owner[0] == "pod":
            port = self.ctx.pods[ip]["veth"]
        elif owner and owner[0] == "node":
            port = owner[1]
        if port and bv.links.get(port) and bv.links[port].master == bridge:
            return port, f"{mac or ip} not in the FDB yet: the bridge floods the first frame; port {port} leads to it"
        return None, f"no port of {bridge} leads to {ip}"

    def bridge_out(self, kind: str, owner: str, v: NsView, bridge: str, nexthop: str, pkt: Packet):
        mac, neigh_text = self.mac_of(v, bridge, nexthop)
        port, fdb_text = self.port_for(v, bridge, mac, nexthop)
        if port is None:
            return self.fail(f"{owner} bridge {bridge}: {fdb_text} (no pod or node has {nexthop})")
        self.hop(kind, owner, bridge, "bridge", f"{neigh_text}; {fdb_text}", (bridge, "tx"), (port, "tx"))
        return self.cross_port(kind, owner, port, nexthop, pkt)

    def cross_port(self, kind: str, owner: str, port: str, nexthop: str, pkt: Packet):
        """Leave a node or the underlay through bridge port ``port``, arriving at the other end of its cable."""
        if kind == "underlay":
            self.hop("node", port, names.NODE_UPLINK, "in", f"{port}'s eth0 (cable from underlay port {port})",
                     (names.NODE_UPLINK, "rx"))
            return "node", port, pkt
        pod = next((p for p in self.ctx.pods.values() if p["veth"] == port and p["node"] == owner), None)
        if pod is None:
            return self.fail(f"{owner}: port {port} leads to no running pod")
        self.hop(kind, owner, port, "out", f"veth to pod {pod['name']}", (port, "tx"))
        self.hop("pod", pod["name"], names.POD_IFNAME, "in", f"{pod['name']} eth0 receives the frame",
                 (names.POD_IFNAME, "rx"))
        return "pod", pod["name"], pkt

    def veth_out(self, kind: str, owner: str, v: NsView, dev: str, nexthop: str, pkt: Packet):
        mac, neigh_text = self.mac_of(v, dev, nexthop)
        self.hop(kind, owner, dev, "out", f"next hop {nexthop}: {neigh_text}", (dev, "tx"))
        if kind == "pod":
            node = self.ctx.lab.pod(owner).node
            veth = targets.pod_veth(self.ctx.lab, owner)
            nv = self.ctx.view("node", node)
            link = nv.links.get(veth)
            if link is None:
                return self.fail(f"{node} has no veth {veth} for pod {owner}: the pod's cable is cut")
            self.hop("node", node, veth, "in", f"veth peer of {owner} eth0, port of bridge {link.master}",
                     (veth, "rx"))
            if link.master is None:
                return self.fail(f"{node} {veth} is not a port of any bridge (cni0): frames from {owner} stop here")
            if nv.local_dev(nexthop) == link.master:
                self.hop("node", node, link.master, "in", f"frame for {link.master} itself ({nexthop}, the pods' "
                         f"gateway): {node} routes it", (link.master, "rx"))
                return "node", node, pkt
            port, fdb_text = self.port_for(nv, link.master, mac, nexthop)
            if port is None:
                return self.fail(f"{node} bridge {link.master}: {fdb_text}")
            self.hop("node", node, link.master, "bridge", f"bridged, not routed: {fdb_text}")
            return self.cross_port("node", node, port, nexthop, pkt)
        if kind == "node" and dev == names.NODE_UPLINK:
            uv = self.ctx.view("underlay", "underlay")
            self.hop("underlay", "underlay", owner, "in", f"underlay port {owner} (cable from {owner} eth0)",
                     (owner, "rx"))
            port, fdb_text = self.port_for(uv, names.UNDERLAY_BRIDGE, mac, nexthop)
            if port is None:
                return self.fail(f"underlay bridge {names.UNDERLAY_BRIDGE}: {fdb_text} (no node has {nexthop})")
            self.hop("underlay", "underlay", names.UNDERLAY_BRIDGE, "bridge", f"bridge {names.UNDERLAY_BRIDGE}: "
                     f"{fdb_text}", (port, "tx"))
            return self.cross_port("underlay", "underlay", port, nexthop, pkt)
        return self.fail(f"{owner}: cannot follow a packet out of veth {dev}")

