"""NetworkPolicies from a topology file, an applied manifest or the store: validated as the API server validates.

The rules are the API server's (``ValidateNetworkPolicy`` and the label-selector validation of apimachinery),
each turned into the ``Validator``'s error with the same field path the API server reports
(``spec.ingress[0].ports[1].endPort``, ``spec.egress[0].to[0].ipBlock.except[0]``; under ``networkPolicies[2].``
in a topology file), the offending value and the fix:

- a selector's ``matchLabels`` keys and values are label keys and values; a ``matchExpressions`` entry has a
  label key, an operator among In/NotIn/Exists/DoesNotExist, values for In/NotIn and none for the others;
- a peer names at least one of ``podSelector``/``namespaceSelector``/``ipBlock``, and ``ipBlock`` alone;
- ``ipBlock.cidr`` is a CIDR in subnet form (``10.0.0.0/8``, not ``10.0.0.1/8``: the API server's strict CIDR
  validation), each ``except`` a strict subset of it;
- a port's protocol is TCP, UDP or SCTP (upper case); ``port`` is 1-65535 or an IANA service name (a container
  port name); ``endPort`` needs a numeric ``port`` and is at least ``port``;
- ``policyTypes`` holds at most Ingress and Egress.

Unknown keys are refused with a "did you mean" (as ``kubectl apply`` with strict field validation). Then the
defaulting: a port without a protocol is TCP, and no ``policyTypes`` means ``[Ingress]``, plus ``Egress`` when
the policy has egress rules (``egress: []`` adds nothing). Two shapes are read: the real manifest
(``apiVersion: networking.k8s.io/v1``, ``kind: NetworkPolicy``) and, in topology files, the flat form with the
spec's keys next to ``name``/``namespace``. A policy may name a namespace that does not exist: it is accepted, as
Kubernetes accepts it, and applies when the namespace appears.
"""
from __future__ import annotations

import ipaddress
import re

from emulator.errors import ManifestError, TopologyError
from emulator.netpol.model import (API_VERSION, EGRESS, INGRESS, KIND, OPERATORS, POLICY_TYPES, PROTOCOLS, IPBlock,
                                   LabelSelector, NetworkPolicy, Peer, PolicyPort, Requirement, Rule)
from emulator.topology import names
from emulator.topology.validate import Validator, did_you_mean, is_int, show, sub

TOP_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
META_KEYS = ("name", "namespace", "labels", "annotations", "uid", "creationTimestamp", "resourceVersion",
             "generation", "managedFields", "finalizers")
SPEC_KEYS = ("podSelector", "ingress", "egress", "policyTypes")
FLAT_KEYS = ("name", "namespace", "labels") + SPEC_KEYS
SELECTOR_KEYS = ("matchLabels", "matchExpressions")
REQUIREMENT_KEYS = ("key", "operator", "values")
INGRESS_KEYS = ("from", "ports")
EGRESS_KEYS = ("to", "ports")
PEER_KEYS = ("podSelector", "namespaceSelector", "ipBlock")
IPBLOCK_KEYS = ("cidr", "except")
PORT_KEYS = ("protocol", "port", "endPort")
MAX_NAME = 253
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PORT_NAME = re.compile(r"^(?!.*--)(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # IANA_SVC_NAME
_LABEL_PART = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
EXAMPLE = "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{podSelector: {}}]}]}"


def label_key_ok(key: object) -> bool:
    if not isinstance(key, str):
        return False
    prefix, _, name = key.rpartition("/")
    return bool(name) and len(name) <= 63 and bool(_LABEL_PART.match(name)) and (
        not prefix or (len(prefix) <= MAX_NAME and bool(_DNS_SUBDOMAIN.match(prefix))))


def label_value_ok(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_PART.match(value))


def is_manifest(raw: object) -> bool:
    return isinstance(raw, dict) and ("kind" in raw or "spec" in raw or "apiVersion" in raw)


class PolicyParser(Validator):
    """Checks the NetworkPolicies of one file; every failure raises the file's error class with the field path."""

    def policy(self, raw: object, at: str = "") -> NetworkPolicy:
        if is_manifest(raw):
            data = self.mapping(raw, at, TOP_KEYS, "a NetworkPolicy manifest")
            if data.get("apiVersion") != API_VERSION or data.get("kind") != KIND:
                self.fail(sub(at, "apiVersion"), f"expected apiVersion '{API_VERSION}' and kind '{KIND}', got "
                          f"{show(data.get('apiVersion'))} and {show(data.get('kind'))}",
                          f"write apiVersion: {API_VERSION}, kind: {KIND}")
            meta_at, spec_at = sub(at, "metadata"), sub(at, "spec")
            meta = self.mapping(data.get("metadata"), meta_at, META_KEYS, "metadata")
            spec = self.mapping(data.get("spec"), spec_at, SPEC_KEYS, "a NetworkPolicy spec")
            uid, created = meta.get("uid") or "", meta.get("creationTimestamp") or ""
        else:
            meta = spec = self.mapping(raw, at, FLAT_KEYS, "a network policy")
            meta_at = spec_at = at
            uid = created = ""
        name = self.policy_name(meta.get("name"), sub(meta_at, "name"))
        namespace = self.dns_name(meta.get("namespace", "default"), sub(meta_at, "namespace"), "namespace",
                                  names.MAX_OBJECT_NAME, example="default")
        labels = self.labels(meta.get("labels"), sub(meta_at, "labels"))
        selector = self.selector(spec.get("podSelector"), sub(spec_at, "podSelector")) or LabelSelector()
        ingress = self.rules(spec.get("ingress"), sub(spec_at, "ingress"), INGRESS)
        egress = self.rules(spec.get("egress"), sub(spec_at, "egress"), EGRESS)
        types = self.policy_types(spec.get("policyTypes"), sub(spec_at, "policyTypes"), egress)
        return NetworkPolicy(name=name, namespace=namespace, pod_selector=selector, ingress=ingress, egress=egress,
                             policy_types=types, labels=labels, uid=str(uid), created=str(created))

    # -- metadata ---------------------------------------------------------------------------------------------
    def policy_name(self, value: object, field: str) -> str:
        if not isinstance(value, str) or not value or len(value) > MAX_NAME or not _DNS_SUBDOMAIN.match(value):
            self.fail(field, f"network policy name {show(value)} must be a DNS subdomain: lower-case letters, "
                      f"digits, '-' and '.', starting and ending with a letter or digit, at most {MAX_NAME} "
                      "characters", "use e.g. 'default-deny-ingress'")
        return value

    # -- selectors --------------------------------------------------------------------------------------------
    def selector(self, raw: object, at: str) -> LabelSelector | None:
        """A label selector (None when absent; ``{}`` is the empty selector, which selects everything)."""
        if raw is None:
            return None
        data = self.mapping(raw, at, SELECTOR_KEYS, "a label selector")
        match_labels = self.labels(data.get("matchLabels"), sub(at, "matchLabels"))
        exprs = self.list_of(data.get("matchExpressions"), sub(at, "matchExpressions"), "matchExpressions",
                             "[{key: pod, operator: In, values: [a, b]}]")
        reqs = tuple(self.requirement(e, f"{at}.matchExpressions[{i}]") for i, e in enumerate(exprs))
        return LabelSelector(match_labels=match_labels, match_expressions=reqs)

    def requirement(self, raw: object, at: str) -> Requirement:
        data = self.mapping(raw, at, REQUIREMENT_KEYS, "a selector requirement")
        key = data.get("key")
        if not label_key_ok(key):
            self.fail(f"{at}.key", f"{show(key)} is not a valid label key",
                      "use at most 63 letters, digits, '-', '_' or '.', optionally after a DNS name and '/'")
        op = data.get("operator")
        if op not in OPERATORS:
            self.fail(f"{at}.operator", f"{show(op)} is not a valid selector operator; use one of "
                      f"{', '.join(OPERATORS)}", did_you_mean(op, OPERATORS) or f"use one of {', '.join(OPERATORS)}")
        values = self.list_of(data.get("values"), f"{at}.values", "values", "[a, b]")
        if op in ("In", "NotIn") and not values:
            self.fail(f"{at}.values", f"values must be specified when `operator` is 'In' or 'NotIn'",
                      "list at least one value, e.g. 'values: [a]', or use operator Exists")
        if op in ("Exists", "DoesNotExist") and values:
            self.fail(f"{at}.values", f"values may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                      "drop 'values', or use operator In")
        for i, v in enumerate(values):
            if not isinstance(v, str):
                self.fail(f"{at}.values[{i}]", f"value {show(v)} is not a string",
                          f'quote it: "{str(v).lower() if isinstance(v, bool) else v}"')
            if not label_value_ok(v):
                self.fail(f"{at}.values[{i}]", f"{show(v)} is not a valid label value",
                          "use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
        return Requirement(key=key, operator=op, values=tuple(values))

    # -- rules ------------------------------------------------------------------------------------------------
    def rules(self, raw: object, at: str, direction: str) -> tuple[Rule, ...]:
        entries = self.list_of(raw, at, "rules", "[{from: [{podSelector: {}}]}]" if direction == INGRESS
                               else "[{to: [{podSelector: {}}]}]")
        keys, peer_key = (INGRESS_KEYS, "from") if direction == INGRESS else (EGRESS_KEYS, "to")
        out = []
        for i, entry in enumerate(entries):
            r_at = f"{at}[{i}]"
            data = self.mapping(entry, r_at, keys, f"an {direction.lower()} rule")
            ports = self.list_of(data.get("ports"), f"{r_at}.ports", "ports", "[{port: 80, protocol: TCP}]")
            peers = self.list_of(data.get(peer_key), f"{r_at}.{peer_key}", peer_key, "[{podSelector: {}}]")
            out.append(Rule(ports=tuple(self.port(p, f"{r_at}.ports[{j}]") for j, p in enumerate(ports)),
                            peers=tuple(self.peer(p, f"{r_at}.{peer_key}[{j}]") for j, p in enumerate(peers))))
        return tuple(out)

    def peer(self, raw: object, at: str) -> Peer:
        data = self.mapping(raw, at, PEER_KEYS, "a peer")
        given = [k for k in PEER_KEYS if data.get(k) is not None]
        if not given:
            self.fail(at, "must specify a peer (podSelector, namespaceSelector or ipBlock)",
                      "give e.g. '{podSelector: {matchLabels: {app: web}}}', or drop the empty entry")
        if "ipBlock" in given and len(given) > 1:
            self.fail(at, f"may not specify both ipBlock and another peer ({', '.join(given)} given)",
                      "put the ipBlock in a peer of its own (a separate '-' entry: peers are ORed)")
        if "ipBlock" in given:
            return Peer(ip_block=self.ip_block(data["ipBlock"], f"{at}.ipBlock"))
        return Peer(pod_selector=self.selector(data.get("podSelector"), f"{at}.podSelector"),
                    namespace_selector=self.selector(data.get("namespaceSelector"), f"{at}.namespaceSelector"))

    def cidr(self, value: object, at: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        if not isinstance(value, str) or "/" not in value:
            self.fail(at, f"{show(value)} is not a valid CIDR (address/prefix length)", "write e.g. 10.0.0.0/8")
        try:
            return ipaddress.ip_network(value, strict=True)
        except ValueError:
            pass  # host bits set, or not an address at all: told apart below, each with its own message
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            self.fail(at, f"{show(value)} is not a valid CIDR (address/prefix length)", "write e.g. 10.0.0.0/8")
        self.fail(at, f"{show(value)} is not in subnet form: bits are set after the /{net.prefixlen} prefix",
                  f"write the network, {net}")

    def ip_block(self, raw: object, at: str) -> IPBlock:
        data = self.mapping(raw, at, IPBLOCK_KEYS, "an ipBlock")
        if data.get("cidr") in (None, ""):
            self.fail(f"{at}.cidr", "cidr is required in an ipBlock", "give e.g. 'cidr: 10.0.0.0/8'")
        net = self.cidr(data["cidr"], f"{at}.cidr")
        excepts = self.list_of(data.get("except"), f"{at}.except", "except", "[10.1.0.0/16]")
        for i, e in enumerate(excepts):
            ex = self.cidr(e, f"{at}.except[{i}]")
            if ex.version != net.version or not ex.subnet_of(net) or ex.prefixlen <= net.prefixlen:  # type: ignore
                self.fail(f"{at}.except[{i}]", f"{e} must be a strict subset of `cidr` {data['cidr']}",
                          f"give a range inside {net} with a prefix longer than /{net.prefixlen}, or widen cidr")
        return IPBlock(cidr=data["cidr"], except_=tuple(excepts))

    def port(self, raw: object, at: str) -> PolicyPort:
        data = self.mapping(raw, at, PORT_KEYS, "a port")
        protocol = data.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            upper = str(protocol).upper()
            self.fail(f"{at}.protocol", f"Unsupported value: {show(protocol)}: supported values: "
                      f"{', '.join(PROTOCOLS)}", f"write '{upper}' (upper case)" if upper in PROTOCOLS
                      else f"use one of {', '.join(PROTOCOLS)}")
        port, end = data.get("port"), data.get("endPort")
        if port is None:
            if end is not None:
                self.fail(f"{at}.endPort", "endPort may not be specified when `port` is not specified",
                          "give the first port of the range in 'port'")
        elif is_int(port):
            if not 1 <= port <= 65535:
                self.fail(f"{at}.port", f"{port} must be between 1 and 65535, inclusive", "give a port from 1 to 65535")
            if end is not None:
                if not is_int(end) or not 1 <= end <= 65535:
                    self.fail(f"{at}.endPort", f"{show(end)} must be an integer between 1 and 65535, inclusive",
                              "give the last port of the range")
                if end < port:
                    self.fail(f"{at}.endPort", f"{end} must be greater than or equal to `port` ({port})",
                              f"give an endPort of at least {port}, or drop it for the single port")
        elif isinstance(port, str):
            if end is not None:
                self.fail(f"{at}.endPort", f"endPort may not be specified when `port` is non-numeric ({show(port)})",
                          "give port as a number, or drop endPort")
            if port.isdigit():
                self.fail(f"{at}.port", f"{show(port)} is a quoted number, which reads as a port *name*",
                          f"write it unquoted: port: {port}")
            if len(port) > 15 or not _PORT_NAME.match(port):
                self.fail(f"{at}.port", f"{show(port)} is not a valid port name (an IANA service name: at most 15 "
                          "lower-case letters, digits and single '-', with at least one letter)",
                          "give the name of a container port (e.g. serve-80-tcp) or a number")
        else:
            self.fail(f"{at}.port", f"{show(port)} is neither a port number nor a port name",
                      "give e.g. 'port: 80' or 'port: http'")
        return PolicyPort(protocol=protocol, port=port, end_port=end)

    def policy_types(self, raw: object, at: str, egress: tuple[Rule, ...]) -> tuple[str, ...]:
        types = self.list_of(raw, at, "policyTypes", "[Ingress, Egress]")
        if len(types) > 2:
            self.fail(at, f"may not specify more than two policyTypes ({len(types)} given)",
                      "list Ingress, Egress or both, once each")
        for i, t in enumerate(types):
            if t not in POLICY_TYPES:
                self.fail(f"{at}[{i}]", f"Unsupported value: {show(t)}: supported values: Ingress, Egress",
                          did_you_mean(t, POLICY_TYPES) or "use Ingress or Egress")
        if not types:  # the API server's defaulting (pkg/apis/networking/v1/defaults.go)
            return (INGRESS, EGRESS) if egress else (INGRESS,)
        return tuple(dict.fromkeys(types))


def parse_manifest(obj: dict, source: str = "<api>") -> NetworkPolicy:
    """One applied document (raises ManifestError with the field path)."""
    return PolicyParser(source, ManifestError).policy(obj)


def from_store(obj: dict) -> NetworkPolicy:
    """A stored (already validated and defaulted) manifest back as a value."""
    return PolicyParser("<store>", ManifestError).policy(obj)


def from_topology(raw: object, source: str, namespaces: tuple[str, ...] | None = None) -> tuple[NetworkPolicy, ...]:
    """The topology's ``networkPolicies:`` list; policies are unique by namespace/name, each in one of the lab's
    ``namespaces`` (when given: a policy of a namespace the lab does not have is refused, as the API server
    refuses it)."""
    v = PolicyParser(source, TopologyError)
    entries = v.list_of(raw, "networkPolicies", "networkPolicies", EXAMPLE)
    out: list[NetworkPolicy] = []
    seen: dict[tuple[str, str], int] = {}
    for i, e in enumerate(entries):
        p = v.policy(e, f"networkPolicies[{i}]")
        if p.key in seen:
            field = f"networkPolicies[{i}]." + ("metadata.name" if is_manifest(e) else "name")
            v.fail(field, f"network policy {p.ref} is already defined by networkPolicies[{seen[p.key]}]",
                   "give each policy of a namespace its own name")
        seen[p.key] = i
        if namespaces is not None and p.namespace not in namespaces:
            field = f"networkPolicies[{i}]." + ("metadata.namespace" if is_manifest(e) else "namespace")
            v.fail(field, f"namespace '{p.namespace}' does not exist in the lab (namespaces: {', '.join(namespaces)})",
                   f"declare it in the file's 'namespaces:' section, e.g. 'namespaces: [{{name: {p.namespace}}}]'")
        out.append(p)
    return tuple(out)
