"""NetworkPolicy values (``networking.k8s.io/v1``), after validation and defaulting, and their store manifests.

Everything is frozen and already defaulted as the API server defaults (``parse``): ``policy_types`` is never
empty (``[Ingress]``, plus ``Egress`` when egress rules exist), every port has its protocol (TCP when none was
given). "Missing" and "empty" collapse where Kubernetes gives them one meaning: a rule's ``from``/``to`` absent
or ``[]`` is ``peers == ()`` (any peer), its ``ports`` absent or ``[]`` is ``ports == ()`` (any port), and a
policy's ``ingress`` absent or ``[]`` is ``ingress == ()`` (no rule: the selected pods admit nothing, if Ingress
is one of its types). A peer is a pod/namespace selector pair (either may be None; both set means AND) or an
``ipBlock``. ``LabelSelector.matches`` is the one implementation of label selection (matchLabels AND every
matchExpression; the empty selector matches everything).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

Labels = tuple[tuple[str, str], ...]
API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"
INGRESS, EGRESS = "Ingress", "Egress"
POLICY_TYPES = (INGRESS, EGRESS)
PROTOCOLS = ("TCP", "UDP", "SCTP")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
#: The label the API server puts on every namespace (the upstream suite selects namespaces with it).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # one of OPERATORS
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist

    def text(self) -> str:
        if self.operator in ("Exists", "DoesNotExist"):
            return self.key if self.operator == "Exists" else f"!{self.key}"
        return f"{self.key} {self.operator.lower()} ({','.join(self.values)})"

    def manifest(self) -> dict:
        out: dict = {"key": self.key, "operator": self.operator}
        if self.values:
            out["values"] = list(self.values)
        return out


@dataclass(frozen=True)
class LabelSelector:
    match_labels: Labels = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions)

    def text(self) -> str:
        """kubectl's way of printing a selector (``pod=a,ns notin (x)``; ``<none>`` selects everything)."""
        parts = [f"{k}={v}" for k, v in self.match_labels] + [r.text() for r in self.match_expressions]
        return ",".join(parts) or "<none>"

    def manifest(self) -> dict:
        out: dict = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [r.manifest() for r in self.match_expressions]
        return out


@dataclass(frozen=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()

    @cached_property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr, strict=False)

    @cached_property
    def excepts(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(e, strict=False) for e in self.except_)

    def contains(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return addr.version == self.network.version and addr in self.network and not any(
            addr in e for e in self.excepts if e.version == addr.version)

    def manifest(self) -> dict:
        return {"cidr": self.cidr, **({"except": list(self.except_)} if self.except_ else {})}


@dataclass(frozen=True)
class Peer:
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    def text(self) -> str:
        if self.ip_block is not None:
            ex = f" except {', '.join(self.ip_block.except_)}" if self.ip_block.except_ else ""
            return f"ipBlock {self.ip_block.cidr}{ex}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces {self.namespace_selector.text()}")
        if self.pod_selector is not None:
            parts.append(f"pods {self.pod_selector.text()}")
        return " AND ".join(parts)

    def manifest(self) -> dict:
        out: dict = {}
        if self.pod_selector is not None:
            out["podSelector"] = self.pod_selector.manifest()
        if self.namespace_selector is not None:
            out["namespaceSelector"] = self.namespace_selector.manifest()
        if self.ip_block is not None:
            out["ipBlock"] = self.ip_block.manifest()
        return out


@dataclass(frozen=True)
class PolicyPort:
    protocol: str = "TCP"
    port: int | str | None = None  # a number, a container port name, or None (every port of the protocol)
    end_port: int | None = None

    @property
    def named(self) -> bool:
        return isinstance(self.port, str)

    def text(self) -> str:
        if self.port is None:
            return f"<any>/{self.protocol}"
        rng = f"-{self.end_port}" if self.end_port is not None else ""
        return f"{self.port}{rng}/{self.protocol}"

    def manifest(self) -> dict:
        out: dict = {"protocol": self.protocol}
        if self.port is not None:
            out["port"] = self.port
        if self.end_port is not None:
            out["endPort"] = self.end_port
        return out


@dataclass(frozen=True)
class Rule:
    ports: tuple[PolicyPort, ...] = ()  # () = every port and protocol
    peers: tuple[Peer, ...] = ()  # () = every peer

    def manifest(self, direction: str) -> dict:
        out: dict = {}
        if self.ports:
            out["ports"] = [p.manifest() for p in self.ports]
        if self.peers:
            out["from" if direction == INGRESS else "to"] = [p.manifest() for p in self.peers]
        return out


@dataclass(frozen=True)
class NetworkPolicy:
    name: str
    namespace: str = "default"
    pod_selector: LabelSelector = LabelSelector()
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    policy_types: tuple[str, ...] = (INGRESS,)
    labels: Labels = ()
    uid: str = field(default="", compare=False)
    created: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def affects(self, direction: str) -> bool:
        return direction in self.policy_types

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == INGRESS else self.egress

    def manifest(self) -> dict:
        """The object as ``kubectl get netpol -o json`` shows it after the API server defaulted it."""
        spec: dict = {"podSelector": self.pod_selector.manifest()}
        if self.ingress:
            spec["ingress"] = [r.manifest(INGRESS) for r in self.ingress]
        if self.egress:
            spec["egress"] = [r.manifest(EGRESS) for r in self.egress]
        spec["policyTypes"] = list(self.policy_types)
        meta: dict = {"name": self.name, "namespace": self.namespace}
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.uid:
            meta["uid"] = self.uid
        if self.created:
            meta["creationTimestamp"] = self.created
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}
