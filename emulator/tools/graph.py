"""``podlab graph``: draw a lab — nodes, pods with IPs, bridges, tunnels or routes, the underlay.

Graphviz does the layout and the svg/png rendering (through the ``graphviz`` Python package, which writes DOT
and runs Debian's ``dot``); Mermaid text (``.mmd``) is written by us from the same ``GraphModel`` so it can be
pasted into Markdown. A running lab is read live (``from_lab``): pod IPs and veth names from the store, and the
node-to-node lines from each node's kernel — a route to another node's pod CIDR through ``flannel.1`` becomes
a VXLAN tunnel line to the node its FDB names, a route via another node's IP becomes a route line — so the
picture shows what is, not what should be.
"""
from __future__ import annotations

import ipaddress
import re

from emulator.lab.api import Lab
from emulator.errors import MissingDependencyError, ToolError
from emulator.tools.graph_model import GraphModel, Line, NodeInfo, PodInfo, build, dev_id
from emulator.netlink.observe import Snapshot
from emulator.cni.spec import pod_host_veth
from emulator.topology import names

FORMATS = ("svg", "png", "dot", "mmd", "json")
STYLE = {
    "underlay": dict(shape="box3d", style="filled", fillcolor="#e8e8e8"),
    "uplink": dict(shape="box", style="filled", fillcolor="#fff2cc"),
    "bridge": dict(shape="ellipse", style="filled", fillcolor="#d9ead3"),
    "vxlan": dict(shape="hexagon", style="filled", fillcolor="#f4cccc"),
    "pod": dict(shape="box", style="rounded,filled", fillcolor="#cfe2f3"),
    "routes": dict(shape="note", style="filled", fillcolor="#ffffff", fontname="Courier", fontsize="9"),
}
LINE_STYLE = {
    "cable": dict(),
    "internal": dict(style="dotted"),
    "tunnel": dict(style="dashed", color="#cc0000", fontcolor="#cc0000", constraint="false"),
    "bgp": dict(style="dashed", color="#6aa84f", fontcolor="#6aa84f", constraint="false"),
}


def lab_nodes(lab: Lab) -> list[NodeInfo]:
    nodes: list[NodeInfo] = []
    for n in lab.record.get("nodes", []):
        obj = lab.store.get("nodes", n) or {}
        nodes.append(NodeInfo(n, obj["status"]["addresses"][0]["address"],
                              ipaddress.IPv4Network(obj["spec"]["podCIDR"])))
    return nodes


def from_lab(lab: Lab) -> GraphModel:
    args, pairs = _inputs(lab, None)
    return build(*args, pairs)


def host_part(lab: Lab, peers: list[NodeInfo]) -> tuple[GraphModel, list[Line]]:
    """A host's part of a multi-host lab: its own nodes and pods, with their routes to every node of every host
    (``peers``), and apart the node-to-node lines (tunnels, BGP sessions) the controller merges and draws."""
    args, pairs = _inputs(lab, peers)
    return build(*args, []), pairs


def _inputs(lab: Lab, peers: list[NodeInfo] | None) -> tuple[tuple, list[Line]]:
    rec = lab.record
    routing = rec.get("routing", "?")
    nodes = lab_nodes(lab)
    pods = []
    for view in lab.pods:
        obj = lab.store.with_status("pods", view.name, view.namespace) or {}
        st = obj.get("status", {})
        sb = st.get("sandbox") or {}
        pods.append(PodInfo(view.ref, obj.get("spec", {}).get("nodeName", "?"), st.get("podIP"),
                            pod_host_veth(sb) if sb.get("id") and st.get("phase") == "Running" else None))
    routes, pairs = kernel_paths(lab, nodes, peers)
    return (f"lab {lab.name} ({routing})", routing, rec.get("cluster", {}).get("underlay", ""), nodes, pods,
            routes), pairs


def kernel_paths(lab: Lab, nodes: list[NodeInfo], peers: list[NodeInfo] | None = None
                 ) -> tuple[dict[str, list[str]], list[Line]]:
    """Per node, its kernel routes to the other nodes' pod CIDRs (``peers``, default ``nodes``: the nodes it may
    route to, on any host); VXLAN tunnels (route + neighbour + FDB naming the peer node) and BGP-learned routes as
    node-to-node lines."""
    peers = peers if peers is not None else nodes
    by_ip = {n.ip: n for n in peers}
    routes: dict[str, list[str]] = {}
    pairs: list[Line] = []
    seen: set[tuple[str, str]] = set()
    for n in nodes:
        v = Snapshot(ns=names.node_ns(lab.name, n.name), label=n.name)
        try:
            routes[n.name] = []
            for other in peers:
                if other.name == n.name:
                    continue
                r = v.match_route(str(other.pod_cidr.network_address + 1))
                if r is None or r.dst.prefixlen < other.pod_cidr.prefixlen:
                    routes[n.name].append(f"(no route to {other.pod_cidr})")
                    continue
                routes[n.name].append(r.text())
                link = v.links.get(r.dev)
                peer, line = None, None
                if link and link.kind == "vxlan":
                    neigh = v.neigh(r.dev, r.gateway or "")
                    fdb = v.vtep(r.dev, neigh.mac) if neigh else None
                    peer = by_ip.get(fdb.dst) if fdb and fdb.dst else None
                    if peer:
                        line = Line(dev_id(n.name, r.dev), dev_id(peer.name, r.dev),
                                    f"VXLAN VNI {link.vni}, UDP {link.vxlan_port}\n{n.ip} ⇄ {peer.ip}", "tunnel")
                elif r.proto in ("bird", "bgp") and r.gateway in by_ip:
                    peer = by_ip[r.gateway]
                    line = Line(dev_id(n.name, names.NODE_UPLINK), dev_id(peer.name, names.NODE_UPLINK),
                                "iBGP AS 64512", "bgp")
                key = tuple(sorted((n.name, peer.name))) if peer else None
                if line and key not in seen:
                    seen.add(key)  # type: ignore[arg-type]
                    pairs.append(line)
        finally:
            v.close()
    return routes, pairs


def to_graphviz(model: GraphModel):
    try:
        import graphviz
    except ImportError:
        raise MissingDependencyError("the graphviz Python package is missing; `pip install graphviz` "
                                     "(and `apt-get install graphviz` for dot)", obj="graphviz") from None
    g = graphviz.Digraph("podlab", graph_attr=dict(label=model.title, labelloc="t", fontname="Helvetica",
                                                   rankdir="TB", compound="true", nodesep="0.3"),
                         node_attr=dict(fontname="Helvetica", fontsize="10"),
                         edge_attr=dict(fontname="Helvetica", fontsize="9", arrowhead="none"))
    for group, label in model.groups.items():
        with g.subgraph(name=f"cluster_{group}") as c:
            c.attr(label=label, style="rounded", color="#666666")
            for b in model.boxes:
                if b.group == group:
                    c.node(b.id, b.label, **STYLE.get(b.kind, {}))
    for b in model.boxes:
        if b.group is None:
            g.node(b.id, b.label, **STYLE.get(b.kind, {}))
    for ln in model.lines:
        extra = dict(arrowhead="normal") if ln.directed else {}
        g.edge(ln.a, ln.b, ln.label, **LINE_STYLE.get(ln.kind, {}), **extra)
    return g


def to_dot(model: GraphModel) -> str:
    return to_graphviz(model).source


def render(model: GraphModel, fmt: str) -> bytes:
    """svg or png bytes (runs dot)."""
    import shutil
    if shutil.which("dot") is None:
        raise MissingDependencyError("Graphviz's dot is missing; install it with `apt-get install graphviz`",
                                     obj="dot")
    try:
        return to_graphviz(model).pipe(format=fmt)
    except Exception as e:  # graphviz.ExecutableNotFound / CalledProcessError
        raise ToolError(f"dot could not render {fmt}: {e}", obj="dot") from None


def _mid(id_: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9]", "_", id_)


def _mlabel(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("\n", "<br/>") + '"'


def to_mermaid(model: GraphModel) -> str:
    shapes = {"underlay": ("[(", ")]"), "bridge": ("([", "])"), "vxlan": ("{{", "}}"), "pod": ("(", ")"),
              "uplink": ("[", "]"), "routes": (">", "]")}
    out = ["---", f"title: {model.title}", "---", "flowchart TB"]

    def box_line(b, indent: str) -> str:
        o, c = shapes.get(b.kind, ("[", "]"))
        return f"{indent}{_mid(b.id)}{o}{_mlabel(b.label)}{c}"

    for group, label in model.groups.items():
        out.append(f"  subgraph {_mid('group/' + group)}[{_mlabel(label)}]")
        out += [box_line(b, "    ") for b in model.boxes if b.group == group]
        out.append("  end")
    out += [box_line(b, "  ") for b in model.boxes if b.group is None]
    for ln in model.lines:
        arrow = {"cable": "---", "internal": "-.-"}.get(ln.kind, "-.->" if ln.directed else "-.-")
        if ln.kind == "cable" and ln.directed:
            arrow = "-->"
        label = f"|{_mlabel(ln.label)}|" if ln.label else ""
        out.append(f"  {_mid(ln.a)} {arrow}{label} {_mid(ln.b)}")
    return "\n".join(out) + "\n"


def output_format(target: str) -> str:
    """The format of a bare format name (json, dot, mmd, ...) or of a file name's extension (``-w lab.svg``)."""
    if target in FORMATS:
        return target
    ext = target.rsplit(".", 1)[-1].lower() if "." in target else ""
    if ext == "mermaid":
        ext = "mmd"
    if ext == "gv":
        ext = "dot"
    if ext not in FORMATS:
        raise ToolError(f"cannot tell the format of {target!r}; use a name ending in .svg, .png, .dot or .mmd, "
                        "or name the format with -o", obj=target)
    return ext
