"""``apply -f FILE`` and ``delete KIND NAME``: change the lab's desired state in its store.

A file may hold several YAML documents (``---``) and ``kind: List``; each object goes to the row of ``APPLY``
for its ``kind`` (Namespace, Pod, Service, Deployment, NetworkPolicy). Every document is validated before any is
applied, so a bad file changes nothing. An object goes to its own ``metadata.namespace`` (``namespace`` in podlab's
short form); one without gets ``-n NS`` (default ``default``), and one naming another namespace than ``-n`` is
refused, as kubectl refuses it. A row: ``validate(lab, obj, source) -> prepared`` (raise ManifestError) and
``apply(lab, prepared) -> str`` (the kubectl-style line, e.g. "pod/web-1 created"). ``DELETE`` lists the kinds
``delete`` knows (``-n`` scopes the names); ``create namespace NAME`` makes a namespace.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from emulator.cli import common, host_cmds, netpol_cmds, pod_cmds, svc_cmds
from emulator.cli.common import Kind, add_namespace_flags
from emulator.errors import AlreadyExistsError, ManifestError, UsageError
from emulator.lab.api import Lab
from emulator.topology import yamlsafe


@dataclass(frozen=True)
class Applier:
    validate: Callable[[Lab, dict, str], Any]
    apply: Callable[[Lab, Any], str]


def _validate_namespace(lab: Lab, obj: dict, source: str) -> tuple[str, dict]:
    from emulator.topology.validate import Validator
    v = Validator(source, ManifestError)
    data = v.mapping(obj, "", ("apiVersion", "kind", "metadata", "spec", "status"), "a Namespace manifest")
    meta = v.mapping(data.get("metadata"), "metadata", ("name", "labels", "annotations", "uid", "creationTimestamp",
                                                        "resourceVersion"), "metadata")
    name = v.dns_name(meta.get("name"), "metadata.name", "namespace", 63, example="shop")
    return name, dict(v.labels(meta.get("labels"), "metadata.labels"))


def _apply_namespace(lab: Lab, prepared: tuple[str, dict]) -> str:
    return lab.create_namespace(*prepared)


def _delete_namespace(lab: Lab, name: str, a: argparse.Namespace) -> str:
    lab.delete_namespace(name, wait=getattr(a, "wait", True))
    return f'namespace "{name}" deleted'


#: the kinds ``apply`` knows, by the manifest's ``kind``
APPLY: dict[str, Applier] = {
    "Namespace": Applier(_validate_namespace, _apply_namespace),
    "Pod": Applier(pod_cmds.validate_pod, pod_cmds.apply_pod),
    "Service": Applier(svc_cmds.validate_service, svc_cmds.apply_service),
    "Deployment": Applier(svc_cmds.validate_deployment, svc_cmds.apply_deployment),
    "NetworkPolicy": Applier(netpol_cmds.validate_netpol, netpol_cmds.apply_netpol),
}

Deleter = Callable[[Lab, str, argparse.Namespace], str]

#: the kinds ``delete`` knows
DELETE: tuple[Kind[Deleter], ...] = (
    Kind(("pods", "pod", "po"), pod_cmds.delete_pod),
    Kind(("services", "service", "svc"), svc_cmds.delete_service),
    Kind(("deployments", "deployment", "deploy"), svc_cmds.delete_deployment),
    Kind(netpol_cmds.ALIASES, netpol_cmds.delete_netpol),
    Kind(("namespaces", "namespace", "ns"), _delete_namespace),
)


def load_documents(path: str) -> list[dict]:
    """The objects of a manifest file (``-``: standard input), every ``List`` unrolled; unreadable, binary or
    broken YAML is one ``ManifestError`` line (``topology.yamlsafe``)."""
    text = yamlsafe.read_text(path, ManifestError, "YAML file (UTF-8 text), or - for stdin")
    docs = [d for d in yamlsafe.load_all(text, path, ManifestError) if d is not None]
    out: list[dict] = []
    for i, d in enumerate(docs):
        if isinstance(d, dict) and d.get("kind") == "List":
            items = d.get("items") or []
            if not isinstance(items, list):
                raise ManifestError(path, f"document {i}.items", f"is a {type(items).__name__}, not a list",
                                    "list the objects under items:")
            objs = [(f"document {i}.items[{j}]", o) for j, o in enumerate(items)]
        else:
            objs = [(f"document {i}", d)]
        for field, o in objs:
            if not isinstance(o, dict):
                raise ManifestError(path, field, f"is a {type(o).__name__}, not a mapping",
                                    "each document must be a Kubernetes-style object with kind/metadata/spec")
            out.append(o)
    return out


def set_namespace(doc: dict, ns: str | None, source: str, i: int) -> dict:
    """The document in namespace ``ns`` (from ``-n``) when it names none; an error when it names another."""
    if ns is None or doc.get("kind") == "Namespace":
        return doc
    k8s = "metadata" in doc or "apiVersion" in doc
    meta = doc.get("metadata") if k8s else doc
    if not isinstance(meta, dict):
        return doc
    have = meta.get("namespace")
    if have and have != ns:
        raise ManifestError(source, f"document {i}." + ("metadata.namespace" if k8s else "namespace"),
                            f"the namespace from the provided object '{have}' does not match the namespace '{ns}'",
                            "drop -n, or the object's namespace")
    if k8s:
        return {**doc, "metadata": {**meta, "namespace": ns}}
    return {**doc, "namespace": ns}


def cmd_apply(a: argparse.Namespace) -> int:
    docs = [set_namespace(d, getattr(a, "namespace", None), a.filename, i)
            for i, d in enumerate(load_documents(a.filename))]
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:
        return host_cmds.apply(multi, docs, a.filename)
    lab = Lab.get(a.lab)
    prepared = []
    for i, d in enumerate(docs):
        kind = d.get("kind") or ("Pod" if "name" in d else None)  # podlab's short pod form has no kind
        h = APPLY.get(kind) if isinstance(kind, str) else None
        if h is None:
            raise ManifestError(a.filename, f"document {i}.kind", f"{kind!r} is not supported",
                                f"use one of: {', '.join(sorted(APPLY))}")
        prepared.append((h, h.validate(lab, d, a.filename)))
    for h, p in prepared:
        print(h.apply(lab, p))
    return 0


def cmd_delete(a: argparse.Namespace) -> int:
    kind, names = common.kind_and_names(a.kind, a.names)
    fn = common.lookup(DELETE, kind, "delete").handler
    if not names:
        raise UsageError(f"delete needs at least one name, e.g. podlab delete {kind} web-1", obj=a.kind)
    multi = host_cmds.multihost_lab(a.lab)
    if multi is not None:
        canonical = next(k.names[0] for k in DELETE if kind in k.names)
        return host_cmds.delete(multi, canonical, list(names), a)
    lab = Lab.get(a.lab)
    for n in names:
        print(fn(lab, n, a))
    return 0


def cmd_create(a: argparse.Namespace) -> int:
    if a.kind.lower() not in ("namespace", "ns"):
        raise UsageError(f"podlab create makes namespaces only (create namespace NAME); use apply -f for {a.kind}",
                         obj=a.kind)
    line = Lab.get(a.lab).create_namespace(a.name)
    if line.endswith("unchanged"):
        raise AlreadyExistsError(f'namespaces "{a.name}" already exists', obj=a.name)
    print(line)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = common.verb(sub, "apply", help="create or update objects from a YAML file (podlab or Kubernetes shape)")
    s.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    add_namespace_flags(s)
    s.set_defaults(fn=cmd_apply)
    s = common.verb(sub, "delete", help="delete objects (delete pod web-1, delete svc web, delete ns x)")
    s.add_argument("kind", help=", ".join(k.names[0] for k in DELETE) + " (or KIND/NAME)")
    s.add_argument("names", nargs="*")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the object is gone (default)")
    add_namespace_flags(s)
    s.set_defaults(fn=cmd_delete)
    s = common.verb(sub, "create", help="create a Kubernetes namespace (create namespace NAME)")
    s.add_argument("kind", help="namespace (or ns)")
    s.add_argument("name")
    s.set_defaults(fn=cmd_create)
