"""The upstream e2e suite's model and cases (kubernetes test/e2e/network/netpol), as data.

The model: namespaces ``x``, ``y``, ``z`` with pods ``a``, ``b``, ``c`` in each (label ``pod=<name>``), every
pod serving ports 80 and 81 over TCP and UDP with container ports named ``serve-<port>-<proto>``, and one Service
per pod (``s-<ns>-<pod>``) through which the suite probes. A case is a list of steps; a step changes the cluster
(policies created, updated or deleted; pod or namespace labels added) and then probes one port/protocol and
expects a truth table, written as the suite writes it: everything allowed, then cells, rows (``ExpectAllEgress``)
or columns (``ExpectAllIngress``) set. Policies quoting pod IPs (the ipBlock cases) use ``<x/b>/32`` or
``<x/b>/4``, replaced by the pod's address (or the /4 network around it) when the case runs (``resolve``).

The cases are numbered as in the research notes (``shared/research/netpol.md``): 1-42 TCP, 43-45 UDP, 46-48 SCTP.
Each expectation is the upstream one, not something computed here, so the engine's unit tests and the lab's
integration tests check podlab against the suite.
"""
from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field

from emulator.netpol.model import NAMESPACE_NAME_LABEL
from emulator.netpol.truthtable import TruthTable

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP")
REFS = tuple(f"{ns}/{p}" for ns in NAMESPACES for p in PODS)
Op = tuple[bool, str, str]  # (allowed, from pattern, to pattern); patterns "*", "x/*", "x/a"


def port_name(port: int, protocol: str) -> str:
    return f"serve-{port}-{protocol.lower()}"


def service_name(ref: str) -> str:
    ns, pod = ref.split("/")
    return f"s-{ns}-{pod}"


def _match(pattern: str, ref: str) -> bool:
    if pattern == "*":
        return True
    ns, _, pod = pattern.partition("/")
    rns, _, rpod = ref.partition("/")
    return ns == rns and pod in ("*", rpod)


def expected(ops: tuple[Op, ...], refs: tuple[str, ...] = REFS) -> TruthTable:
    t = TruthTable.filled(list(refs), list(refs), True)
    for allowed, frm, to in ops:
        for f in refs:
            for d in refs:
                if _match(frm, f) and _match(to, d):
                    t.set(f, d, allowed)
    return t


@dataclass(frozen=True)
class Probe:
    port: int
    protocol: str
    ops: tuple[Op, ...] = ()

    def table(self, refs: tuple[str, ...] = REFS) -> TruthTable:
        return expected(self.ops, refs)


@dataclass(frozen=True)
class Step:
    put: tuple[dict, ...] = ()  # NetworkPolicy manifests created or updated
    delete: tuple[str, ...] = ()  # "ns/name" of policies deleted ("*" = every policy)
    pod_labels: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # (pod ref, labels added)
    ns_labels: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # (namespace, labels added)
    probes: tuple[Probe, ...] = ()


@dataclass(frozen=True)
class Case:
    number: int
    title: str
    steps: tuple[Step, ...]
    protocols: tuple[str, ...] = field(default=("TCP",))

    @property
    def probed_protocols(self) -> set[str]:
        return {p.protocol for s in self.steps for p in s.probes}


# -- policy builders (as the suite's GenNetworkPolicyWith... helpers: explicit policyTypes) -------------------
def sel(**labels: str) -> dict:
    return {"matchLabels": dict(labels)}


def ns_sel(name: str) -> dict:
    return {"matchLabels": {NAMESPACE_NAME_LABEL: name}}


def expr(key: str, op: str, *values: str) -> dict:
    return {"matchExpressions": [{"key": key, "operator": op, **({"values": list(values)} if values else {})}]}


def policy(name: str, pod_selector: dict | None = None, ingress: list | None = None, egress: list | None = None,
           ns: str = "x") -> dict:
    spec: dict = {"podSelector": pod_selector or {}, "policyTypes": []}
    if ingress is not None:
        spec["ingress"] = ingress
        spec["policyTypes"].append("Ingress")
    if egress is not None:
        spec["egress"] = egress
        spec["policyTypes"].append("Egress")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def tcp(port: int | str | None = None, protocol: str = "TCP") -> dict:
    return {"protocol": protocol, **({"port": port} if port is not None else {})}


A = sel(pod="a")
ALL: tuple[Op, ...] = ()
X_INGRESS = ((False, "*", "x/*"),)
COL_XA = ((False, "*", "x/a"),)
FROM_Y_ONLY = ((False, "x/*", "x/a"), (False, "z/*", "x/a"))


def _c(number: int, title: str, *steps: Step, protocols: tuple[str, ...] = ("TCP",)) -> Case:
    return Case(number, title, tuple(steps), protocols)


def _s(*probes: Probe, **kw) -> Step:
    return Step(probes=tuple(probes), **kw)


def P(port: int, *ops: Op, protocol: str = "TCP") -> Probe:  # noqa: N802 - reads like the suite's TestCase
    return Probe(port, protocol, tuple(ops))


CASES: tuple[Case, ...] = (
    _c(1, "should support a 'default-deny-ingress' policy",
       _s(P(80, *X_INGRESS), put=(policy("deny-ingress", ingress=[]),))),
    _c(2, "should support a 'default-deny-all' policy",
       _s(P(80, (False, "*", "x/*"), (False, "x/*", "*")), put=(policy("deny-all", ingress=[], egress=[]),))),
    _c(3, "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
       _s(P(80, *COL_XA, (True, "x/b", "x/a")),
          put=(policy("x-a-allows-x-b", A, ingress=[{"from": [{"podSelector": sel(pod="b")}]}]),))),
    _c(4, "should enforce policy to allow ingress traffic for a target",
       _s(P(80, (False, "*", "x/b"), (False, "*", "x/c")),
          put=(policy("deny-all", ingress=[]),
               policy("allow-all-to-a", A, ingress=[{"from": [{"podSelector": {}, "namespaceSelector": {}}]}])))),
    _c(5, "should enforce policy to allow ingress traffic from pods in all namespaces",
       _s(P(80), put=(policy("allow-from-another-ns", A, ingress=[{"from": [{"namespaceSelector": {}}]}]),))),
    _c(6, "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
       _s(P(80, *FROM_Y_ONLY), put=(policy("allow-client-a-via-ns-selector", A,
                                           ingress=[{"from": [{"namespaceSelector": ns_sel("y")}]}]),))),
    _c(7, "should enforce policy based on PodSelector with MatchExpressions",
       _s(P(80, *COL_XA, (True, "x/b", "x/a")),
          put=(policy("x-a-allows-x-b", A, ingress=[{"from": [{"podSelector": expr("pod", "In", "b")}]}]),))),
    _c(8, "should enforce policy based on NamespaceSelector with MatchExpressions",
       _s(P(80, *FROM_Y_ONLY), put=(policy("allow-ns-y-match-selector", A, ingress=[
           {"from": [{"namespaceSelector": expr(NAMESPACE_NAME_LABEL, "In", "y")}]}]),))),
    _c(9, "should enforce policy based on PodSelector or NamespaceSelector",
       _s(P(80, (False, "x/a", "x/a"), (False, "x/c", "x/a")), put=(policy("allow-ns-y-z-match-selector", A, ingress=[
           {"from": [{"namespaceSelector": expr(NAMESPACE_NAME_LABEL, "NotIn", "x")},
                     {"podSelector": sel(pod="b")}]}]),))),
    _c(10, "should enforce policy based on PodSelector and NamespaceSelector",
       _s(P(80, *COL_XA, (True, "y/b", "x/a"), (True, "z/b", "x/a")), put=(policy("allow-ns-y-z-pod-b", A, ingress=[
           {"from": [{"namespaceSelector": expr(NAMESPACE_NAME_LABEL, "NotIn", "x"),
                      "podSelector": sel(pod="b")}]}]),))),
    _c(11, "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
       _s(P(80, (False, "x/*", "x/a"), (False, "y/a", "x/a"), (False, "z/a", "x/a")),
          put=(policy("allow-ns-y-z-pod-b-c", A, ingress=[
              {"from": [{"namespaceSelector": expr(NAMESPACE_NAME_LABEL, "NotIn", "x"),
                         "podSelector": expr("pod", "In", "b", "c")}]}]),))),
    _c(12, "should enforce policy based on any PodSelectors",
       _s(P(80, *COL_XA, (True, "x/b", "x/a"), (True, "x/c", "x/a")), put=(policy("allow-x-b-c", A, ingress=[
           {"from": [{"podSelector": sel(pod="b")}, {"podSelector": sel(pod="c")}]}]),))),
    _c(13, "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector "
           "and NamespaceSelector",
       _s(P(80, *COL_XA, (True, "y/a", "x/a")), put=(policy("allow-ns-y-pod-a", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y"), "podSelector": sel(pod="a")}]}]),))),
    _c(14, "should enforce policy based on Ports",
       _s(P(81, *FROM_Y_ONLY), put=(policy("allow-ingress-on-port-81-ns-x", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y")}], "ports": [tcp(81)]}]),))),
    _c(15, "should enforce multiple, stacked policies with overlapping podSelectors",
       _s(P(81, *FROM_Y_ONLY), P(80, *COL_XA), put=(policy("allow-ingress-port-81-ns-x", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y")}], "ports": [tcp(81)]}]),)),
       _s(P(80, *FROM_Y_ONLY), put=(policy("allow-ingress-port-80-ns-x", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y")}], "ports": [tcp(80)]}]),))),
    _c(16, "should support allow-all policy",
       _s(P(80), P(81), put=(policy("allow-all", ingress=[{}]),))),
    _c(17, "should allow ingress access on one named port",
       _s(P(81), P(80, *X_INGRESS), put=(policy("allow-all", ingress=[{"ports": [tcp("serve-81-tcp")]}]),))),
    _c(18, "should allow ingress access from namespace on one named port",
       _s(P(80, *FROM_Y_ONLY), P(81, *COL_XA), put=(policy("allow-client-in-ns-y", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y")}], "ports": [tcp("serve-80-tcp")]}]),))),
    _c(19, "should allow egress access on one named port",
       _s(P(80), P(81, (False, "x/*", "*")), put=(policy("allow-egress", egress=[
           {"ports": [tcp("serve-80-tcp")]}]),))),
    _c(20, "should enforce updated policy",
       _s(P(81), put=(policy("allow-all-mutate-to-deny-all", ingress=[{}]),)),
       _s(P(81, *X_INGRESS), put=(policy("allow-all-mutate-to-deny-all", ingress=[]),))),
    _c(21, "should allow ingress access from updated namespace",
       _s(P(80, *COL_XA), put=(policy("allow-client-a-via-ns-selector", A, ingress=[
           {"from": [{"namespaceSelector": sel(ns2="updated")}]}]),)),
       _s(P(80, *COL_XA, (True, "y/*", "x/a")), ns_labels=(("y", (("ns2", "updated"),)),))),
    _c(22, "should allow ingress access from updated pod",
       _s(P(80, *COL_XA), put=(policy("allow-client-a-via-pod-selector", A, ingress=[
           {"from": [{"podSelector": sel(pod="b", pod2="updated")}]}]),)),
       _s(P(80, *COL_XA, (True, "x/b", "x/a")), pod_labels=(("x/b", (("pod2", "updated"),)),))),
    _c(23, "should deny ingress from pods on other namespaces",
       _s(P(80, (False, "y/*", "x/*"), (False, "z/*", "x/*")),
          put=(policy("deny-empty-policy", ingress=[{"from": [{"podSelector": {}}]}]),))),
    _c(24, "should deny ingress access to updated pod",
       _s(P(80), put=(policy("deny-ingress-via-label-selector", sel(target="isolated"), ingress=[]),)),
       _s(P(80, *COL_XA), pod_labels=(("x/a", (("target", "isolated"),)),))),
    _c(25, "should deny egress from pods based on PodSelector",
       _s(P(80, (False, "x/a", "*")), put=(policy("deny-egress-pod-a", A, egress=[]),))),
    _c(26, "should deny egress from all pods in a namespace",
       _s(P(80, (False, "x/*", "*")), put=(policy("deny-egress-ns-x", egress=[]),))),
    _c(27, "should work with Ingress, Egress specified together",
       _s(P(80, *COL_XA, (True, "x/b", "x/a")),
          P(81, *COL_XA, (False, "x/a", "*"), (True, "x/b", "x/a")),
          put=(policy("allow-client-a-via-pod-selector", A, ingress=[{"from": [{"podSelector": sel(pod="b")}]}],
                      egress=[{"ports": [tcp(80)]}]),))),
    _c(28, "should support denying of egress traffic on the client side (even if the server explicitly allows this "
           "traffic)",
       _s(P(80, (False, "x/a", "*"), (True, "x/a", "y/a"), (False, "*", "y/a"), (True, "x/a", "y/a"),
            (False, "*", "y/b")),
          put=(policy("allow-to-ns-y-pod-a", A, egress=[
              {"to": [{"namespaceSelector": ns_sel("y"), "podSelector": sel(pod="a")}]}]),
               policy("allow-from-xa-on-ya", A, ns="y", ingress=[
                   {"from": [{"namespaceSelector": ns_sel("x"), "podSelector": sel(pod="a")}]}]),
               policy("allow-from-xa-on-yb", sel(pod="b"), ns="y", ingress=[
                   {"from": [{"namespaceSelector": ns_sel("x"), "podSelector": sel(pod="a")}]}])))),
    _c(29, "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector "
           "and NamespaceSelector",
       _s(P(80, (False, "x/a", "*"), (True, "x/a", "y/a")), put=(policy("allow-to-ns-y-pod-a", A, egress=[
           {"to": [{"namespaceSelector": ns_sel("y"), "podSelector": sel(pod="a")}]}]),))),
    _c(30, "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
       _s(P(80), P(80, *COL_XA, protocol="UDP"), put=(policy("allow-ingress-by-proto", A, ingress=[
           {"ports": [{"protocol": "TCP"}]}]),)), protocols=("TCP", "UDP")),
    _c(31, "should enforce multiple ingress policies with ingress allow-all policy taking precedence",
       _s(P(81, *X_INGRESS), put=(policy("allow-ingress-port-80", ingress=[{"ports": [tcp(80)]}]),)),
       _s(P(81), put=(policy("allow-ingress", ingress=[{}]),))),
    _c(32, "should enforce multiple egress policies with egress allow-all policy taking precedence",
       _s(P(81, (False, "x/*", "*")), put=(policy("allow-egress-port-80", egress=[{"ports": [tcp(80)]}]),)),
       _s(P(81), put=(policy("allow-egress", egress=[{}]),))),
    _c(33, "should stop enforcing policies after they are deleted",
       _s(P(80, (False, "*", "x/*"), (False, "x/*", "*")), put=(policy("deny-all", ingress=[], egress=[]),)),
       _s(P(80), delete=("*",))),
    _c(34, "should allow egress access to server in CIDR block",
       _s(P(80, (False, "x/a", "*"), (True, "x/a", "y/b")), put=(policy("allow-client-a-via-cidr-egress-rule", A,
                                                                     egress=[{"to": [{"ipBlock": {
                                                                         "cidr": "<y/b>/32"}}]}]),))),
    _c(35, "should enforce except clause while egress access to server in CIDR block",
       _s(P(80, (False, "x/a", "x/b")), put=(policy("deny-client-a-via-except-cidr-egress-rule", A, egress=[
           {"to": [{"ipBlock": {"cidr": "<x/b>/4", "except": ["<x/b>/32"]}}]}]),))),
    _c(36, "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
       _s(P(80, (False, "x/a", "x/b")), put=(policy("a-and-b-egress", A, egress=[
           {"to": [{"ipBlock": {"cidr": "<x/b>/4", "except": ["<x/b>/32"]}}]}]),)),
       _s(P(80, (False, "x/a", "*"), (True, "x/a", "x/b")), put=(policy("a-and-b-egress", A, egress=[
           {"to": [{"ipBlock": {"cidr": "<x/b>/32"}}]}]),))),
    _c(37, "should enforce ingress and egress policies controlled independently",
       _s(P(80), put=(policy("allow-egress-on-pod-a", A, egress=[{}]),)),
       _s(P(80, *COL_XA), put=(policy("deny-ingress-on-pod-a", A, ingress=[]),))),
    _c(38, "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
       _s(P(81, *X_INGRESS), put=(policy("deny-ingress", ingress=[]), policy(
           "allow-only-sctp-ingress-on-port-81", A, ingress=[{"ports": [tcp(81, "SCTP")]}])))),
    _c(39, "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't "
           "support SCTP",
       _s(P(81, *COL_XA), put=(policy("allow-only-sctp-ingress-on-port-80", A, ingress=[
           {"ports": [tcp(80, "SCTP")]}]),))),
    _c(40, "should not allow access by TCP when a policy specifies only UDP",
       _s(P(81, *COL_XA), put=(policy("allow-only-udp-ingress-on-port-81", A, ingress=[
           {"ports": [tcp(81, "UDP")]}]),))),
    _c(41, "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
       _s(P(80, *FROM_Y_ONLY), put=(policy("allow-client-a-via-ns-selector-for-immutable-ns-label", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y")}]}]),))),
    _c(42, "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
       _s(P(80, (False, "x/a", "y/*")), put=(policy("allow-ns-y-match-selector-for-immutable-ns-label", A, egress=[
           {"to": [{"namespaceSelector": expr(NAMESPACE_NAME_LABEL, "NotIn", "y")}]}]),))),
    _c(43, "[UDP] should support a 'default-deny-ingress' policy",
       _s(P(80, *X_INGRESS, protocol="UDP"), put=(policy("deny-all", ingress=[]),)), protocols=("UDP",)),
    _c(44, "[UDP] should enforce policy based on Ports",
       _s(P(81, *FROM_Y_ONLY, protocol="UDP"), put=(policy("allow-ingress-on-port-81-ns-x", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y")}], "ports": [tcp(81, "UDP")]}]),)), protocols=("UDP",)),
    _c(45, "[UDP] should enforce policy to allow traffic only from a pod in a different namespace based on "
           "PodSelector and NamespaceSelector",
       _s(P(80, *COL_XA, (True, "y/a", "x/a"), protocol="UDP"), put=(policy("allow-ns-y-pod-a-via-namespace-pod-"
                                                                             "selector", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y"), "podSelector": sel(pod="a")}]}]),)), protocols=("UDP",)),
    _c(46, "[SCTP] should support a 'default-deny-ingress' policy",
       _s(P(80, *X_INGRESS, protocol="SCTP"), put=(policy("deny-all", ingress=[]),)), protocols=("SCTP",)),
    _c(47, "[SCTP] should enforce policy based on Ports",
       _s(P(81, *FROM_Y_ONLY, protocol="SCTP"), put=(policy("allow-ingress-on-port-81-ns-x", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y")}], "ports": [tcp(81, "SCTP")]}]),)), protocols=("SCTP",)),
    _c(48, "[SCTP] should enforce policy to allow traffic only from a pod in a different namespace based on "
           "PodSelector and NamespaceSelector",
       _s(P(80, *COL_XA, (True, "y/a", "x/a"), protocol="SCTP"), put=(policy("allow-ns-y-pod-a-via-namespace-pod-"
                                                                              "selector", A, ingress=[
           {"from": [{"namespaceSelector": ns_sel("y"), "podSelector": sel(pod="a")}]}]),)), protocols=("SCTP",)),
)

_PLACEHOLDER = re.compile(r"<([a-z0-9-]+/[a-z0-9-]+)>/(\d+)")


def resolve(manifest: dict, ips: dict[str, str]) -> dict:
    """``manifest`` with ``<ns/pod>/N`` replaced by the pod's address as a /N network (``<x/b>/4`` → 0.0.0.0/4)."""
    def sub(value: object) -> object:
        if isinstance(value, str):
            return _PLACEHOLDER.sub(lambda m: str(ipaddress.ip_network(f"{ips[m.group(1)]}/{m.group(2)}",
                                                                       strict=False)), value)
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        return value
    return sub(copy.deepcopy(manifest))  # type: ignore[return-value]


def case(number: int) -> Case:
    return next(c for c in CASES if c.number == number)


def container_ports(protocols: tuple[str, ...] = PROTOCOLS) -> tuple[tuple[str, int, str], ...]:
    """The model pod's named ports: ``serve-80-tcp`` ... (one container per port and protocol upstream)."""
    return tuple((port_name(port, proto), port, proto) for port in PORTS for proto in protocols)


def apply_step(cluster, step: Step, ips: dict[str, str]) -> None:
    """Change an engine ``Cluster`` as ``step`` changes the real one (policies, pod and namespace labels)."""
    from dataclasses import replace
    from emulator.netpol.parse import parse_manifest
    if "*" in step.delete:
        cluster.policies = []
    else:
        cluster.policies = [p for p in cluster.policies if p.ref not in step.delete]
    for m in step.put:
        pol = parse_manifest(resolve(m, ips), "<upstream>")
        cluster.policies = [p for p in cluster.policies if p.key != pol.key] + [pol]
    for ref, labels in step.pod_labels:
        cluster.pods = [replace(p, labels=tuple({**p.label_map, **dict(labels)}.items())) if p.ref == ref else p
                        for p in cluster.pods]
    for ns, labels in step.ns_labels:
        cluster.namespaces = {**cluster.namespaces, ns: tuple({**dict(cluster.namespaces.get(ns, ())),
                                                               **dict(labels)}.items())}


def model_cluster(protocols: tuple[str, ...] = ("TCP", "UDP", "SCTP"), nodes: int = 3):
    """The 9-pod model as an engine ``Cluster`` with addresses a lab would give (pod ``a`` of every namespace on
    node-1, ``b`` on node-2, ...), and the pod → IP map."""
    from emulator.netpol.engine import Cluster, PodInfo
    pods, ips = [], {}
    for i, ns in enumerate(NAMESPACES):
        for j, name in enumerate(PODS):
            node = j % nodes + 1
            ip = f"10.244.{node}.{i + 2 + 3 * (j // nodes)}"
            ips[f"{ns}/{name}"] = ip
            pods.append(PodInfo(ns, name, (("pod", name),), ip, f"node-{node}", container_ports(protocols)))
    return Cluster(pods, {ns: () for ns in NAMESPACES}, []), ips


def lab_pod_name(namespace: str, pod: str) -> str:
    """The lab's reference of the model's pod ``pod`` of ``namespace``: ``x/a`` (pod names are unique per
    namespace, as in a cluster, so the model's names are the lab's)."""
    return f"{namespace}/{pod}"


def topology(name: str = "netpol", routing: str = "vxlan", proxy_mode: str = "iptables", nodes: int = 3) -> str:
    """A topology file for the model: three nodes, pods a/b/c of each namespace on node-1/2/3 (so every namespace
    spans the nodes and each node holds one pod of each namespace), agnhost ``porter`` serving 80 and 81 over TCP
    and UDP on the named ports ``serve-<port>-<proto>``, one Service per pod, and NetworkPolicy enforcement on."""
    lines = [f"version: 1", f"name: {name}", f"routing: {routing}", "nodes:"]
    lines += [f"  - name: node-{i + 1}" for i in range(nodes)]
    lines += [f"kubeProxy: {{mode: {proxy_mode}}}", "networkPolicies: []",
              "namespaces: [" + ", ".join(f"{{name: {ns}}}" for ns in NAMESPACES) + "]", "pods:"]
    ports = ", ".join(f"{{containerPort: {port}, protocol: {proto}, name: {port_name(port, proto)}}}"
                      for port in PORTS for proto in PROTOCOLS)
    env = ", ".join(f"{{name: SERVE_{'UDP_' if proto == 'UDP' else ''}PORT_{port}, value: foo}}"
                    for port in PORTS for proto in PROTOCOLS)
    for ns in NAMESPACES:
        for j, pod in enumerate(PODS):
            lines += [f"  - name: {pod}", f"    namespace: {ns}", f"    node: node-{j % nodes + 1}",
                      f"    labels: {{pod: {pod}}}", "    containers:",
                      f"      - {{name: cont, image: 'registry.k8s.io/e2e-test-images/agnhost:2.53', args: [porter], "
                      f"env: [{env}], ports: [{ports}]}}"]
    lines.append("services:")
    for ns in NAMESPACES:
        for pod in PODS:
            sports = ", ".join(f"{{name: {port_name(port, proto)}, port: {port}, targetPort: {port}, protocol: {proto}}}"
                               for port in PORTS for proto in PROTOCOLS)
            lines += [f"  - name: {service_name(f'{ns}/{pod}')}", f"    namespace: {ns}", f"    selector: {{pod: {pod}}}",
                      f"    ports: [{sports}]"]
    return "\n".join(lines) + "\n"
