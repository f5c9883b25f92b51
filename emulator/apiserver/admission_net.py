"""Admission of Services, Deployments and NetworkPolicies (see ``admission`` for the principles).

A Service is checked by podlab's Service parser (the one ``podlab apply`` and topologies use), refused where
podlab does not emulate it (a LoadBalancer or ExternalName type, an IPv6 or dual-stack family), then admitted
as the registry admits every Service: its ClusterIP and NodePorts are allocated (or checked against the others)
under the registry's lock, and written into the client's object with the real defaults. A Deployment is checked
by the same parser (its template too) and stored as sent, with the defaults the real server adds; its pods are
the controller-manager's job. A NetworkPolicy is validated here (selectors, ports, ipBlocks) and stored; it is
enforced elsewhere.
"""
from __future__ import annotations

import ipaddress

from emulator.apiserver import views
from emulator.apiserver.admission import (Ctx, clean_meta, from_manifest_error, labels_ok, name_of, namespace_of)
from emulator.apiserver.status import ApiError, invalid, unsupported
from emulator.errors import ManifestError
from emulator.services import alloc, registry
from emulator.services.parse import ServiceParser

FAMILY_POLICIES = ("SingleStack",)
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def service(ctx: Ctx, obj: dict, ns: str, old: dict | None) -> dict:
    name = name_of("Service", obj)
    namespace_of(obj, ns, ctx.store, creating=old is None)
    labels_ok("Service", name, obj["metadata"])
    spec = dict(obj.get("spec") or {})
    stype = spec.get("type", "ClusterIP")
    if stype in ("LoadBalancer", "ExternalName"):
        raise unsupported("Service", name, "spec.type", stype, "no cloud load balancer and no external DNS in a lab; "
                          "use NodePort, which is what a LoadBalancer builds on")
    for fam in spec.get("ipFamilies") or []:
        if fam != "IPv4":
            raise unsupported("Service", name, "spec.ipFamilies", fam, "podlab's pod network is IPv4 only")
    if spec.get("ipFamilyPolicy", "SingleStack") not in FAMILY_POLICIES:
        raise unsupported("Service", name, "spec.ipFamilyPolicy", spec["ipFamilyPolicy"],
                          "podlab's pod network is IPv4 only: use SingleStack")
    if old is not None and not spec.get("clusterIP"):
        spec["clusterIP"] = (old.get("spec") or {}).get("clusterIP")
    check = {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": name, "namespace": ns, **({"labels": obj["metadata"]["labels"]}
                                                             if obj["metadata"].get("labels") else {})},
             "spec": {k: v for k, v in spec.items() if k not in ("clusterIPs", "ipFamilies", "ipFamilyPolicy",
                                                                 "internalTrafficPolicy")}}
    if check["spec"].get("clusterIP") is None:
        check["spec"].pop("clusterIP", None)
    try:
        parsed = ServiceParser("<api>", ManifestError, ctx.service_cidr).service(check, "")
    except ManifestError as e:
        raise from_manifest_error("Service", name, e) from None
    try:  # the caller holds registry.locked(store, "services") until the object is stored
        admitted = registry.admit(parsed, [s for s in ctx.store.list("services")], ctx.service_cidr)
    except alloc.AllocationError as e:
        raise invalid("Service", name, [("spec", "FieldValueInvalid", f"Invalid value: {e}")]) from None
    want = admitted.manifest()["spec"]
    ports = []
    for p, q in zip(spec.get("ports") or [], want["ports"]):
        ports.append({**p, "protocol": q["protocol"], "port": q["port"], "targetPort": p.get("targetPort", q["port"]),
                      **({"nodePort": q["nodePort"]} if q.get("nodePort") else {})})
    spec.update({k: want[k] for k in ("type", "sessionAffinity", "internalTrafficPolicy", "ipFamilies",
                                      "ipFamilyPolicy") if k in want})
    spec["ports"] = ports
    if want.get("clusterIP"):
        spec["clusterIP"], spec["clusterIPs"] = want["clusterIP"], [want["clusterIP"]]
    for k in ("externalTrafficPolicy", "sessionAffinityConfig"):
        if k in want:
            spec[k] = want[k]
    obj["spec"] = spec
    obj["status"] = {"loadBalancer": {}}
    return clean_meta(obj, old)


def deployment(ctx: Ctx, obj: dict, ns: str, old: dict | None) -> dict:
    name = name_of("Deployment", obj)
    namespace_of(obj, ns, ctx.store, creating=old is None)
    labels_ok("Deployment", name, obj["metadata"])
    spec = dict(obj.get("spec") or {})
    spec.setdefault("replicas", 1)
    tmpl = spec.get("template") or {}
    tspec = {k: v for k, v in (tmpl.get("spec") or {}).items() if k not in ("tolerations",)}
    check = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
             "spec": {"replicas": spec["replicas"], "selector": spec.get("selector"),
                      "template": {"metadata": {k: v for k, v in (tmpl.get("metadata") or {}).items()
                                                if k in ("labels", "annotations")}, "spec": tspec}}}
    try:
        ServiceParser("<api>", ManifestError, ctx.service_cidr).deployment(check, "")
    except ManifestError as e:
        raise from_manifest_error("Deployment", name, e) from None
    if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
        raise invalid("Deployment", name, [("spec.selector", "FieldValueInvalid", f"Invalid value: "
                                            f"{spec.get('selector')}: field is immutable")])
    tmpl = dict(spec.get("template") or {})
    if old is not None and _template(old) == _template(obj):
        tmpl = old["spec"]["template"]  # unchanged but for defaults: keep it as stored (same pod-template-hash)
    else:
        tmpl["spec"] = views.default_pod_spec(tmpl.get("spec") or {})
    spec["template"] = tmpl
    strategy = dict(spec.get("strategy") or {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
    spec["strategy"] = strategy
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    obj["spec"] = spec
    obj.pop("status", None)
    return clean_meta(obj, old)


def _template(dep: dict) -> dict:
    t = dict((dep.get("spec") or {}).get("template") or {})
    t["spec"] = views.default_pod_spec(t.get("spec") or {})
    t["metadata"] = {k: v for k, v in (t.get("metadata") or {}).items() if k != "creationTimestamp"}
    return t


def _selector(name: str, sel: object, field: str) -> None:
    if sel is None:
        return
    if not isinstance(sel, dict):
        raise invalid("NetworkPolicy", name, [(field, "FieldValueInvalid", "Invalid value: must be a label selector")])
    from emulator.topology.validate import Validator
    try:
        Validator("<api>", ManifestError).labels(sel.get("matchLabels"), f"{field}.matchLabels")
    except ManifestError as e:
        raise from_manifest_error("NetworkPolicy", name, e) from None
    for i, ex in enumerate(sel.get("matchExpressions") or []):
        at = f"{field}.matchExpressions[{i}]"
        op, values = ex.get("operator"), ex.get("values") or []
        if op not in OPERATORS:
            raise invalid("NetworkPolicy", name, [(f"{at}.operator", "FieldValueNotSupported",
                                                   f'Unsupported value: "{op}": supported values: "In", "NotIn", '
                                                   '"Exists", "DoesNotExist"')])
        if op in ("In", "NotIn") and not values:
            raise invalid("NetworkPolicy", name, [(f"{at}.values", "FieldValueRequired", "Required value: must be "
                                                   "specified when `operator` is 'In' or 'NotIn'")])
        if op in ("Exists", "DoesNotExist") and values:
            raise invalid("NetworkPolicy", name, [(f"{at}.values", "FieldValueForbidden", "Forbidden: may not be "
                                                   "specified when `operator` is 'Exists' or 'DoesNotExist'")])


def _peers(name: str, peers: object, field: str) -> None:
    for i, peer in enumerate(peers or []):
        at = f"{field}[{i}]"
        if not isinstance(peer, dict) or not peer:
            raise invalid("NetworkPolicy", name, [(at, "FieldValueRequired", "Required value: must specify a "
                                                   "peer")])
        block = peer.get("ipBlock")
        if block is not None:
            if set(peer) != {"ipBlock"}:
                raise invalid("NetworkPolicy", name, [(at, "FieldValueForbidden", "Forbidden: may not specify "
                                                       "more than 1 peer type")])
            try:
                cidr = ipaddress.ip_network(block.get("cidr", ""), strict=False)
            except ValueError:
                raise invalid("NetworkPolicy", name, [(f"{at}.ipBlock.cidr", "FieldValueInvalid",
                                                       f'Invalid value: "{block.get("cidr")}": must be a valid CIDR'
                                                       )]) from None
            if cidr.version != 4:
                raise unsupported("NetworkPolicy", name, f"{at}.ipBlock.cidr", block["cidr"],
                                  "podlab's pod network is IPv4 only")
            for j, ex in enumerate(block.get("except") or []):
                try:
                    sub = ipaddress.ip_network(ex, strict=False)
                except ValueError:
                    sub = None
                if sub is None or sub.version != 4 or not sub.subnet_of(cidr) or sub == cidr:
                    raise invalid("NetworkPolicy", name, [(f"{at}.ipBlock.except[{j}]", "FieldValueInvalid",
                                                           f'Invalid value: "{ex}": must be a strict subset of '
                                                           f'`cidr`')])
        _selector(name, peer.get("podSelector"), f"{at}.podSelector")
        _selector(name, peer.get("namespaceSelector"), f"{at}.namespaceSelector")


def _ports(name: str, ports: object, field: str) -> None:
    for i, p in enumerate(ports or []):
        at = f"{field}[{i}]"
        proto = p.get("protocol", "TCP")
        if proto not in ("TCP", "UDP", "SCTP"):
            raise invalid("NetworkPolicy", name, [(f"{at}.protocol", "FieldValueNotSupported",
                                                   f'Unsupported value: "{proto}": supported values: "SCTP", "TCP", '
                                                   '"UDP"')])
        p["protocol"] = proto
        port, end = p.get("port"), p.get("endPort")
        if isinstance(port, int) and not 1 <= port <= 65535:
            raise invalid("NetworkPolicy", name, [(f"{at}.port", "FieldValueInvalid",
                                                   f"Invalid value: {port}: must be between 1 and 65535, inclusive")])
        if end is not None:
            if not isinstance(port, int):
                raise invalid("NetworkPolicy", name, [(f"{at}.endPort", "FieldValueRequired", "Required value: "
                                                       "may not be specified when `port` is a named port or unset")])
            if not isinstance(end, int) or end < port or end > 65535:
                raise invalid("NetworkPolicy", name, [(f"{at}.endPort", "FieldValueInvalid", f"Invalid value: "
                                                       f"{end}: must be greater than or equal to `port`")])


def networkpolicy(ctx: Ctx, obj: dict, ns: str, old: dict | None) -> dict:
    name = name_of("NetworkPolicy", obj, label=False)
    namespace_of(obj, ns, ctx.store, creating=old is None)
    labels_ok("NetworkPolicy", name, obj["metadata"])
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ApiError(422, "Invalid", f'NetworkPolicy "{name}" is invalid: spec: Required value',
                       {"name": name, "kind": "NetworkPolicy"})
    spec.setdefault("podSelector", {})
    _selector(name, spec["podSelector"], "spec.podSelector")
    for key, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(key) or []):
            _peers(name, rule.get(peers), f"spec.{key}[{i}].{peers}")
            _ports(name, rule.get("ports"), f"spec.{key}[{i}].ports")
    types = spec.get("policyTypes")
    if types is None:
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    else:
        for i, t in enumerate(types):
            if t not in ("Ingress", "Egress"):
                raise invalid("NetworkPolicy", name, [(f"spec.policyTypes[{i}]", "FieldValueNotSupported",
                                                       f'Unsupported value: "{t}": supported values: "Egress", '
                                                       '"Ingress"')])
    return clean_meta(obj, old)
