"""The semantics of NetworkPolicy as a calculator: may this connection be opened, and which rules decide it?

A connection from ``src`` to ``dst`` on ``port``/``protocol`` is allowed when the source's egress allows it and
the destination's ingress allows it (both are checked; an allow on one side never overrides a deny on the other).
For one side, the *subject* pod (the source for egress, the destination for ingress):

- it is isolated for that direction when at least one policy of its namespace selects it (``podSelector``) and
  lists the direction in ``policyTypes``; a pod that no such policy selects is open;
- an isolated pod allows the connection when any rule of any of those policies admits it (policies are a union,
  rules are a union): the rule's peers (none = anyone) and ports (none = any) both match;
- a peer with only ``podSelector`` means pods of the *policy's* namespace; with only ``namespaceSelector`` any pod
  of the selected namespaces; with both, pods matching both (AND); an ``ipBlock`` matches the other side's IP,
  pods included, less its ``except`` ranges;
- a port matches on protocol, then on its number, range (``endPort`` inclusive), or *name*: a named port is
  resolved on the pod that serves the connection (the destination, for egress and ingress alike) from its
  containers' ports, with the same protocol; a destination that is not a pod never matches a named port.

Traffic between a pod and its own node is always allowed (Kubernetes documents it so; kubelet probes pass a
default deny); other hosts (remote nodes, the external host) are plain IPs, matched only by ``ipBlock``. Namespaces
carry the ``kubernetes.io/metadata.name`` label whether or not their object sets it, as the API server ensures.
``evaluate`` returns a ``Verdict`` that names the policies and rules behind the answer (the culprits a failed
check reports); ``table`` computes a whole truth table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping, Union

from emulator.netpol.model import (EGRESS, INGRESS, NAMESPACE_NAME_LABEL, Labels, NetworkPolicy, Peer, PolicyPort,
                                   Rule)
from emulator.netpol.truthtable import TruthTable


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    labels: Labels = ()
    ip: str | None = None
    node: str = ""
    ports: tuple[tuple[str, int, str], ...] = ()  # named container ports: (name, number, protocol)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @cached_property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def named_port(self, name: str, protocol: str) -> int | None:
        for n, number, proto in self.ports:
            if n == name and proto == protocol:
                return number
        return None


@dataclass(frozen=True)
class Host:
    """A non-pod end of a connection: a node (``node`` set) or any other address."""

    ip: str
    node: str = ""

    @property
    def ref(self) -> str:
        return f"node/{self.node}" if self.node else self.ip


Endpoint = Union[PodInfo, Host]


@dataclass(frozen=True)
class Decision:
    """One side of a connection: the policies isolating the subject pod, and the rules that admit the peer."""

    direction: str
    subject: str  # the pod whose policies apply
    isolating: tuple[str, ...] = ()  # "ns/name" of the policies selecting it for this direction
    allowed_by: tuple[str, ...] = ()  # "ns/name ingress[0]" of the rules admitting the connection
    exempt: str = ""  # why no policy applies although the pod is isolated (its own node)

    @property
    def allowed(self) -> bool:
        return bool(self.exempt) or not self.isolating or bool(self.allowed_by)

    def text(self) -> str:
        if self.exempt:
            return f"{self.direction.lower()} of {self.subject}: {self.exempt}"
        if not self.isolating:
            return f"{self.direction.lower()} of {self.subject}: not isolated (no policy selects it)"
        if self.allowed_by:
            return f"{self.direction.lower()} of {self.subject}: allowed by {', '.join(self.allowed_by)}"
        return (f"{self.direction.lower()} of {self.subject}: isolated by {', '.join(self.isolating)} and no rule "
                "admits it")


@dataclass(frozen=True)
class Verdict:
    egress: Decision | None = None
    ingress: Decision | None = None

    @property
    def allowed(self) -> bool:
        return all(d is None or d.allowed for d in (self.egress, self.ingress))

    def deciding(self) -> list[Decision]:
        """The sides that deny (when denied) or that apply a policy (when allowed)."""
        sides = [d for d in (self.egress, self.ingress) if d is not None]
        if not self.allowed:
            return [d for d in sides if not d.allowed]
        return [d for d in sides if d.isolating]

    def text(self) -> str:
        parts = [d.text() for d in self.deciding()]
        return "; ".join(parts) or "no policy applies"


@dataclass
class Cluster:
    """The engine's view of a cluster: pods, namespace labels, policies."""

    pods: list[PodInfo]
    namespaces: Mapping[str, Labels] = field(default_factory=dict)
    policies: list[NetworkPolicy] = field(default_factory=list)

    def ns_labels(self, ns: str) -> dict[str, str]:
        return {**dict(self.namespaces.get(ns, ())), NAMESPACE_NAME_LABEL: ns}

    def pod(self, ref: str) -> PodInfo:
        for p in self.pods:
            if p.ref == ref:
                return p
        raise KeyError(ref)

    def selecting(self, pod: PodInfo, direction: str) -> list[NetworkPolicy]:
        return [p for p in self.policies if p.affects(direction) and selects(p, pod)]


def selects(policy: NetworkPolicy, pod: PodInfo) -> bool:
    return pod.namespace == policy.namespace and policy.pod_selector.matches(pod.label_map)


def peer_matches(peer: Peer, policy_ns: str, other: Endpoint, cluster: Cluster) -> bool:
    if peer.ip_block is not None:
        ip = other.ip
        return ip is not None and peer.ip_block.contains(ip)
    if not isinstance(other, PodInfo):
        return False
    if peer.namespace_selector is None:
        if other.namespace != policy_ns:
            return False
    elif not peer.namespace_selector.matches(cluster.ns_labels(other.namespace)):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(other.label_map)


def port_matches(pp: PolicyPort, port: int, protocol: str, server: Endpoint) -> bool:
    if pp.protocol != protocol:
        return False
    if pp.port is None:
        return True
    if isinstance(pp.port, str):
        return isinstance(server, PodInfo) and server.named_port(pp.port, protocol) == port
    return pp.port <= port <= (pp.end_port if pp.end_port is not None else pp.port)


def rule_matches(rule: Rule, policy_ns: str, other: Endpoint, port: int, protocol: str, server: Endpoint,
                 cluster: Cluster) -> bool:
    return (not rule.peers or any(peer_matches(p, policy_ns, other, cluster) for p in rule.peers)) and (
        not rule.ports or any(port_matches(pp, port, protocol, server) for pp in rule.ports))


def decide(direction: str, subject: PodInfo, other: Endpoint, port: int, protocol: str, server: Endpoint,
           cluster: Cluster) -> Decision:
    policies = cluster.selecting(subject, direction)
    if isinstance(other, Host) and other.node and other.node == subject.node:
        return Decision(direction, subject.ref, tuple(p.ref for p in policies),
                        exempt="traffic with the pod's own node is always allowed")
    allowed = tuple(f"{p.ref} {direction.lower()}[{i}]" for p in policies for i, r in enumerate(p.rules(direction))
                    if rule_matches(r, p.namespace, other, port, protocol, server, cluster))
    return Decision(direction, subject.ref, tuple(p.ref for p in policies), allowed)


def evaluate(cluster: Cluster, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> Verdict:
    egress = decide(EGRESS, src, dst, port, protocol, dst, cluster) if isinstance(src, PodInfo) else None
    ingress = decide(INGRESS, dst, src, port, protocol, dst, cluster) if isinstance(dst, PodInfo) else None
    return Verdict(egress, ingress)


def table(cluster: Cluster, port: int, protocol: str = "TCP", pods: Iterable[PodInfo] | None = None) -> TruthTable:
    """The expected truth table over ``pods`` (default: every pod), rows from, columns to."""
    items = list(pods if pods is not None else cluster.pods)
    refs = [p.ref for p in items]
    t = TruthTable(refs, refs)
    for s in items:
        for d in items:
            t.set(s.ref, d.ref, evaluate(cluster, s, d, port, protocol).allowed)
    return t
