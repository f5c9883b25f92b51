"""Where a tool acts: a pod, a node or the underlay, and one interface there.

Grammar (the same for ``capture``, ``link`` and the Mininet CLI's verbs)::

    web-1            pod web-1, its eth0            pod/web-1:eth0   the same, spelled out
    x/a              pod a of namespace x           pod/x/a:veth     (pods outside ``default``: NAMESPACE/POD)
    web-1:veth       the node-side veth of web-1    (vethXXXXXXXX in its node: the pod's "cable end" on cni0)
    node/node-1      node-1's eth0 (its uplink)     node-1:cni0      a node's cni0 / flannel.1 / vethXXXXXXXX
    underlay         the underlay bridge lan0       underlay:node-2  node-2's port on lan0

A bare name is a pod if the lab has such a pod, else a node (the topology forbids a pod and a node sharing a
name). Resolution checks the interface against the namespace's real links and, when it is missing, says which
interfaces exist. ``peer`` gives the other end of a veth cable (pod eth0 ↔ node veth, node eth0 ↔ underlay
port), which is how shaping a link "in both directions" is done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from emulator.lab.api import Lab
from emulator.tools.errors import TargetError
from emulator.tools.kstate import NsView
from emulator.topology import names

Kind = Literal["pod", "node", "underlay"]
DEFAULT_IFACE = {"pod": names.POD_IFNAME, "node": names.NODE_UPLINK, "underlay": names.UNDERLAY_BRIDGE}
#: kubectl kinds that are no tool target: ``svc/web`` is an error, not pod web of a namespace "svc"
OTHER_KINDS = ("svc", "service", "services", "deploy", "deployment", "deployments", "ep", "endpoints", "ns",
               "namespace", "namespaces")
KIND_PREFIXES = {"pod": "pod", "pods": "pod", "po": "pod", "node": "node", "nodes": "node", "no": "node"}


@dataclass(frozen=True)
class Point:
    kind: Kind
    owner: str  # pod or node name, or "underlay"
    ns: str
    iface: str
    lab: str = ""

    @property
    def label(self) -> str:
        return f"{self.owner}:{self.iface}"

    @property
    def description(self) -> str:
        what = {"pod": f"pod {self.owner}", "node": f"node {self.owner}", "underlay": "the underlay"}[self.kind]
        return f"{self.iface} of {what} (lab {self.lab}, netns {self.ns})"


def parse(text: str) -> tuple[Kind | None, str, str | None]:
    """(kind or None if the bare name must be looked up, owner, interface or None) — pure."""
    if not text or text.startswith(":"):
        raise TargetError(f"empty target {text!r}; write e.g. web-1, node/node-1:cni0 or underlay:lan0", obj=text)
    head, _, iface = text.partition(":")
    kind: Kind | None = None
    prefix, slash, name = head.partition("/")
    if slash:
        if prefix in KIND_PREFIXES:
            kind, head = KIND_PREFIXES[prefix], name  # type: ignore[assignment]
        elif prefix and name and "/" not in name and prefix not in OTHER_KINDS:
            kind = "pod"  # NAMESPACE/POD
        else:
            raise TargetError(f"unknown target kind {prefix!r} in {text!r}; use pod/NAME, NAMESPACE/POD, "
                              "node/NAME or underlay", obj=text)
    elif head == "underlay":
        kind = "underlay"
    if not head:
        raise TargetError(f"target {text!r} names no pod or node", obj=text)
    return kind, head, iface or None


def resolve(lab: Lab, text: str, check: bool = True) -> Point:
    kind, owner, iface = parse(text)
    if kind is None:
        if lab.store.get("pods", owner) is not None:
            kind = "pod"
        elif owner in lab.record.get("nodes", []):
            kind = "node"
        else:
            raise TargetError(f"{owner!r} is neither a pod nor a node of lab {lab.name} (pods: "
                              f"{', '.join(p.ref for p in lab.pods) or 'none'}; nodes: "
                              f"{', '.join(lab.record.get('nodes', []))})", obj=owner)
    if kind == "pod" and iface in ("veth", "host"):
        pod = lab.pod(owner)
        return resolve(lab, f"node/{pod.node}:{pod_veth(lab, owner)}", check)
    if kind == "pod":
        ns = lab.pod(owner).netns
    elif kind == "node":
        if owner not in lab.record.get("nodes", []):
            raise TargetError(f"node {owner!r} not found in lab {lab.name} (nodes: "
                              f"{', '.join(lab.record.get('nodes', []))})", obj=owner)
        ns = names.node_ns(lab.name, owner)
    else:
        ns = names.underlay_ns(lab.name)
    point = Point(kind, owner, ns, iface or DEFAULT_IFACE[kind], lab.name)
    if check:
        check_iface(point)
    return point


def check_iface(point: Point) -> None:
    view = NsView(point.ns, point.owner)
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
    sandbox = (st.get("sandbox") or {}).get("id")
    if not sandbox or st.get("phase") != "Running":
        raise TargetError(f"pod {pod} has no network sandbox (phase {st.get('phase', 'unknown')})", obj=pod)
    return names.host_veth(sandbox, names.POD_IFNAME)


def peer(lab: Lab, point: Point) -> Point | None:
    """The other end of the veth cable at ``point`` (None for bridges, VXLAN devices, lo)."""
    if point.kind == "pod" and point.iface == names.POD_IFNAME:
        node = lab.pod(point.owner).node
        return Point("node", node, names.node_ns(lab.name, node), pod_veth(lab, point.owner), lab.name)
    if point.kind == "node" and point.iface == names.NODE_UPLINK:
        return Point("underlay", "underlay", names.underlay_ns(lab.name), point.owner, lab.name)
    if point.kind == "underlay" and point.iface in lab.record.get("nodes", []):
        return Point("node", point.iface, names.node_ns(lab.name, point.iface), names.NODE_UPLINK, lab.name)
    if point.kind == "node" and point.iface.startswith("veth"):
        for p in lab.pods:
            st = lab.store.get_status("pods", p.name, p.namespace) or {}
            sb = (st.get("sandbox") or {}).get("id")
            if st.get("nodeName") == point.owner and sb and names.host_veth(sb, names.POD_IFNAME) == point.iface:
                return Point("pod", p.ref, p.netns, names.POD_IFNAME, lab.name)
    return None
