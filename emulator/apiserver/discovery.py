"""What kubectl asks before anything else: ``/version``, API discovery (legacy and aggregated) and the minimal
``/openapi/v3`` that makes ``kubectl apply``/``create`` send ``fieldValidation=Strict`` instead of failing to
download a schema. All of it is computed once from ``resources.RESOURCES``.

The OpenAPI documents only declare, per kind, the PATCH operation with its ``fieldValidation`` parameter: that
is what kubectl's query-parameter verifier looks for (see the research note), and it then leaves validation to
this server. The server validates against the real schemas itself (``schema``).
"""
from __future__ import annotations

import hashlib
import json
import platform

from emulator.apiserver.resources import GROUPS, RESOURCES, Resource, in_group_version

MAJOR, MINOR, PATCH = 1, 37, 0
GIT_VERSION = f"v{MAJOR}.{MINOR}.{PATCH}"
CORE_ACCEPT = "as=APIGroupDiscoveryList"


def version() -> dict:
    return {"major": str(MAJOR), "minor": str(MINOR), "emulationMajor": str(MAJOR), "emulationMinor": str(MINOR),
            "minCompatibilityMajor": str(MAJOR), "minCompatibilityMinor": str(MINOR - 1),
            "gitVersion": GIT_VERSION, "gitCommit": "podlab", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": f"python{platform.python_version()}",
            "compiler": "podlab", "platform": f"linux/{_arch()}"}


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def api_versions(address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def _group(name: str) -> dict:
    versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in GROUPS[name]]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def api_groups() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in GROUPS if g]}


def resource_list(gv: str) -> dict | None:
    items = in_group_version(gv)
    if not items:
        return None
    out = []
    for r in items:
        entry = {"name": r.name, "singularName": r.singular_name, "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": list(r.verbs), "storageVersionHash": _hash(r.qualified)[:12]}
        if r.short:
            entry["shortNames"] = list(r.short)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for sub, kind, verbs in r.subresources:
            out.append({"name": f"{r.name}/{sub}", "singularName": "", "namespaced": r.namespaced,
                        "kind": kind, "verbs": list(verbs), **({"group": "autoscaling", "version": "v1"}
                                                               if kind == "Scale" else {})})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _aggregated_resource(r: Resource) -> dict:
    out = {"resource": r.name, "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
           "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular_name,
           "verbs": list(r.verbs)}
    if r.short:
        out["shortNames"] = list(r.short)
    if r.categories:
        out["categories"] = list(r.categories)
    if r.subresources:
        out["subresources"] = [{"subresource": sub, "responseKind": (
            {"group": "autoscaling", "version": "v1", "kind": kind} if kind == "Scale"
            else {"group": r.group, "version": r.version, "kind": kind}), "verbs": list(verbs)}
            for sub, kind, verbs in r.subresources]
    return out


def aggregated(core: bool) -> dict:
    """``/api`` (core) or ``/apis`` as an ``APIGroupDiscoveryList`` (apidiscovery.k8s.io/v2)."""
    items = []
    for g, versions in GROUPS.items():
        if (g == "") != core:
            continue
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": [
            {"version": v, "freshness": "Current",
             "resources": [_aggregated_resource(r) for r in in_group_version(f"{g}/{v}" if g else v)]}
            for v in versions]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest().upper()


def openapi_path(gv: str) -> str:
    return f"api/{gv}" if "/" not in gv else f"apis/{gv}"


def openapi_root() -> dict:
    gvs = sorted({r.gv for r in RESOURCES})
    return {"paths": {openapi_path(gv): {"serverRelativeURL": f"/openapi/v3/{openapi_path(gv)}?hash="
                                         f"{_hash(json.dumps(openapi_group(gv)))[:32]}"} for gv in gvs}}


def openapi_group(gv: str) -> dict | None:
    items = in_group_version(gv)
    if not items:
        return None
    paths = {}
    param = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
              "description": "Strict, Warn or Ignore: what to do with fields the schema does not know"}]
    for r in items:
        base = f"/{openapi_path(gv)}" + ("/namespaces/{namespace}" if r.namespaced else "")
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        op = {"x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk, "parameters": param,
              "responses": {"200": {"description": "OK"}}}
        paths[f"{base}/{r.name}/{{name}}"] = {"patch": op, "put": {**op, "x-kubernetes-action": "put"}}
        paths[f"{base}/{r.name}"] = {"post": {**op, "x-kubernetes-action": "post"}}
    return {"openapi": "3.0.0", "info": {"title": "podlab", "version": GIT_VERSION}, "paths": paths}
