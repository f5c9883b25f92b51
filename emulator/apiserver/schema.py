"""The real Kubernetes schemas, compacted: which fields exist (for ``fieldValidation=Strict``) and how lists
merge (for strategic merge patch), read from the JSON schemas the ``kubernetes-validate`` package ships.

At start-up the server needs that package's ``_definitions.json`` for the newest version it has (1.8 MB), of
which it keeps only the definitions reachable from the kinds it serves, without descriptions (``compact``). A
short-lived child process does that once per machine and writes the result next to the labs (``load``), so
the server itself never holds the full document.
A node of the compact tree is a tuple::

    ("o", {field: node}, extra)    an object; extra is None (no other key allowed), a node (a map's values) or
                                   True (anything goes: x-kubernetes-preserve-unknown-fields, free objects)
    ("a", item, merge_key, strategy)  a list: merge_key/strategy from x-kubernetes-patch-merge-key/-strategy
    ("r", name)                     a reference to a definition (resolved lazily, the graph may be cyclic)
    ("s",)                          a scalar (string, number, boolean, int-or-string, quantity, time)
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

Node = tuple
ROOTS = {
    ("", "v1", "Pod"): "io.k8s.api.core.v1.Pod", ("", "v1", "Service"): "io.k8s.api.core.v1.Service",
    ("", "v1", "Endpoints"): "io.k8s.api.core.v1.Endpoints", ("", "v1", "Namespace"): "io.k8s.api.core.v1.Namespace",
    ("", "v1", "Node"): "io.k8s.api.core.v1.Node", ("", "v1", "Event"): "io.k8s.api.core.v1.Event",
    ("apps", "v1", "Deployment"): "io.k8s.api.apps.v1.Deployment",
    ("apps", "v1", "ReplicaSet"): "io.k8s.api.apps.v1.ReplicaSet",
    ("autoscaling", "v1", "Scale"): "io.k8s.api.autoscaling.v1.Scale",
    ("discovery.k8s.io", "v1", "EndpointSlice"): "io.k8s.api.discovery.v1.EndpointSlice",
    ("networking.k8s.io", "v1", "NetworkPolicy"): "io.k8s.api.networking.v1.NetworkPolicy",
    ("", "v1", "DeleteOptions"): "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
}
SCALAR: Node = ("s",)
ANY: Node = ("o", {}, True)


def _schema_dir() -> str:
    import importlib.util
    spec = importlib.util.find_spec("kubernetes_validate")  # the real schemas (a dependency of the API server),
    if spec is None or not spec.origin:  # found without importing the package (0.1 s: up checks it)
        raise ImportError("kubernetes_validate")
    base = os.path.join(os.path.dirname(spec.origin), "kubernetes-json-schema")
    versions = [d for d in os.listdir(base) if d.endswith("-local-strict")]
    key = lambda d: tuple(int(x) for x in re.findall(r"\d+", d))  # noqa: E731
    return os.path.join(base, max(versions, key=key))


class Schema:
    def __init__(self, defs: dict[str, Node], version: str = "") -> None:
        self.defs, self.version = defs, version

    @classmethod
    def compact(cls) -> "Schema":
        """Read the package's full definitions and keep what the served kinds reach (parses 1.8 MB of JSON)."""
        d = _schema_dir()
        with open(os.path.join(d, "_definitions.json")) as f:
            raw = json.load(f)["$defs"]
        defs: dict[str, Node] = {}
        todo = list(ROOTS.values())
        while todo:
            name = todo.pop()
            if name in defs or name not in raw:
                continue
            defs[name] = _compact(raw[name], todo)
        return cls(defs, os.path.basename(d))

    @classmethod
    def load(cls, cache_dir: str | None = None) -> "Schema":
        """The compact schema, from ``cache_dir``'s copy when it is there (made by a short-lived child process
        otherwise: parsing the full definitions leaves ~10 MB of heap behind in the process that did it)."""
        if cache_dir is None:
            return cls.compact()
        path = os.path.join(cache_dir, f"apiserver-schema-{os.path.basename(_schema_dir())}.json")
        if not os.path.exists(path):
            import subprocess
            import sys
            subprocess.run([sys.executable, "-m", "emulator.apiserver.schema", path], check=True)
        with open(path) as f:
            doc = json.load(f)
        return cls({k: _tuple(v) for k, v in doc["defs"].items()}, doc["version"])

    def save(self, path: str) -> None:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"version": self.version, "defs": self.defs}, f, separators=(",", ":"))
        os.replace(tmp, path)

    def root(self, group: str, version: str, kind: str) -> Node | None:
        name = ROOTS.get((group, version, kind))
        return ("r", name) if name in self.defs else None

    def resolve(self, node: Node | None) -> Node | None:
        while node is not None and node[0] == "r":
            node = self.defs.get(node[1], ANY)
        return node

    def child(self, node: Node | None, key: str) -> Node | None:
        """The schema of field ``key`` of an object node (None: unknown field; ANY inside free objects)."""
        node = self.resolve(node)
        if node is None or node[0] != "o":
            return ANY if node is None else None
        if key in node[1]:
            return node[1][key]
        extra = node[2]
        return ANY if extra is True else extra

    def item(self, node: Node | None) -> Node | None:
        node = self.resolve(node)
        return node[1] if node is not None and node[0] == "a" else ANY

    def list_info(self, node: Node | None) -> tuple[str | None, str]:
        """(merge key, patch strategy) of a list node."""
        node = self.resolve(node)
        if node is None or node[0] != "a":
            return None, ""
        return node[2], node[3]

    def unknown_fields(self, obj: Any, node: Node | None, path: str = "") -> list[str]:
        """Paths (``spec.containers[0].foo``) of every field of ``obj`` the schema does not know."""
        node = self.resolve(node)
        out: list[str] = []
        if node is None or node == SCALAR:
            return out
        if node[0] == "o" and isinstance(obj, dict):
            for k, v in obj.items():
                sub = self.child(node, k)
                p = f"{path}.{k}" if path else str(k)
                if sub is None:
                    out.append(p)
                else:
                    out += self.unknown_fields(v, sub, p)
        elif node[0] == "a" and isinstance(obj, list):
            for i, v in enumerate(obj):
                out += self.unknown_fields(v, node[1], f"{path}[{i}]")
        return out

    def drop_unknown(self, obj: Any, node: Node | None) -> Any:
        node = self.resolve(node)
        if node is None or node == SCALAR:
            return obj
        if node[0] == "o" and isinstance(obj, dict):
            return {k: self.drop_unknown(v, self.child(node, k)) for k, v in obj.items()
                    if self.child(node, k) is not None}
        if node[0] == "a" and isinstance(obj, list):
            return [self.drop_unknown(v, node[1]) for v in obj]
        return obj


def _tuple(v: object) -> object:
    """A node read back from JSON (lists become the tuples they were; an object's field map stays a dict)."""
    if isinstance(v, list):
        return tuple(_tuple(x) for x in v)
    if isinstance(v, dict):
        return {k: _tuple(x) for k, x in v.items()}
    return v


def _compact(s: dict, todo: list[str]) -> Node:
    if "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[-1]
        todo.append(name)
        return ("r", name)
    if "oneOf" in s or "anyOf" in s:
        return SCALAR
    types = s.get("type")
    types = [types] if isinstance(types, str) else (types or [])
    if "array" in types:
        return ("a", _compact(s.get("items") or {}, todo), s.get("x-kubernetes-patch-merge-key"),
                s.get("x-kubernetes-patch-strategy", ""))
    if "object" in types or "properties" in s:
        props = {k: _compact(v, todo) for k, v in (s.get("properties") or {}).items()}
        extra = s.get("additionalProperties", None if props else True)
        if s.get("x-kubernetes-preserve-unknown-fields"):
            extra = True
        if isinstance(extra, dict):
            extra = _compact(extra, todo)
        elif extra is False:
            extra = None
        return ("o", props, extra)
    return SCALAR


if __name__ == "__main__":  # python -m emulator.apiserver.schema OUT: write the compact schema (see Schema.load)
    import sys
    Schema.compact().save(sys.argv[1])
