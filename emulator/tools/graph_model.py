"""The picture of a lab as plain data: boxes (nodes, pods, devices), groups (one per node) and lines.

Built from a topology file alone (``from_topology``: what the routing mode *will* install, pod IPs unknown) or
from a running lab (``from_lab``: pod IPs and veth names from the store, cross-node routes and VXLAN FDB entries
read from each node's kernel, so a deleted route disappears from the picture). Two renderers consume it
(``graph``: Graphviz for svg/png/dot, and Mermaid text for .mmd); keeping the model pure lets unit tests check
the content without rendering anything.
"""
from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field

from emulator.topology import names
from emulator.topology.model import Topology

MAX_PAIR_EDGES_NODES = 8  # above this many nodes, node-to-node lines are summarised in the title
VXLAN_VNI, VXLAN_PORT, BGP_AS = 1, 8472, 64512


@dataclass(frozen=True)
class Box:
    id: str
    label: str  # lines separated by "\n"
    kind: str  # underlay | uplink | bridge | vxlan | pod | routes
    group: str | None = None  # the node the box belongs to


@dataclass(frozen=True)
class Line:
    a: str
    b: str
    label: str = ""
    kind: str = "cable"  # cable (veth) | internal (kernel routing inside a node) | tunnel | bgp
    directed: bool = False


@dataclass
class GraphModel:
    title: str
    groups: dict[str, str] = field(default_factory=dict)  # node name → label
    boxes: list[Box] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def box(self, id_: str) -> Box:
        return next(b for b in self.boxes if b.id == id_)


def dev_id(node: str, dev: str) -> str:
    return f"{node}/{dev}"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ip: str
    pod_cidr: ipaddress.IPv4Network


@dataclass(frozen=True)
class PodInfo:
    name: str
    node: str
    ip: str | None
    veth: str | None


def build(title: str, routing: str, underlay_cidr: str, nodes: list[NodeInfo], pods: list[PodInfo],
          routes: dict[str, list[str]], pairs: list[Line]) -> GraphModel:
    """``routes``: per node, its routes to the other nodes' pod CIDRs (``ip route`` lines), drawn as a note;
    ``pairs``: node-to-node lines (VXLAN tunnels, BGP sessions)."""
    g = GraphModel(title)
    g.boxes.append(Box("underlay", f"underlay\nbridge {names.UNDERLAY_BRIDGE}\n{underlay_cidr}", "underlay"))
    for n in nodes:
        g.groups[n.name] = f"node {n.name}\n{n.ip}  podCIDR {n.pod_cidr}"
        eth0, cni0 = dev_id(n.name, names.NODE_UPLINK), dev_id(n.name, names.CNI_BRIDGE)
        g.boxes.append(Box(eth0, f"eth0\n{n.ip}", "uplink", n.name))
        g.boxes.append(Box(cni0, f"cni0\n{n.pod_cidr.network_address + 1}/{n.pod_cidr.prefixlen}", "bridge", n.name))
        g.lines.append(Line(eth0, "underlay", f"port {n.name}", "cable"))
        routed_by = eth0
        if routing == "vxlan":
            vx = routed_by = dev_id(n.name, names.VXLAN_DEVICE)
            g.boxes.append(Box(vx, f"flannel.1\nVNI {VXLAN_VNI}  {n.pod_cidr.network_address}/32", "vxlan", n.name))
            g.lines.append(Line(cni0, vx, "", "internal"))
            g.lines.append(Line(vx, eth0, f"UDP {VXLAN_PORT}", "internal"))
        else:
            g.lines.append(Line(cni0, eth0, "ip_forward", "internal"))
        if routes.get(n.name):
            rid = dev_id(n.name, "routes")
            g.boxes.append(Box(rid, "\n".join(["routes to other nodes' pods:"] + routes[n.name]), "routes", n.name))
            g.lines.append(Line(rid, routed_by, "", "internal"))
    for p in pods:
        pid = f"pod/{p.name}"
        g.boxes.append(Box(pid, f"{p.name}\n{p.ip or 'not running'}", "pod", p.node))
        g.lines.append(Line(pid, dev_id(p.node, names.CNI_BRIDGE), p.veth or "veth", "cable"))
    if len(nodes) > MAX_PAIR_EDGES_NODES:
        g.title += f" ({len(pairs)} node-to-node lines not drawn)"
    else:
        g.lines.extend(pairs)
    return g


def expected(routing: str, nodes: list[NodeInfo]) -> tuple[dict[str, list[str]], list[Line]]:
    """What the routing mode installs (from the topology alone): routes per node, node-to-node lines."""
    routes: dict[str, list[str]] = {n.name: [] for n in nodes}
    pairs: list[Line] = []
    for a in nodes:
        for b in nodes:
            if a.name == b.name:
                continue
            if routing == "vxlan":
                routes[a.name].append(f"{b.pod_cidr} via {b.pod_cidr.network_address} dev flannel.1 onlink")
                if a.name < b.name:
                    pairs.append(Line(dev_id(a.name, names.VXLAN_DEVICE), dev_id(b.name, names.VXLAN_DEVICE),
                                      f"VXLAN VNI {VXLAN_VNI}, UDP {VXLAN_PORT}\n{a.ip} ⇄ {b.ip}", "tunnel"))
            elif routing in ("host-gw", "bgp"):
                proto = " proto bird" if routing == "bgp" else ""
                routes[a.name].append(f"{b.pod_cidr} via {b.ip} dev eth0{proto}")
                if routing == "bgp" and a.name < b.name:
                    pairs.append(Line(dev_id(a.name, names.NODE_UPLINK), dev_id(b.name, names.NODE_UPLINK),
                                      f"iBGP AS {BGP_AS}", "bgp"))
    return routes, pairs


def from_topology(topo: Topology) -> GraphModel:
    nodes = [NodeInfo(n.name, str(n.ip), n.pod_cidr) for n in topo.nodes]
    pods = [PodInfo(p.name, p.node, None, None) for p in topo.pods if p.node]  # an unscheduled pod is on no node
    routes, pairs = expected(topo.routing, nodes)
    return build(f"lab {topo.name} ({topo.routing}) from {topo.source}", topo.routing, str(topo.underlay.cidr),
                 nodes, pods, routes, pairs)


def from_dict(d: dict) -> GraphModel:
    """A model from its ``as_dict`` form (what a host of a multi-host lab sends back)."""
    return GraphModel(d["title"], dict(d.get("groups", {})), [Box(**b) for b in d.get("boxes", [])],
                      [Line(**ln) for ln in d.get("lines", [])])


def merge(title: str, parts: dict[str, tuple[GraphModel, list[Line]]], note: str = "") -> GraphModel:
    """One picture of a lab over several hosts: every host's nodes (each group labelled with its host), pods and
    lines, the underlay drawn once (``note`` added to its label: how it is stretched), and the node-to-node lines
    of all hosts, each pair once (both ends report a tunnel), unless there are too many nodes to draw them."""
    g = GraphModel(title)
    seen_boxes: set[str] = set()
    seen_lines: set[tuple[str, str, str]] = set()
    pairs: list[Line] = []
    for host in sorted(parts):
        model, host_pairs = parts[host]
        for group, label in model.groups.items():
            g.groups[group] = f"{label}\nhost {host}"
        for b in model.boxes:
            if b.id not in seen_boxes:
                seen_boxes.add(b.id)
                g.boxes.append(Box(b.id, b.label + (f"\n{note}" if note and b.kind == "underlay" else ""), b.kind,
                                   b.group))
        for ln in list(model.lines) + list(host_pairs):
            k = (*sorted((ln.a, ln.b)), ln.kind)
            if k not in seen_lines:
                seen_lines.add(k)  # type: ignore[arg-type]
                (pairs if ln in host_pairs else g.lines).append(ln)
    if len(g.groups) > MAX_PAIR_EDGES_NODES:
        g.title += f" ({len(pairs)} node-to-node lines not drawn)"
    else:
        g.lines.extend(pairs)
    return g
