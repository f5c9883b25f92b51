"""PATCH in its three forms: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes' strategic merge
patch, which ``kubectl apply``, ``label``, ``annotate`` and ``scale`` send.

Strategic merge patch merges maps like a merge patch, but lists by what the schema says (``schema``): a list
whose patch strategy is ``merge`` and which has a merge key (``spec.containers`` by ``name``, a container's
``ports`` by ``containerPort``, ``env`` by ``name``) merges item by item; a merge list of scalars (``finalizers``)
is a union; every other list is replaced. The directives kubectl writes are honoured: ``null`` deletes a key,
``$patch: delete`` (an item, or a whole map), ``$patch: replace`` (a map or a list), ``$retainKeys``,
``$setElementOrder/<list>`` and ``$deleteFromPrimitiveList/<list>``. Errors are ``PatchError`` (the server
answers 422 or 400 with their message).
"""
from __future__ import annotations

import copy
from typing import Any

from emulator.apiserver.schema import Node, Schema

ORDER, DELETE_PRIM = "$setElementOrder/", "$deleteFromPrimitiveList/"


class PatchError(Exception):
    pass


# -- JSON merge patch --------------------------------------------------------------------------------------------
def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# -- JSON patch --------------------------------------------------------------------------------------------------
def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} does not start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for p in parts:
        if isinstance(doc, dict):
            if p not in doc:
                raise PatchError(f"doc is missing path: /{'/'.join(parts)}")
            doc = doc[p]
        elif isinstance(doc, list):
            doc = doc[_index(doc, p, False)]
        else:
            raise PatchError(f"doc is missing path: /{'/'.join(parts)}")
    return doc


def _index(lst: list, p: str, adding: bool) -> int:
    if adding and p == "-":
        return len(lst)
    if not p.isdigit():
        raise PatchError(f"invalid list index {p!r}")
    i = int(p)
    if i > len(lst) or (not adding and i == len(lst)):
        raise PatchError(f"list index {i} out of bounds")
    return i


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed")
            continue
        if kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                doc = _remove(doc, src)
            doc = _add(doc, parts, value)
        elif kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _walk(doc, parts)
            doc = _add(_remove(doc, parts), parts, copy.deepcopy(op.get("value")))
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    if isinstance(parent, dict):
        parent[parts[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, parts[-1], True), value)
    else:
        raise PatchError(f"cannot add to /{'/'.join(parts)}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return None
    parent = _walk(doc, parts[:-1])
    if isinstance(parent, dict):
        if parts[-1] not in parent:
            raise PatchError(f"unable to remove nonexistent key: {parts[-1]}")
        del parent[parts[-1]]
    elif isinstance(parent, list):
        del parent[_index(parent, parts[-1], False)]
    return doc


# -- strategic merge patch ---------------------------------------------------------------------------------------
def strategic(target: Any, patch: Any, schema: Schema, node: Node | None) -> Any:
    """``patch`` applied to ``target`` (neither is modified)."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    out = _merge_map(target if isinstance(target, dict) else {}, patch, schema, node)
    return {} if out is _DELETED else out


_DELETED = object()


def _merge_map(orig: dict, patch: dict, schema: Schema, node: Node | None) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        return _clean(patch)
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch directive {directive!r}")
    out = copy.deepcopy(orig)
    orders = {k[len(ORDER):]: v for k, v in patch.items() if k.startswith(ORDER)}
    for k, v in patch.items():
        if k.startswith("$"):
            if k.startswith(DELETE_PRIM):
                field = k[len(DELETE_PRIM):]
                if isinstance(out.get(field), list):
                    out[field] = [x for x in out[field] if x not in (v or [])]
            elif k not in ("$patch", "$retainKeys") and not k.startswith(ORDER):
                raise PatchError(f"unknown patch directive {k!r}")
            continue
        sub = schema.child(node, k)
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            merged = _merge_map(out[k] if isinstance(out.get(k), dict) else {}, v, schema, sub)
            if merged is _DELETED:
                out.pop(k, None)
            else:
                out[k] = merged
        elif isinstance(v, list):
            out[k] = _merge_list(out.get(k) if isinstance(out.get(k), list) else [], v, schema, sub)
        else:
            out[k] = v
    for field, order in orders.items():
        if isinstance(out.get(field), list):
            out[field] = _order(out[field], order, schema.list_info(schema.child(node, field))[0])
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(orig: list, patch: list, schema: Schema, node: Node | None) -> list:
    key, strategy = schema.list_info(node)
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [_clean(x) for x in patch if not (isinstance(x, dict) and x.get("$patch") == "replace")]
    if "merge" not in strategy:
        return [_clean(x) for x in patch]
    if key is None:  # a merge list of scalars: a union, in order
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    out = copy.deepcopy(orig)
    item = schema.item(node)
    for x in patch:
        if not isinstance(x, dict) or key not in x:
            raise PatchError(f"map: {x!r} does not contain declared merge key: {key}")
        at = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == x[key]), None)
        if x.get("$patch") == "delete":
            if at is not None:
                del out[at]
            continue
        if at is None:
            out.append(_clean(x))
        else:
            merged = _merge_map(out[at], x, schema, item)
            if merged is _DELETED:
                del out[at]
            else:
                out[at] = merged
    return out


def _order(items: list, order: list, key: str | None) -> list:
    """Items named in ``order`` first, in that order; the others after them, as they were."""
    ident = (lambda x: x.get(key) if isinstance(x, dict) else x) if key else (lambda x: x)  # noqa: E731
    wanted = [ident(o) if isinstance(o, dict) else o for o in order]
    rank = {w: i for i, w in enumerate(wanted) if isinstance(w, (str, int))}
    named = sorted((x for x in items if ident(x) in rank), key=lambda x: rank[ident(x)])
    return named + [x for x in items if ident(x) not in rank]


def _clean(v: Any) -> Any:
    """A patch value without directives (what a new key or item becomes)."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items() if not k.startswith("$") and x is not None}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v
