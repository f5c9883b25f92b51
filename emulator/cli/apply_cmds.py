"""``apply -f FILE`` and ``delete KIND NAME``: change the lab's desired state in its store.

A file may hold several YAML documents (``---``) and ``kind: List``; each object goes to the handler registered
for its ``kind`` (Pod, Service, Deployment, ...). Every document is validated before any is applied, so a bad
file changes nothing. An object goes to its own ``metadata.namespace`` (``namespace`` in podlab's short form); one
without gets ``-n NS`` (default ``default``), and one naming another namespace than ``-n`` is refused, as kubectl
refuses it. Handlers: ``validate(lab, obj, source) -> prepared`` (raise ManifestError) and
``apply(lab, prepared) -> str`` (the kubectl-style line, e.g. "pod/web-1 created").
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from emulator.errors import ManifestError, PodlabError
from emulator.lab.api import Lab


@dataclass(frozen=True)
class KindHandler:
    validate: Callable[[Lab, dict, str], Any]
    apply: Callable[[Lab, Any], str]


APPLY: dict[str, KindHandler] = {}
DELETE: dict[str, Callable[[Lab, str, argparse.Namespace], str]] = {}


def register_kind(kind: str, handler: KindHandler) -> None:
    APPLY[kind] = handler


def register_delete(aliases: tuple[str, ...], fn: Callable[[Lab, str, argparse.Namespace], str]) -> None:
    for a in aliases:
        DELETE[a] = fn


def load_documents(path: str) -> list[dict]:
    try:
        text = sys.stdin.read() if path == "-" else open(path).read()
    except OSError as e:
        raise ManifestError(path, "<file>", f"cannot read it: {e.strerror}", "give a readable YAML file") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ManifestError(path, "<file>", f"is not valid YAML ({e})", "fix the YAML syntax") from None
    out: list[dict] = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise ManifestError(path, f"document {i}", f"is a {type(d).__name__}, not a mapping",
                                "each document must be a Kubernetes-style object with kind/metadata/spec")
        out.extend(d.get("items", []) if d.get("kind") == "List" else [d])
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


def _validate_namespace(lab: Lab, obj: dict, source: str) -> tuple[str, dict]:
    from emulator.topology.validate import Validator
    v = Validator(source, ManifestError)
    data = v.mapping(obj, "", ("apiVersion", "kind", "metadata", "spec", "status"), "a Namespace manifest")
    meta = v.mapping(data.get("metadata"), "metadata", ("name", "labels", "annotations", "uid", "creationTimestamp",
                                                        "resourceVersion"), "metadata")
    name = v.dns_name(meta.get("name"), "metadata.name", "namespace", 63, example="shop")
    return name, dict(v.labels(meta.get("labels"), "metadata.labels"))


def cmd_apply(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    docs = [set_namespace(d, getattr(a, "namespace", None), a.filename, i)
            for i, d in enumerate(load_documents(a.filename))]
    prepared = []
    for i, d in enumerate(docs):
        kind = d.get("kind") or ("Pod" if "name" in d else None)  # podlab's short pod form has no kind
        h = APPLY.get(kind)
        if h is None:
            raise ManifestError(a.filename, f"document {i}.kind", f"{kind!r} is not supported",
                                f"use one of: {', '.join(sorted(APPLY)) or '(none yet)'}")
        prepared.append((h, h.validate(lab, d, a.filename)))
    for h, p in prepared:
        print(h.apply(lab, p))
    return 0


def cmd_delete(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    kind, names = a.kind.lower(), list(a.names)
    if "/" in kind:
        kind, first = kind.split("/", 1)
        names.insert(0, first)
    fn = DELETE.get(kind)
    if fn is None:
        raise PodlabError(f'cannot delete "{a.kind}"; known kinds: {", ".join(sorted(DELETE)) or "(none)"}',
                          obj=a.kind)
    if not names:
        raise PodlabError("delete needs at least one name, e.g. podlab delete pod web-1")
    for n in names:
        print(fn(lab, n, a))
    return 0


def cmd_create_namespace(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    if a.kind not in ("namespace", "ns"):
        raise PodlabError(f"podlab create makes namespaces only (create namespace NAME); use apply -f for {a.kind}",
                          obj=a.kind)
    line = lab.create_namespace(a.name)
    if line.endswith("unchanged"):
        from emulator.errors import LabExistsError
        raise LabExistsError(f'namespaces "{a.name}" already exists', obj=a.name)
    print(line)
    return 0


def _delete_namespace(lab: Lab, name: str, a: argparse.Namespace) -> str:
    lab.delete_namespace(name, wait=getattr(a, "wait", True))
    return f'namespace "{name}" deleted'


register_kind("Namespace", KindHandler(_validate_namespace, lambda lab, p: lab.create_namespace(p[0], p[1])))
register_delete(("namespace", "namespaces", "ns"), _delete_namespace)


def register(sub: argparse._SubParsersAction) -> None:
    from emulator.cli.get_cmds import add_namespace_flags
    s = sub.add_parser("apply", help="create or update objects from a YAML file (podlab or Kubernetes shape)")
    s.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    add_namespace_flags(s)
    s.set_defaults(fn=cmd_apply)
    s = sub.add_parser("delete", help="delete objects (delete pod web-1, delete svc web, delete ns x)")
    s.add_argument("kind")
    s.add_argument("names", nargs="*")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the object is gone (default)")
    add_namespace_flags(s)
    s.set_defaults(fn=cmd_delete)
    s = sub.add_parser("create", help="create a Kubernetes namespace (create namespace NAME)")
    s.add_argument("kind", help="namespace (or ns)")
    s.add_argument("name")
    s.set_defaults(fn=cmd_create_namespace)
