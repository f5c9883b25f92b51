"""The lab as the trace walker needs it: namespaces, who owns which address, the cables, the trace's endpoints.

Kernel state comes from ``netlink.observe.Snapshot`` s, opened once per namespace and trace. The lab is consulted only for what one
namespace's kernel cannot say: which namespace is at the other end of a veth cable (a pod's sandbox names its
node-side veth; the rest are the lab's conventions: a node's ``eth0`` is underlay port ``<node>``, the router's
``eth0`` is ``gw.lan``, the external host's ``eth0`` is the router's ``eth1``) and which
pod, node or host owns an address when a bridge has not learned its MAC yet.

Endpoints: the source is a target of the one grammar (``emulator.lab.targets``) that has an address — a pod, a
node, a Docker container (``container/NODE/NAME``: its cable is ``eth0`` ↔ the node's ``veth<7 hex>`` on
docker0, and its 172.17.0.x means the container *of the node asking*), ``external``; the destination any of those or an IPv4 address (the router's too), each
optionally with ``:PORT``. A Service's
ClusterIP without a port takes the Service's port (and protocol) when it has one, or the one of ``--proto``.
"""
from __future__ import annotations

import ipaddress

from emulator.external import network as extnet
from emulator.errors import TargetError
from emulator.lab import targets as grammar
from emulator.lab.api import Lab
from emulator.netlink import netns
from emulator.netlink.observe import Snapshot
from emulator.cni.spec import pod_host_veth
from emulator.topology import names

Place = tuple[str, str, str]  # (kind, owner, device)
BR_NF_SYSCTL = "/proc/sys/net/bridge/bridge-nf-call-iptables"
HOSTS = {"gw": extnet.gw_ns, "external": extnet.external_ns}


class Ctx:
    def __init__(self, lab: Lab, prefer: str | None = None) -> None:
        self.lab = lab
        self.prefer = prefer
        self.memo: dict = {}  # per-trace cache for NAT hooks (rulesets read once per namespace)
        rec = lab.record
        self.routing = rec.get("routing", "?")
        self.cluster = rec.get("cluster", {})
        self.views: dict[str, Snapshot] = {}
        self.nodes: dict[str, tuple[str, ipaddress.IPv4Network]] = {}
        for n in rec.get("nodes", []):
            obj = lab.store.get("nodes", n) or {}
            self.nodes[n] = (obj["status"]["addresses"][0]["address"], ipaddress.IPv4Network(obj["spec"]["podCIDR"]))
        self.node_by_ip = {ip: n for n, (ip, _) in self.nodes.items()}
        self.pods: dict[str, dict] = {}
        self.pod_netns: dict[str, str] = {}  # by the pod's reference (NAMESPACE/POD outside default)
        for p in lab.pods:
            st = lab.store.get_status("pods", p.name, p.namespace) or {}
            self.pod_netns[p.ref] = p.netns
            if st.get("podIP"):
                self.pods[st["podIP"]] = {"name": p.ref, "node": st.get("nodeName"),
                                          "veth": pod_host_veth(st.get("sandbox") or {})}
        self.containers: dict[str, dict] = {}  # Docker containers by store key <node>.<name>
        for key in lab.store.names(grammar.CONTAINERS):
            o = lab.store.get(grammar.CONTAINERS, key) or {}
            node, _, name = key.partition(".")
            self.containers[key] = {"node": node, "ip": (o.get("status") or {}).get("ipAddress"),
                                    "veth": names.docker_veth(node, name)}
        namespaces = set(rec.get("namespaces", []))
        self.hosts = {h: fn(lab.name) for h, fn in HOSTS.items() if fn(lab.name) in namespaces}
        self.cables: dict[Place, Place] = {}
        for n in self.nodes:
            self._cable(("node", n, names.NODE_UPLINK), ("underlay", "underlay", n))
        for key, c in self.containers.items():
            self._cable(("container", key, names.POD_IFNAME), ("node", c["node"], c["veth"]))
        if "gw" in self.hosts:
            self._cable(("host", "gw", "eth0"), ("underlay", "underlay", extnet.UNDERLAY_PORT))
        if "external" in self.hosts:
            self._cable(("host", "external", "eth0"), ("host", "gw", "eth1"))

    def _cable(self, a: Place, b: Place) -> None:
        self.cables[a], self.cables[b] = b, a

    def view(self, kind: str, owner: str) -> Snapshot:
        ns = self.ns(kind, owner)
        if ns not in self.views:
            self.views[ns] = Snapshot(ns=ns, label=owner)
        return self.views[ns]

    def ns(self, kind: str, owner: str) -> str:
        if kind == "underlay":
            return names.underlay_ns(self.lab.name)
        if kind == "host":
            return self.hosts[owner]
        if kind == "container":
            node, _, name = owner.partition(".")
            return names.container_ns(self.lab.name, node, name)
        if kind == "pod":
            return self.pod_netns.get(owner) or self.lab.pod(owner).netns
        return names.node_ns(self.lab.name, owner)

    def close(self) -> None:
        for v in self.views.values():
            v.close()

    def br_netfilter(self, kind: str, owner: str) -> bool:
        """Do bridged IPv4 frames in this namespace pass its netfilter hooks (``bridge-nf-call-iptables``)?"""
        ns = self.ns(kind, owner)
        key = ("br_netfilter", ns)
        if key not in self.memo:
            with netns.entered(ns):  # /proc/sys/net is the calling thread's namespace's
                try:
                    with open(BR_NF_SYSCTL) as f:
                        self.memo[key] = f.read().strip() == "1"
                except FileNotFoundError:  # br_netfilter is not loaded: bridged frames skip netfilter
                    self.memo[key] = False
        return self.memo[key]

    def owner_of(self, ip: str, near: str | None = None) -> tuple[str, str] | None:
        """Who holds ``ip``; a Docker container's address means the container on node ``near`` (every Docker host
        reuses 172.17.0.0/16)."""
        if near is not None:
            key = next((k for k, c in self.containers.items() if c["ip"] == ip and c["node"] == near), None)
            if key is not None:
                return "container", key
        if ip in self.pods:
            return "pod", self.pods[ip]["name"]
        if ip in self.node_by_ip:
            return "node", self.node_by_ip[ip]
        addr = ipaddress.IPv4Address(ip)
        for h in self.hosts:
            if any(a.interface.ip == addr for a in self.view("host", h).addrs):
                return "host", h
        return None

    def port_towards(self, owner: tuple[str, str]) -> str | None:
        """The underlay or node bridge port that leads to a pod, node or host (None if there is none)."""
        kind, name = owner
        if kind == "pod":
            return next((p["veth"] for p in self.pods.values() if p["name"] == name), None)
        peer = self.cables.get((kind, name, "eth0"))
        return peer[2] if peer and peer[0] in ("underlay", "node") else None

    def slice_of(self, ip: str) -> tuple[str, ipaddress.IPv4Network] | None:
        addr = ipaddress.IPv4Address(ip)
        return next(((n, c) for n, (_, c) in self.nodes.items() if addr in c), None)

    def in_service_range(self, ip: str) -> bool:
        cidr = self.cluster.get("serviceCIDR")
        return bool(cidr) and ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(cidr)

    def expected_route(self, node: str, other: str) -> str:
        ip, cidr = self.nodes[other]
        if self.routing == "vxlan":
            return f"flannel (vxlan) installs '{cidr} via {cidr.network_address} dev {names.VXLAN_DEVICE} onlink'"
        if self.routing == "host-gw":
            return f"host-gw installs '{cidr} via {ip} dev {names.NODE_UPLINK}'"
        if self.routing == "bgp":
            return f"BIRD should have learned '{cidr} via {ip}' from {other} over BGP (check `birdc show protocols`)"
        return f"the routing mode {self.routing} should install a route to {cidr}"

    # -- endpoints ----------------------------------------------------------------------------------------------
    def endpoint(self, text: str, is_src: bool) -> tuple[str, str, str | None, int | None]:
        """(kind, owner, ip, port) of a trace endpoint (see the module docstring)."""
        head, _, tail = text.rpartition(":")
        port = None
        if head and tail.isdigit():
            text, port = head, int(tail)
            if not 0 < port < 65536:
                raise TargetError(f"port {port} of {text!r} is not a TCP/UDP port (1-65535)", obj=text)
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return (*self._named(text), port)
        if is_src:
            raise TargetError(f"the source must be a pod, node/NAME or a host of the lab, not an address ({text})",
                              obj=text)
        owner = self.owner_of(text)
        return (owner[0], owner[1], text, port) if owner else ("ip", text, text, port)

    def _named(self, text: str) -> tuple[str, str, str]:
        """A target of the one grammar (``emulator.lab.targets``): a pod, a node or ``external``."""
        place = grammar.resolve(self.lab, text, iface=False)
        if place.kind == "pod":
            view = self.lab.pod(place.name)
            st = self.lab.store.get_status("pods", view.name, view.namespace) or {}
            if not st.get("podIP"):
                raise TargetError(f"pod {place.name} has no IP (phase {st.get('phase', 'unknown')})", obj=place.name)
            return "pod", place.name, st["podIP"]
        if place.kind == "node":
            return "node", place.name, self.nodes[place.name][0]
        if place.kind == "container" and self.containers.get(place.name, {}).get("ip"):
            return "container", place.name, self.containers[place.name]["ip"]
        if place.kind == "external" and "external" in self.hosts:
            ip = next((a.ip for a in self.view("host", "external").addrs if a.dev == "eth0"), None)
            if ip is not None:
                return "host", "external", ip
        raise TargetError(f"trace walks between pods, nodes and the external host; for the {place.kind} give its "
                          "IPv4 address as the destination", obj=text)

    def service_port(self, ip: str, proto: str | None) -> tuple[int, str]:
        """(port, protocol) of the Service whose ClusterIP is ``ip``, when one port fits; TargetError otherwise."""
        svcs = [s for s in self.lab.store.list("services") if (s.get("spec") or {}).get("clusterIP") == ip]
        if not svcs:
            raise TargetError(f"{ip} is in the Service range but no Service has it as its ClusterIP; give a port "
                              f"({ip}:PORT) to trace it anyway", obj=ip)
        meta = svcs[0]["metadata"]
        ports = [(int(p["port"]), p.get("protocol", "TCP").lower()) for p in svcs[0]["spec"].get("ports", [])]
        fit = [p for p in ports if proto in (None, p[1])]
        if len(fit) == 1:
            return fit[0]
        listed = ", ".join(f"{p}/{pr.upper()}" for p, pr in ports) or "none"
        raise TargetError(f"Service {meta.get('namespace', 'default')}/{meta['name']} ({ip}) has ports {listed}: "
                          f"give one, e.g. {ip}:{ports[0][0] if ports else 80}"
                          + (f" --proto {ports[0][1]}" if ports else ""), obj=ip)
