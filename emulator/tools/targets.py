"""Where a tool acts: one interface of a pod, a node, the underlay or the external host.

The grammar is podlab's one target grammar (``emulator.lab.targets``: ``web-1``, ``pod/web-1``, ``node-1``,
``node/node-1``, ``underlay``, ``external``, each with an optional ``:IFACE``); this module adds what an interface
means to ``capture``, ``link`` and the Mininet CLI::

    web-1            pod web-1, its eth0            pod/web-1:eth0   the same, spelled out
    x/a              pod a of namespace x           pod/x/a:veth     (pods outside ``default``: NAMESPACE/POD)
    web-1:veth       the node-side veth of web-1    (vethXXXXXXXX in its node: the pod's "cable end" on cni0)
    node/node-1      node-1's eth0 (its uplink)     node-1:cni0      a node's cni0 / flannel.1 / vethXXXXXXXX
    underlay         the underlay bridge lan0       underlay:node-2  node-2's port on lan0
    external         the external host's eth0

Resolution checks the interface against the namespace's real links and, when it is missing, says which
interfaces exist. ``peer`` gives the other end of a veth cable (pod eth0 ↔ node veth, node eth0 ↔ underlay
port), which is how shaping a link "in both directions" is done.
"""
from __future__ import annotations

from dataclasses import dataclass

from emulator.errors import TargetError
from emulator.lab import targets as grammar
from emulator.lab.api import Lab
from emulator.lab.targets import Kind
from emulator.netlink.observe import Snapshot
from emulator.cni.spec import pod_host_veth
from emulator.topology import names

DEFAULT_IFACE = {"pod": names.POD_IFNAME, "node": names.NODE_UPLINK, "underlay": names.UNDERLAY_BRIDGE,
                 "external": "eth0", "container": names.POD_IFNAME}


@dataclass(frozen=True)
class Point:
    kind: Kind
    owner: str  # pod or node name, or "underlay" / "external"
    ns: str
    iface: str
    lab: str = ""

    @property
    def label(self) -> str:
        return f"{self.owner}:{self.iface}"

    @property
    def description(self) -> str:
        what = {"pod": f"pod {self.owner}", "node": f"node {self.owner}", "underlay": "the underlay",
                "external": "the external host",
                "container": f"container {self.owner.replace('.', '/', 1)}"}[self.kind]
        return f"{self.iface} of {what} (lab {self.lab}, netns {self.ns})"


def resolve(lab: Lab, text: str, check: bool = True) -> Point:
    place = grammar.resolve(lab, text)
    if place.kind == "pod" and place.iface in ("veth", "host"):
        pod = lab.pod(place.name)
        return resolve(lab, f"node/{pod.node}:{pod_veth(lab, place.name)}", check)
    point = Point(place.kind, place.name, place.ns, place.iface or DEFAULT_IFACE[place.kind], lab.name)
    if check:
        check_iface(point)
    return point


def check_iface(point: Point) -> None:
    view = Snapshot(ns=point.ns, label=point.owner)
    try:
        have = view.links
    except Exception as e:  # namespace gone (pod not running) or unreadable
        raise TargetError(f"cannot read the interfaces of {point.owner} (netns {point.ns}): {e}",
                          obj=point.label) from None
    finally:
        view.close()
    if point.iface not in have:
        raise TargetError(f"{point.owner} has no interface {point.iface!r}; it has: {', '.join(sorted(have))}",
                          obj=point.label)


def pod_veth(lab: Lab, pod: str) -> str:
    """The node-side veth of a pod: named after its sandbox, as the CNI bridge plugin names it."""
    view = lab.pod(pod)
    st = lab.store.get_status("pods", view.name, view.namespace) or {}
    sandbox = st.get("sandbox") or {}
    if not sandbox.get("id") or st.get("phase") != "Running":
        raise TargetError(f"pod {pod} has no network sandbox (phase {st.get('phase', 'unknown')})", obj=pod)
    return pod_host_veth(sandbox, names.POD_IFNAME)


def peer(lab: Lab, point: Point) -> Point | None:
    """The other end of the veth cable at ``point`` (None for bridges, VXLAN devices, lo)."""
    if point.kind == "pod" and point.iface == names.POD_IFNAME:
        node = lab.pod(point.owner).node
        return Point("node", node, names.node_ns(lab.name, node), pod_veth(lab, point.owner), lab.name)
    if point.kind == "container" and point.iface == names.POD_IFNAME:  # Docker: veth<7 hex> on the node's docker0
        node, _, name = point.owner.partition(".")
        return Point("node", node, names.node_ns(lab.name, node), names.docker_veth(node, name), lab.name)
    if point.kind == "node" and point.iface == names.NODE_UPLINK:
        return Point("underlay", "underlay", names.underlay_ns(lab.name), point.owner, lab.name)
    if point.kind == "underlay" and point.iface in lab.record.get("nodes", []):
        return Point("node", point.iface, names.node_ns(lab.name, point.iface), names.NODE_UPLINK, lab.name)
    if point.kind == "node" and point.iface.startswith("veth"):
        for key in lab.store.names(grammar.CONTAINERS):
            node, _, name = key.partition(".")
            if node == point.owner and names.docker_veth(node, name) == point.iface:
                return Point("container", key, names.container_ns(lab.name, node, name), names.POD_IFNAME, lab.name)
        for p in lab.pods:
            st = lab.store.get_status("pods", p.name, p.namespace) or {}
            sb = st.get("sandbox") or {}
            if st.get("nodeName") == point.owner and sb.get("id") and pod_host_veth(sb) == point.iface:
                return Point("pod", p.ref, p.netns, names.POD_IFNAME, lab.name)
    return None
