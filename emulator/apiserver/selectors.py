"""Label and field selectors, parsed as the API server parses them (``labelSelector=app=web,tier in (a,b),!x``,
``fieldSelector=spec.nodeName=node-1,status.phase!=Failed``), and matched against API objects.

Field selectors support the fields the real server indexes for each kind (``metadata.name`` and
``metadata.namespace`` everywhere; pods' ``spec.nodeName``, ``status.phase``, ``status.podIP``...; events'
``involvedObject.*``, ``reason``, ``type``...); any other field is a 400 ``field label not supported``.
"""
from __future__ import annotations

import re
from typing import Callable

from emulator.apiserver.status import ApiError, bad_request

Match = Callable[[dict], bool]
_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
FIELDS: dict[str, tuple[str, ...]] = {
    "pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "events": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
               "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
               "reason", "reportingComponent", "source", "type"),
    "namespaces": ("status.phase",),
    "nodes": ("spec.unschedulable",),
    "replicasets": ("status.replicas",),
}


def _split(text: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def labels(text: str | None) -> Match:
    if not text:
        return lambda obj: True
    reqs: list[Callable[[dict], bool]] = []
    for part in _split(text):
        m = re.match(r"^(!?)\s*([^\s!=<>(),]+)\s*(?:(==|=|!=|\s+in\s+|\s+notin\s+)\s*(.*))?$", part)
        if not m:
            raise bad_request(f"unable to parse requirement: {part!r}")
        neg, key, op, val = m.group(1), m.group(2), (m.group(3) or "").strip(), (m.group(4) or "").strip()
        if not _KEY.match(key):
            raise bad_request(f"unable to parse requirement: invalid label key {key!r}")
        if neg and op:
            raise bad_request(f"unable to parse requirement: {part!r}")
        if op in ("in", "notin"):
            if not (val.startswith("(") and val.endswith(")")):
                raise bad_request(f"unable to parse requirement: expected a set in ( ) after {op}")
            values = {v.strip() for v in val[1:-1].split(",") if v.strip()}
            reqs.append(_set_req(key, values, op == "in"))
        elif op:
            reqs.append(_eq_req(key, val, op != "!="))
        else:
            reqs.append(_exists_req(key, not neg))
    return lambda obj: all(r((obj.get("metadata") or {}).get("labels") or {}) for r in reqs)


def _set_req(key: str, values: set[str], inside: bool) -> Callable[[dict], bool]:
    return (lambda ls: ls.get(key) in values) if inside else (lambda ls: ls.get(key) not in values)


def _eq_req(key: str, value: str, equal: bool) -> Callable[[dict], bool]:
    return (lambda ls: ls.get(key) == value) if equal else (lambda ls: ls.get(key) != value)


def _exists_req(key: str, present: bool) -> Callable[[dict], bool]:
    return (lambda ls: key in ls) if present else (lambda ls: key not in ls)


def field_value(obj: dict, path: str) -> str:
    v: object = obj
    for part in path.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    if path == "source" and isinstance(v, dict):
        v = v.get("component")
    if isinstance(v, bool):
        return str(v).lower()
    return "" if v is None else str(v)


def fields(text: str | None, resource: str) -> Match:
    if not text:
        return lambda obj: True
    allowed = ("metadata.name", "metadata.namespace") + FIELDS.get(resource, ())
    reqs = []
    for part in _split(text):
        m = re.match(r"^([^=!]+)(==|=|!=)(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: {part!r}; can't understand {part!r}")
        path, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if path not in allowed:
            raise ApiError(400, "BadRequest", f'field label not supported: {path}')
        reqs.append((path, op != "!=", value))
    return lambda obj: all((field_value(obj, p) == v) == eq for p, eq, v in reqs)
