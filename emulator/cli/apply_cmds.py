"""``apply -f FILE`` and ``delete KIND NAME``: change the lab's desired state in its store.

A file may hold several YAML documents (``---``) and ``kind: List``; each object goes to the handler registered
for its ``kind`` (Pod, Service, Deployment, ...). Every document is validated before any is applied, so a bad
file changes nothing. Handlers: ``validate(lab, obj, source) -> prepared`` (raise ManifestError) and
``apply(lab, prepared) -> str`` (the kubectl-style line, e.g. "pod/web-1 created").
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from emulator.errors import ManifestError, PodlabError
from emulator.lab.api import Lab
from emulator.topology import yamlsafe


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
    """The objects of a manifest file (``-``: standard input), every ``List`` unrolled; unreadable, binary or
    broken YAML is one ``ManifestError`` line (``topology.yamlsafe``)."""
    text = yamlsafe.read_text(path, ManifestError, "YAML file (UTF-8 text), or - for stdin")
    docs = [d for d in yamlsafe.load_all(text, path, ManifestError) if d is not None]
    out: list[dict] = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise ManifestError(path, f"document {i}", f"is a {type(d).__name__}, not a mapping",
                                "each document must be a Kubernetes-style object with kind/metadata/spec")
        out.extend(d.get("items", []) if d.get("kind") == "List" else [d])
    return out


def cmd_apply(a: argparse.Namespace) -> int:
    lab = Lab.get(a.lab)
    docs = load_documents(a.filename)
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


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("apply", help="create or update objects from a YAML file (podlab or Kubernetes shape)")
    s.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    s.set_defaults(fn=cmd_apply)
    s = sub.add_parser("delete", help="delete objects (delete pod web-1, delete svc web)")
    s.add_argument("kind")
    s.add_argument("names", nargs="*")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the object is gone (default)")
    s.set_defaults(fn=cmd_delete)
