"""Where a verb acts: podlab's one target grammar, for every verb that takes a place.

    web-1           pod web-1                        pod/web-1     the same, spelled out (po/, pods/ too)
    node-1          node node-1                      node/node-1   the same (no/, nodes/ too)
    underlay        the underlay LAN (bridge lan0)   external      the lab's "internet" host, if it has one
    TARGET:IFACE    one interface there (web-1:eth0, node-1:cni0, underlay:node-2), where a verb means one
    container/node-3/web   Docker container web on node node-3 (container/web when one node has a "web");
                    a bare name that is neither a pod nor a node is a container's, if just one node has it

A bare name is a pod if the lab has such a pod, else a node: the topology refuses a pod and a node of one name
(both would be namespace ``<lab>-<name>``) and reserves ``underlay`` and ``external`` (``names.RESERVED``), so a
bare name never means two things. ``parse`` is pure; ``resolve`` looks the name up in the lab's store and record
and gives the namespace. Users: ``exec`` and ``Lab.target_ns``, ``trace`` (which also takes IPs), ``capture`` and
``link`` (``tools.targets`` adds the interface rules: defaults, ``:veth``, the other end of a cable), the
Mininet CLI and the testing layer. It sits in the lab layer, below every one of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from emulator.errors import NotFoundError, PodNotFoundError, TargetError
from emulator.netlink import netns
from emulator.state.store import Store
from emulator.topology import names

Kind = Literal["pod", "node", "underlay", "external", "container"]
KINDS: tuple[Kind, ...] = ("pod", "node", "underlay", "external", "container")
PREFIXES: dict[str, Kind] = {"pod": "pod", "pods": "pod", "po": "pod", "node": "node", "nodes": "node",
                             "no": "node", "container": "container", "containers": "container"}
CONTAINERS = "containers"  # the store's kind for Docker containers (``emulator.docker``), keyed <node>.<name>
SINGLETONS: tuple[Kind, ...] = ("underlay", "external")
EXAMPLES = "web-1, pod/web-1, node-1, node/node-1, underlay or external"


class LabState(Protocol):
    """What resolution reads of a lab (``emulator.lab.api.Lab`` is one)."""

    name: str
    store: Store

    @property
    def record(self) -> dict: ...


@dataclass(frozen=True)
class Target:
    """A parsed target: ``kind`` None for a bare name (a pod, else a node), ``iface`` None when not given."""

    kind: Kind | None
    name: str
    iface: str | None = None


@dataclass(frozen=True)
class Place:
    """A resolved target: what it is, its network namespace, and the interface named (if any)."""

    kind: Kind
    name: str  # the pod's or node's name, "underlay" / "external", or a container's <node>.<name>
    ns: str
    iface: str | None = None
    lab: str = ""


def parse(text: str, *, iface: bool = True) -> Target:
    """``text`` in the grammar above; ``iface=False`` where a verb acts on a namespace (exec, trace)."""
    if not text or text.startswith(":"):
        raise TargetError(f"empty target {text!r}; write e.g. {EXAMPLES}", obj=text)
    head, colon, ifname = text.partition(":")
    if colon and not iface:
        raise TargetError(f"{text!r} names an interface; this verb acts on a whole namespace: write {head!r}",
                          obj=text)
    if colon and not ifname:
        raise TargetError(f"target {text!r} ends in ':' without an interface; write e.g. {head}:eth0", obj=text)
    prefix, slash, name = head.partition("/")
    kind: Kind | None = None
    if slash:
        if prefix not in PREFIXES:
            raise TargetError(f"unknown target kind {prefix!r} in {text!r}; use pod/NAME, node/NAME, "
                              "container/NODE/NAME, underlay or external", obj=text)
        kind, head = PREFIXES[prefix], name
        if not head:
            raise TargetError(f"target {text!r} names no {kind}", obj=text)
    elif head in SINGLETONS:
        kind = head  # type: ignore[assignment]
    return Target(kind, head, ifname or None)


def resolve(lab: LabState, target: str | Target, *, iface: bool = True) -> Place:
    """The namespace of ``target`` in ``lab``: ``NotFoundError`` (exit 4) naming what exists when it does not."""
    t = parse(target, iface=iface) if isinstance(target, str) else target
    kind, where = t.kind, f"lab {lab.name}"
    if kind in (None, "pod") and lab.store.get("pods", t.name) is not None:  # the common case: one file read
        return Place("pod", t.name, names.pod_ns(lab.name, t.name), t.iface, lab.name)
    if kind == "pod":
        raise PodNotFoundError(t.name, where)
    rec = lab.record
    nodes = list(rec.get("nodes", []))
    if kind == "container" or (kind is None and t.name not in nodes and _containers(lab, t.name)):
        key = container_key(lab, t.name)
        node, _, name = key.partition(".")
        return Place("container", key, names.container_ns(lab.name, node, name), t.iface, lab.name)
    if kind is None:
        if t.name not in nodes:
            raise TargetError(f"{t.name!r} is neither a pod nor a node of lab {lab.name} (pods: "
                              f"{', '.join(lab.store.names('pods')) or 'none'}; nodes: {', '.join(nodes) or 'none'})",
                              obj=t.name)
        kind = "node"
    if kind == "node":
        if t.name not in nodes:
            raise NotFoundError("node", t.name, where, known=nodes)
        ns = names.node_ns(lab.name, t.name)
    elif kind == "underlay":
        ns = rec.get("underlay") or names.underlay_ns(lab.name)
    else:
        ns = names.external_ns(lab.name)
        if not netns.exists(ns):
            raise TargetError(f"lab {lab.name} has no external network (a topology gets one with an 'external:' "
                              "section or Services)", obj="external")
    return Place(kind, t.name, ns, t.iface, lab.name)


def _containers(lab: LabState, name: str) -> list[str]:
    """Store keys (``<node>.<name>``) of the containers called ``name`` (or ``NODE/NAME``)."""
    node, slash, short = name.rpartition("/")
    keys = lab.store.names(CONTAINERS)
    if slash:
        return [k for k in keys if k == f"{node}.{short}"]
    return [k for k in keys if k.partition(".")[2] == name]


def container_key(lab: LabState, name: str) -> str:
    """The store key of container ``NAME`` or ``NODE/NAME``: NotFoundError (exit 4) or, for a name several nodes
    use, a TargetError asking for the node."""
    found = _containers(lab, name)
    if len(found) == 1:
        return found[0]
    known = [k.replace(".", "/", 1) for k in lab.store.names(CONTAINERS)]
    if not found:
        raise NotFoundError("container", name, f"lab {lab.name}", known=known)
    raise TargetError(f"container name {name!r} is used on {len(found)} nodes (Docker names are per host); write "
                      + " or ".join(f"container/{k.replace('.', '/', 1)}" for k in found), obj=name)
