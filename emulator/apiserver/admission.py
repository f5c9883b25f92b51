"""What the API server checks, fills in and refuses before an object reaches the store (pods, namespaces, nodes,
endpoints; Services, Deployments and NetworkPolicies are in ``admission_net``).

The checks are podlab's own, the ones ``podlab apply`` and the topology loader use (``lab.podspec``,
``services.parse``), so the CLI and the API accept and refuse the same things; their errors (file, field, fix)
become a 422 ``Invalid`` Status naming the field. A field Kubernetes knows but podlab does not emulate
(``hostNetwork``, ``volumes``, a LoadBalancer Service, IPv6) is refused by name (``Unsupported value``), never
accepted and ignored. What the real server defaults (``restartPolicy: Always``, ``dnsPolicy: ClusterFirst``,
``imagePullPolicy``, a Service's ``targetPort`` = ``port``...) is written into the stored object, so
``kubectl get -o yaml`` shows it and ``kubectl apply`` finds no spurious difference next time. A pod without
``spec.nodeName`` is bound by the lab's spread rule (the node with the fewest pods), as the scheduler would.
"""
from __future__ import annotations

import copy
import re
import secrets
from dataclasses import dataclass
from typing import Any

from emulator.apiserver import views
from emulator.apiserver.status import ApiError, invalid
from emulator.errors import ManifestError
from emulator.state import namespaces as nsmod
from emulator.state.manifests import NAMESPACE_NAME_LABEL
from emulator.state.store import Store
from emulator.topology.validate import Validator

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SUFFIX = "bcdfghjklmnpqrstvwxz2456789"
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
                 "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
                 r"is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
SERVER_META = ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp",
               "deletionGracePeriodSeconds", "managedFields", "selfLink")


@dataclass
class Ctx:
    """What admission needs of the lab: its store and name, node capacities, the Service CIDR."""
    store: Store
    lab: str
    service_cidr: Any
    nodes: dict[str, int]  # node → pod capacity

    def counts(self) -> dict[str, int]:
        out = {n: 0 for n in self.nodes}
        for p in self.store.list("pods"):
            n = (p.get("spec") or {}).get("nodeName")
            if n in out:
                out[n] += 1
        return out


def message_of(e: ManifestError) -> str:
    """The message part of a ManifestError ("<file>: <field>: <message>; fix: <fix>")."""
    text = str(e)
    head, tail = f"{e.file}: {e.field}: ", f"; fix: {e.fix}"
    text = text[len(head):] if text.startswith(head) else text
    return text[:-len(tail)] if text.endswith(tail) else text


def from_manifest_error(kind: str, name: str, e: ManifestError) -> ApiError:
    msg = message_of(e)
    if "unknown key" in msg or "not supported" in msg:
        key = e.field.rsplit(".", 1)[-1]
        return invalid(kind, name, [(e.field, "FieldValueNotSupported", f"Unsupported value: \"{key}\": podlab "
                                     f"does not emulate this field ({e.fix})")])
    return invalid(kind, name, [(e.field, "FieldValueInvalid", f"Invalid value: {msg} ({e.fix})")])


def check_name(kind: str, name: object, label: bool = True) -> str:
    if not isinstance(name, str) or not name:
        raise invalid(kind, "", [("metadata.name", "FieldValueRequired", "Required value: name or generateName is "
                                  "required")])
    if len(name) > (63 if label else 253) or not (DNS_LABEL if label else DNS_SUBDOMAIN).match(name):
        if label and DNS_SUBDOMAIN.match(name) and len(name) <= 253:
            raise invalid(kind, name, [("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": podlab '
                                        "needs a DNS label here, without dots (the name becomes part of a network "
                                        "namespace name and a DNS label)")])
        raise invalid(kind, name, [("metadata.name", "FieldValueInvalid",
                                    f'Invalid value: "{name}": {LABEL_MSG if label else SUBDOMAIN_MSG}')])
    return name


def name_of(kind: str, obj: dict, label: bool = True) -> str:
    """The object's name; ``generateName`` gets five random characters, as the real server adds them."""
    meta = obj.setdefault("metadata", {})
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + "".join(secrets.choice(SUFFIX) for _ in range(5))
    return check_name(kind, meta.get("name"), label)


def namespace_of(obj: dict, ns: str, store: Store, creating: bool = True) -> None:
    """The object's namespace is the request's (400 if it names another); it must exist and not be ending."""
    meta = obj.setdefault("metadata", {})
    if meta.get("namespace") and meta["namespace"] != ns:
        raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent "
                       "on the request")
    meta["namespace"] = ns
    found = nsmod.get(store, ns)
    if found is None:
        raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
    if creating and not nsmod.active(store, ns):
        raise ApiError(403, "Forbidden", f'unable to create new content in namespace {ns} because it is being '
                       "terminated", {"name": ns, "kind": "namespaces"})


def clean_meta(obj: dict, old: dict | None) -> dict:
    """Server-owned metadata comes from the stored object (or is filled by the store), never from the client."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_META}
    if old:
        for k in ("uid", "creationTimestamp"):
            if k in (old.get("metadata") or {}):
                meta[k] = old["metadata"][k]
    obj["metadata"] = meta
    return obj


def labels_ok(kind: str, name: str, meta: dict) -> None:
    v = Validator("<api>", ManifestError)
    try:
        v.labels(meta.get("labels"), "metadata.labels")
        ann = meta.get("annotations")
        if ann is not None and (not isinstance(ann, dict) or not all(isinstance(x, str) for x in ann.values())):
            v.fail("metadata.annotations", "annotations must be a map of strings", "quote every value")
    except ManifestError as e:
        raise invalid(kind, name, [(e.field, "FieldValueInvalid", f"Invalid value: {message_of(e)}")]) from None


# -- pods --------------------------------------------------------------------------------------------------------
def pod(ctx: Ctx, obj: dict, ns: str, old: dict | None) -> dict:
    from emulator.lab import podspec
    name = name_of("Pod", obj)
    namespace_of(obj, ns, ctx.store, creating=old is None)
    labels_ok("Pod", name, obj["metadata"])
    obj.pop("status", None)
    spec = dict(obj.get("spec") or {})
    if old is not None:
        if views.default_pod_spec(spec) != views.default_pod_spec(old.get("spec") or {}):
            raise invalid("Pod", name, [("spec", "FieldValueForbidden", "Forbidden: pod updates may not change "
                                         "fields other than `spec.containers[*].image`, `spec.initContainers[*]."
                                         "image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions "
                                         "to existing tolerations), `spec.terminationGracePeriodSeconds` (and podlab "
                                         "restarts no container for an image change: delete and recreate the pod)")])
        obj["spec"] = old["spec"]
        return clean_meta(obj, old)
    check = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {k: v for k, v in obj["metadata"].items() if k in ("name", "namespace", "labels")},
             "spec": {k: v for k, v in spec.items() if k not in ("tolerations", "nodeName")
                      or (k == "nodeName" and v)}}
    try:
        req = podspec.parse(check, "<api>", ctx.nodes, ctx.counts())
    except ManifestError as e:
        raise from_manifest_error("Pod", name, e) from None
    spec["nodeName"] = req.pod.node
    obj["spec"] = views.default_pod_spec(spec)
    return clean_meta(obj, None)


# -- namespaces, nodes, endpoints --------------------------------------------------------------------------------
def namespace(ctx: Ctx, obj: dict, ns: str, old: dict | None) -> dict:
    name = name_of("Namespace", obj)
    meta = obj["metadata"]
    meta.pop("namespace", None)
    labels_ok("Namespace", name, meta)
    meta["labels"] = {**(meta.get("labels") or {}), NAMESPACE_NAME_LABEL: name}
    obj["spec"] = {"finalizers": ["kubernetes"]}
    obj["status"] = (old or {}).get("status") or {"phase": "Active"}
    return clean_meta(obj, old)


def node(ctx: Ctx, obj: dict, ns: str, old: dict | None) -> dict:
    name = name_of("Node", obj)
    if old is None:
        raise ApiError(405, "MethodNotAllowed", f'nodes "{name}": a lab\'s nodes come from its topology file; '
                       "podlab cannot add a node to a running lab")
    meta = obj["metadata"]
    labels_ok("Node", name, meta)
    keep = copy.deepcopy(old)
    keep["metadata"] = {**old["metadata"], "labels": {k: v for k, v in (meta.get("labels") or {}).items()
                                                      if not k.startswith(("kubernetes.io/", "beta.kubernetes.io/"))},
                        "annotations": meta.get("annotations") or {}}
    if "unschedulable" in (obj.get("spec") or {}):
        keep.setdefault("spec", {})["unschedulable"] = bool(obj["spec"]["unschedulable"])
    return clean_meta(keep, old)


def endpoints(ctx: Ctx, obj: dict, ns: str, old: dict | None) -> dict:
    import ipaddress
    name = name_of("Endpoints", obj, label=False)
    namespace_of(obj, ns, ctx.store, creating=old is None)
    labels_ok("Endpoints", name, obj["metadata"])
    for i, s in enumerate(obj.get("subsets") or []):
        for key in ("addresses", "notReadyAddresses"):
            for j, a in enumerate(s.get(key) or []):
                try:
                    if ipaddress.ip_address(a.get("ip", "")).version != 4:
                        raise ValueError
                except ValueError:
                    raise invalid("Endpoints", name, [(f"subsets[{i}].{key}[{j}].ip", "FieldValueInvalid",
                                                       f'Invalid value: "{a.get("ip")}": must be a valid IPv4 '
                                                       "address (podlab emulates IPv4 only)")]) from None
        for j, p in enumerate(s.get("ports") or []):
            p.setdefault("protocol", "TCP")
            if not isinstance(p.get("port"), int) or not 1 <= p["port"] <= 65535:
                raise invalid("Endpoints", name, [(f"subsets[{i}].ports[{j}].port", "FieldValueInvalid",
                                                   f"Invalid value: {p.get('port')}: must be between 1 and 65535, "
                                                   "inclusive")])
    return clean_meta(obj, old)
