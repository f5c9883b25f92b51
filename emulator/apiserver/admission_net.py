"""Admission of Services, Deployments and NetworkPolicies (see ``admission`` for the principles).

A Service is checked by podlab's Service parser (the one ``podlab apply`` and topologies use), refused where
podlab does not emulate it (a LoadBalancer or ExternalName type, an IPv6 or dual-stack family), then admitted
as the registry admits every Service: its ClusterIP and NodePorts are allocated (or checked against the others)
under the registry's lock, and written into the client's object with the real defaults. A Deployment is checked
by the same parser (its template too) and stored as sent, with the defaults the real server adds; its pods are
the controller-manager's job. A NetworkPolicy is validated and defaulted by the netpol package (the API server's
own rules) and stored; netpol enforces it.
"""
from __future__ import annotations

from emulator.apiserver import views
from emulator.apiserver.admission import (Ctx, clean_meta, from_manifest_error, labels_ok, name_of, namespace_of)
from emulator.apiserver.status import ApiError, invalid, unsupported
from emulator.errors import ManifestError
from emulator.services import alloc, registry
from emulator.services.parse import ServiceParser

FAMILY_POLICIES = ("SingleStack",)


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
    views.default_deployment_spec(spec)
    obj["spec"] = spec
    obj.pop("status", None)
    return clean_meta(obj, old)


def _template(dep: dict) -> dict:
    t = dict((dep.get("spec") or {}).get("template") or {})
    t["spec"] = views.default_pod_spec(t.get("spec") or {})
    t["metadata"] = {k: v for k, v in (t.get("metadata") or {}).items() if k != "creationTimestamp"}
    return t


def networkpolicy(ctx: Ctx, obj: dict, ns: str, old: dict | None) -> dict:
    """Validated and defaulted by the netpol package (the rules and field paths of the real API server), with
    an IPv6 ipBlock refused by name (podlab's pod network is IPv4 only)."""
    from emulator.netpol.parse import parse_manifest
    name = name_of("NetworkPolicy", obj, label=False)
    namespace_of(obj, ns, ctx.store, creating=old is None)
    labels_ok("NetworkPolicy", name, obj["metadata"])
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ApiError(422, "Invalid", f'NetworkPolicy "{name}" is invalid: spec: Required value',
                       {"name": name, "kind": "NetworkPolicy"})
    for key, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(key) or []):
            for j, peer in enumerate((rule or {}).get(peers) or []):
                cidr = ((peer or {}).get("ipBlock") or {}).get("cidr")
                if isinstance(cidr, str) and ":" in cidr:
                    raise unsupported("NetworkPolicy", name, f"spec.{key}[{i}].{peers}[{j}].ipBlock.cidr", cidr,
                                      "podlab's pod network is IPv4 only")
    check = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {k: v for k, v in obj["metadata"].items() if k in ("name", "namespace", "labels")},
             "spec": spec}
    try:
        parsed = parse_manifest(check)
    except ManifestError as e:
        raise from_manifest_error("NetworkPolicy", name, e) from None
    obj["spec"] = {**spec, **parsed.manifest()["spec"]}  # defaults: policyTypes, port protocols
    return clean_meta(obj, old)
